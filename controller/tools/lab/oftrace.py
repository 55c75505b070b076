"""Where real OVS would send a packet: ``ovs-appctl ofproto/trace``, followed across lab links.

:func:`ofproto_trace` traces a flow through one bridge and returns its edge
outputs, each with the packet as it leaves (VLAN tag, MACs, IPv4
addresses), read from the ``Datapath actions`` of every stage (a stage ends
where conntrack recirculates; ``ct_next`` gives the ``ct_state`` each
recirculation resumes with, ``trk,new`` when absent, as OVS does).
:func:`follow` continues an output that enters a link on the peer bridge,
as the veth between them would, until every copy has left by an edge port.

Datapath port numbers are mapped back to (bridge, OpenFlow port, name) with
``ovs-appctl dpif/show``. Outputs to the controller are counted, not
followed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from controller.tools.lab.shell import sh

APPCTL = ("ovs-appctl",)


@dataclass(frozen=True)
class Packet:
    """A packet as ``ofproto/trace`` takes it: a protocol keyword and ovs-ofctl fields.

    ``fields`` excludes ``in_port`` and the VLAN; ``vlan`` is the VID when
    tagged (None untagged) and ``pcp`` its priority.
    """

    proto: str
    fields: tuple[tuple[str, str], ...]
    vlan: int | None = None
    pcp: int = 0

    def flow(self, in_port: int) -> str:
        """The flow string for a trace entering at ``in_port``."""
        parts = [self.proto, f"in_port={in_port}"]
        if self.vlan is not None:
            parts += [f"dl_vlan={self.vlan}", f"dl_vlan_pcp={self.pcp}"]
        parts += [f"{k}={v}" for k, v in self.fields]
        return ",".join(parts)

    def get(self, name: str) -> str | None:
        return dict(self.fields).get(name)

    def with_fields(self, **changes: str) -> Packet:
        updated = dict(self.fields)
        updated.update(changes)
        return replace(self, fields=tuple(updated.items()))


@dataclass(frozen=True)
class Output:
    """One copy leaving ``bridge`` by OpenFlow port ``ofport`` (interface ``iface``), as ``packet``."""

    bridge: str
    ofport: int
    iface: str
    packet: Packet


@dataclass
class Traced:
    """What one traced packet caused: edge outputs, copies to the controller, the raw traces."""

    outputs: list[Output] = field(default_factory=list)
    to_controller: int = 0
    texts: list[str] = field(default_factory=list)


PortMap = Mapping[int, tuple[str, int, str]]
"""Datapath port number -> (bridge, OpenFlow port, interface name), for one datapath."""


def datapath_ports(bridge: str) -> PortMap:
    """The ports of the datapath ``bridge`` lives in (``ovs-appctl dpif/show``)."""
    out = sh([*APPCTL, "dpif/show"]).stdout
    datapaths: list[dict[int, tuple[str, int, str]]] = []
    of_bridge: dict[str, int] = {}
    current_bridge = ""
    for line in out.splitlines():
        if not line.startswith(" "):
            datapaths.append({})
        elif line.startswith("    "):
            m = re.match(r"\s+(\S+) (\d+)/(\d+):", line)
            if m:
                datapaths[-1][int(m.group(3))] = (current_bridge, int(m.group(2)), m.group(1))
        else:
            current_bridge = line.strip().rstrip(":")
            of_bridge[current_bridge] = len(datapaths) - 1
    if bridge not in of_bridge:
        raise ValueError(f"bridge {bridge!r} is not in any datapath")
    return datapaths[of_bridge[bridge]]


def split_actions(text: str) -> list[str]:
    """Top-level comma-separated items of a datapath action list.

    >>> split_actions("push_vlan(vid=5,pcp=0),ct(zone=5,nat),3,pop_vlan,4")
    ['push_vlan(vid=5,pcp=0)', 'ct(zone=5,nat)', '3', 'pop_vlan', '4']
    """
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _kv(inner: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in split_actions(inner) if "=" in part)


_SET_FIELDS = {
    "eth": {"src": "dl_src", "dst": "dl_dst"},
    "ipv4": {"src": "nw_src", "dst": "nw_dst"},
    "tcp": {"src": "tcp_src", "dst": "tcp_dst"},
    "udp": {"src": "udp_src", "dst": "udp_dst"},
}


def _apply(actions: Sequence[str], packet: Packet, ports: PortMap, traced: Traced) -> Packet:
    """Run datapath ``actions`` on ``packet``, recording outputs; return the packet as they leave it."""
    for action in actions:
        if action.isdigit():
            bridge, ofport, iface = ports.get(int(action), ("?", -1, f"odp{action}"))
            traced.outputs.append(Output(bridge, ofport, iface, packet))
        elif action.startswith("push_vlan("):
            kv = _kv(action[len("push_vlan(") : -1])
            packet = replace(packet, vlan=int(kv["vid"]), pcp=int(kv.get("pcp", "0")))
        elif action == "pop_vlan":
            packet = replace(packet, vlan=None, pcp=0)
        elif action.startswith("set(") or action.startswith("set_masked("):
            inner = action[action.index("(") + 1 : -1]
            kind, _, rest = inner.partition("(")
            names = _SET_FIELDS.get(kind, {})
            changes = {names[k]: v.split("/")[0] for k, v in _kv(rest[:-1]).items() if k in names}
            packet = packet.with_fields(**changes)
        elif action.startswith("clone("):
            _apply(split_actions(action[len("clone(") : -1]), packet, ports, traced)
        elif action.startswith("userspace(") and "controller" in action:
            traced.to_controller += 1
    return packet


def ofproto_trace(
    bridge: str, packet: Packet, in_port: int, ct_next: Sequence[str] = (), ports: PortMap | None = None
) -> Traced:
    """Trace ``packet`` entering ``bridge`` at ``in_port``; every stage's datapath actions, in order.

    Raises
    ------
    CommandError
        If ``ovs-appctl`` rejects the flow or the bridge.
    """
    ports = datapath_ports(bridge) if ports is None else ports
    argv = [*APPCTL, "ofproto/trace", bridge, packet.flow(in_port)]
    for flags in ct_next:
        argv += ["--ct-next", flags]
    text = sh(argv).stdout
    traced = Traced(texts=[text])
    current = packet
    for line in text.splitlines():
        if line.startswith("Datapath actions:"):
            current = _apply(split_actions(line.split(":", 1)[1].strip()), current, ports, traced)
    return traced


Links = Mapping[tuple[str, int], tuple[str, int]]
"""(bridge, OpenFlow port) -> the (bridge, OpenFlow port) at the other end of its cable, both ways."""
MAX_HOPS = 16


def follow(bridge: str, packet: Packet, in_port: int, links: Links, ports: PortMap | None = None) -> Traced:
    """Trace ``packet`` from ``bridge``/``in_port`` and on through ``links``.

    Returns the outputs by edge ports (not into ``links``) of every bridge
    reached, with the raw traces. A copy entering a link arrives at its peer
    with the VLAN tag and fields it left with. ``ports`` (of the bridges'
    datapath, :func:`datapath_ports`) is read once per call when not given.

    Raises
    ------
    AssertionError
        If a copy crosses more than :data:`MAX_HOPS` links (a loop).
    """
    total = Traced()
    work = [(bridge, in_port, packet, 0)]
    ports = datapath_ports(bridge) if ports is None else ports
    while work:
        br, port, pkt, hops = work.pop(0)
        if hops > MAX_HOPS:
            raise AssertionError(f"packet still travelling after {MAX_HOPS} links: a loop?")
        step = ofproto_trace(br, pkt, port, ports=ports)
        total.to_controller += step.to_controller
        total.texts += step.texts
        for out in step.outputs:
            peer = links.get((out.bridge, out.ofport))
            if peer is None:
                total.outputs.append(out)
            else:
                work.append((peer[0], peer[1], out.packet, hops + 1))
    return total
