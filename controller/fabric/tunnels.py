"""Tunnels between hosts: the port names VMN gives them and the links they make.

With ``hosts``, the switch each host names ends one tunnel port per other
host (``vmn provision --host``), called :func:`tunnel_port_name` of the
peer's address, as Neutron's OVS agent names its ``br-tun`` ports
(``vxlan-<peer ip in hex>``). A tunnel port has ``options:remote_ip`` set
to the peer and ``options:key=flow``: the sender sets the VNI
(``set_field:VNI->tun_id``) and the receiver matches it
(:class:`~controller.fabric.crossing.Crossing`). One port per peer (not
one flow-based port) gives every tunnel its own OpenFlow port, so LLDP
finds it as a link, BFD (``bfd:enable=true``) takes its liveness down when
the peer is unreachable, and fast-failover groups watch it like a cable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from controller.config.model import Model
from controller.fabric.topology import LinkKey, PortInfo, resolve_port

PORT_PREFIX: Mapping[str, str] = {"vxlan": "vxlan-", "geneve": "gnv-"}
"""Tunnel port name prefix per overlay type (the rest is the peer's address in hex)."""


def tunnel_port_name(kind: str, peer: ipaddress.IPv4Address) -> str:
    """The name of the tunnel port toward ``peer`` (at most 14 characters).

    >>> tunnel_port_name("vxlan", ipaddress.IPv4Address("172.31.0.2"))
    'vxlan-ac1f0002'
    """
    return f"{PORT_PREFIX[kind]}{int(peer):08x}"


def tunnel_links(model: Model, ports: Mapping[int, Mapping[int, PortInfo]]) -> dict[LinkKey, str]:
    """The tunnel between every two hosts whose tunnel switches are connected with both ports present.

    Returns link -> ``hv1 <-> hv2`` (host names in order).
    """
    if model.overlay is None:
        return {}
    kind = model.overlay.type
    out: dict[LinkKey, str] = {}
    hosts = sorted(model.hosts, key=lambda h: h.name)
    for i, a in enumerate(hosts):
        for b in hosts[i + 1 :]:
            da, db = model.switch_by_name[a.switch].dpid, model.switch_by_name[b.switch].dpid
            if da not in ports or db not in ports:
                continue
            pa = resolve_port(ports[da], tunnel_port_name(kind, b.tunnel_ip))
            pb = resolve_port(ports[db], tunnel_port_name(kind, a.tunnel_ip))
            if pa is not None and pb is not None:
                out[LinkKey.of(da, pa, db, pb)] = f"{a.name} <-> {b.name}"
    return out


def tunnel_ends(model: Model, ports: Mapping[int, Mapping[int, PortInfo]]) -> dict[tuple[int, int], str]:
    """(dpid, port) of every tunnel port on a connected tunnel switch -> the peer host's name."""
    if model.overlay is None:
        return {}
    out: dict[tuple[int, int], str] = {}
    for host in model.hosts:
        dpid = model.switch_by_name[host.switch].dpid
        if dpid not in ports:
            continue
        for peer in model.hosts:
            if peer.name == host.name:
                continue
            port = resolve_port(ports[dpid], tunnel_port_name(model.overlay.type, peer.tunnel_ip))
            if port is not None:
                out[(dpid, port)] = peer.name
    return out
