"""The ports ``vmn provision --host`` makes besides VM interfaces: tunnels and patch cables.

Pure: from the model and a host name to a list of :class:`PortSpec`, which
:mod:`controller.tools.provision` makes OVS hold.

- **Tunnels**: on the host's tunnel switch, one port per other host,
  named :func:`~controller.fabric.tunnels.tunnel_port_name` of the peer's
  address, ``type`` ``vxlan`` or ``geneve``, ``options:remote_ip`` the
  peer and ``options:key=flow`` (the controller sets and checks the VNI),
  with BFD (``bfd:enable=true``, 100 ms intervals: OVS
  ``vswitchd/vswitch.xml``, "BFD Configuration") so a dead tunnel loses
  its liveness in about 0.3 s and fast-failover groups leave it.
- **Patch ports**: a ``links`` entry between two bridges of the host
  becomes an OVS patch-port pair (``type=patch``, ``options:peer``): a
  named end keeps its name; a numbered end is called ``patch-`` and 8 hex
  digits of a digest of switch and port.

Each port asks for the OpenFlow number :mod:`controller.tools.portplan`
gives it (``ofport_request``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.config.model import LinkEnd, Model
from controller.fabric.tunnels import tunnel_port_name
from controller.tools.portplan import MAX_OFPORT, port_numbers

BFD: Mapping[str, str] = {"enable": "true", "min_tx": "100", "min_rx": "100"}
"""BFD settings of every tunnel port (milliseconds)."""


@dataclass(frozen=True)
class PortSpec:
    """One port to make on ``bridge``: its interface ``type``, ``options`` and ``bfd``, and why."""

    bridge: str
    name: str
    type: str
    options: Mapping[str, str] = field(default_factory=dict)
    bfd: Mapping[str, str] = field(default_factory=dict)
    ofport: int | None = None
    why: str = ""


class HostError(ValueError):
    """The host is not in the file (or the file has hosts and none was named)."""


def switches_of(model: Model, host: str | None) -> list[str]:
    """Names of the switches to provision for ``host`` (None: all, when the file has no hosts).

    Raises
    ------
    HostError
        If ``host`` is unknown, or the file declares hosts and ``host`` is None.
    """
    if host is None:
        if model.hosts:
            raise HostError(f"the file declares hosts ({', '.join(h.name for h in model.hosts)}): give --host")
        return [s.name for s in model.switches]
    if host not in model.host_by_name:
        known = ", ".join(h.name for h in model.hosts) or "none"
        raise HostError(f"unknown host {host!r} (hosts: {known})")
    return [s.name for s in model.switches if s.host == host]


def patch_name(end: LinkEnd) -> str:
    """The OVS port name of a patch end: the declared name, or ``patch-`` + 8 hex digits.

    >>> patch_name(LinkEnd("s1", "to-s4")), patch_name(LinkEnd("s1", 20))
    ('to-s4', 'patch-e154fca2')
    """
    if isinstance(end.port, str):
        return end.port
    return "patch-" + hashlib.blake2b(f"{end.switch}:{end.port}".encode(), digest_size=4).hexdigest()


def _ofport(numbers: Mapping[tuple[str, int | str], tuple[int, int]], switch: str, ref: int | str) -> int | None:
    number = numbers[(switch, ref)][1]
    return number if number <= MAX_OFPORT else None


def host_ports(model: Model, host: str | None) -> list[PortSpec]:
    """Tunnel ports and patch ports that ``host`` (None: the only host) needs, in a fixed order.

    Patch ports only where the file says two bridges share a host (``hosts``
    and ``switches.X.host``): without ``hosts`` a declared link may be a cable
    between machines, which provisioning leaves alone.
    """
    mine = set(switches_of(model, host))
    numbers = port_numbers(model)
    out: list[PortSpec] = []
    overlay = model.overlay
    me = model.host_by_name.get(host) if host is not None else None
    if overlay is not None and me is not None:
        bridge = model.switch_by_name[me.switch].bridge
        for peer in model.hosts:
            if peer.name == me.name:
                continue
            name = tunnel_port_name(overlay.type, peer.tunnel_ip)
            out.append(
                PortSpec(
                    bridge,
                    name,
                    overlay.type,
                    {"remote_ip": str(peer.tunnel_ip), "key": "flow"},
                    BFD,
                    _ofport(numbers, me.switch, name),
                    f"tunnel to host {peer.name}",
                )
            )
    for link in model.links if me is not None else ():
        if link.a.switch not in mine or link.b.switch not in mine:
            continue
        for end, other in ((link.a, link.b), (link.b, link.a)):
            out.append(
                PortSpec(
                    model.switch_by_name[end.switch].bridge,
                    patch_name(end),
                    "patch",
                    {"peer": patch_name(other)},
                    {},
                    _ofport(numbers, end.switch, end.port),
                    f"patch to {other.switch}:{other.port}",
                )
            )
    return out
