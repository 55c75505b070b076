"""Build a network file's switches, links and VMs in a :class:`Lab`.

The file (a :class:`~controller.tools.topo.NetworkFile`, e.g. from
:func:`controller.tools.topo.ring`) is the one source of the wiring: one
bridge per switch, one veth per link on its declared ports, one host per
VM on its declared port with the VM's ``ip`` and ``mac`` when declared.
Hand the controller the same file (or
:func:`~controller.tools.topo.without_addresses` of it) so both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.config import ConfigError, parse_model
from controller.tools.lab.hosts import Host, Link
from controller.tools.lab.lab import Lab
from controller.tools.topo import NetworkFile, link_ends


@dataclass(frozen=True)
class Wired:
    """What :func:`wire` made.

    ``bridges``: switch name -> OVS bridge name; ``links``: one per
    declared link, in file order (``iface_a`` on the first end's switch);
    ``hosts``: VM name -> host, in file order.
    """

    bridges: dict[str, str]
    links: list[Link]
    hosts: dict[str, Host]


def wire(lab: Lab, net: NetworkFile, controller_port: int | None, fail_mode: str = "secure") -> Wired:
    """Create ``net`` in ``lab``: bridges, then links, then hosts, each in file order.

    A switch's bridge is its ``bridge`` (default: its name), prefixed with
    the lab's prefix unless it already starts with it, so give the
    controller bridge names made with :attr:`Lab.prefix` when it must know
    them. Hosts are named like their VMs (at most 8 characters with the
    default 6-character lab prefix). Every bridge points at
    ``controller_port`` (None: no controller) with ``fail_mode``.

    Raises
    ------
    ValueError
        If ``net`` is not a valid network file, or a link or VM uses a
        named port (the lab needs port numbers).
    """
    try:
        model = parse_model(net)
    except ConfigError as err:
        raise ValueError(f"invalid network file: {err}") from err
    ends = link_ends(net)  # every check before anything is created
    vms = [model.vm_by_name[name] for name in net["vms"]]
    named = [vm.name for vm in vms if not isinstance(vm.port, int)]
    if named:
        raise ValueError(f"VMs on named ports (the lab needs numbers): {', '.join(named)}")
    bridges: dict[str, str] = {}
    for name in net["switches"]:
        switch = model.switch_by_name[name]
        bridges[name] = lab.add_bridge(switch.bridge, switch.dpid, controller_port, fail_mode)
    links = [lab.add_link(bridges[a], port_a, bridges[b], port_b) for (a, port_a), (b, port_b) in ends]
    hosts = {
        vm.name: lab.add_host(
            vm.name,
            bridges[vm.switch],
            int(vm.port),
            ip=None if vm.ip is None else str(vm.ip),
            mac=vm.mac,
            ipv6=None if vm.ipv6 is None else str(vm.ipv6),
        )
        for vm in vms
    }
    return Wired(bridges, links, hosts)
