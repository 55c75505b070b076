"""Which OpenFlow number each port the network file names gets when VMN's tools build it.

The controller itself never needs this: it resolves an interface name to
the number the switch reports. The tools that *make* ports, or simulate
them, need one rule, so that they agree with each other and never with
a port the file numbers itself:

- a numbered port keeps its number;
- interface names get numbers from :data:`FIRST_NAMED_PORT` upward, in
  name order (Python string order), per switch, skipping every number the
  file declares on that switch (a VM's, a link end's, a mirror's, an uplink's port);
  a host's tunnel switch names one tunnel port per other host
  (:func:`~controller.fabric.tunnels.tunnel_port_name`).

``vmn provision`` asks OVS for these numbers (``ofport_request``) when it
attaches a named VM interface, and ``vmn trace`` simulates them; a port
attached by someone else (libvirt) gets whatever number OVS chooses, which
changes nothing the controller does, and ``vmn trace`` prints named ports
by name for that reason.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.config.model import Model, PortRef
from controller.fabric.tunnels import tunnel_port_name

FIRST_NAMED_PORT = 1000
"""Interface-named ports get OpenFlow numbers from here, in name order, skipping declared numbers."""
MAX_OFPORT = 0xFEFF
"""Highest OpenFlow port number OVS assigns or accepts as ``ofport_request`` (65279)."""


def declared_ports(model: Model) -> Mapping[str, frozenset[PortRef]]:
    """Switch name -> every port the file names on it (VMs, link ends, mirror taps, uplinks, tunnels)."""
    refs: dict[str, set[PortRef]] = {s.name: set() for s in model.switches}
    for vm in model.vms:
        refs[vm.switch].add(vm.port)
    for link in model.links:
        refs[link.a.switch].add(link.a.port)
        refs[link.b.switch].add(link.b.port)
    for mirror in model.mirrors:
        refs[mirror.switch].add(mirror.port)
    for uplink in model.uplinks:
        refs[uplink.switch].add(uplink.port)
    if model.overlay is not None:
        for host in model.hosts:
            refs[host.switch].update(
                tunnel_port_name(model.overlay.type, peer.tunnel_ip) for peer in model.hosts if peer != host
            )
    return {name: frozenset(ports) for name, ports in refs.items()}


def number_ports(refs: frozenset[PortRef]) -> dict[PortRef, int]:
    """Declared port -> OpenFlow number for one switch's ports (the rule of this module).

    >>> number_ports(frozenset({1000, "vnet1", "vnet0", 1001})) == {
    ...     1000: 1000, 1001: 1001, "vnet0": 1002, "vnet1": 1003}
    True
    """
    taken = {p for p in refs if isinstance(p, int)}
    out: dict[PortRef, int] = {p: p for p in taken}
    candidate = FIRST_NAMED_PORT
    for name in sorted(p for p in refs if isinstance(p, str)):
        while candidate in taken:
            candidate += 1
        out[name] = candidate
        candidate += 1
    return out


def port_numbers(model: Model) -> Mapping[tuple[str, PortRef], tuple[int, int]]:
    """(switch name, declared port) -> (dpid, OpenFlow port) for every port the file names."""
    out: dict[tuple[str, PortRef], tuple[int, int]] = {}
    for switch, refs in declared_ports(model).items():
        dpid = model.switch_by_name[switch].dpid
        out.update({(switch, ref): (dpid, no) for ref, no in number_ports(refs).items()})
    return out


def placeholder_name(port_no: int) -> str:
    """The name a simulated switch gives numbered port ``port_no``.

    It contains ``:``, which no interface name may (the file's validator
    rejects it), so it never equals an interface name the file declares: on
    a real switch port 1 is not called ``p1`` just because a VM declares
    ``p1``.
    """
    return f"ofport:{port_no}"
