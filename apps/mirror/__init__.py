"""Port mirroring: copies of VMs' traffic out of a tap port."""
