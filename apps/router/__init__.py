"""The router: gateways, routing between the networks a router joins, ARP resolution of routed VMs."""
