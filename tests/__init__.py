"""VMN test suite: unit (pure), ovs (real OVS + namespaces), mininet."""
