"""L2 switching: MAC learning and forwarding."""
