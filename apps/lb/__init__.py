"""The load balancer."""
