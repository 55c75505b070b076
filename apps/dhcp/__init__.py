"""The DHCP server: addresses, router, DNS and MTU for the declared VMs of ``dhcp: true`` networks."""
