"""The ACL firewall."""
