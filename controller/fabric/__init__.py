"""Where the network is: topology, links and LLDP, the read-only view apps compile from, protection."""
