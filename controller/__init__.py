"""VMN: an os-ken SDN controller for virtual machine networks on Open vSwitch."""
