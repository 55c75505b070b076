"""Tools on top of the core: vmn trace, provisioning, the simulated flow tables."""
