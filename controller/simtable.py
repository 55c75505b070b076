"""A simulated OpenFlow pipeline: where would this packet go?

Applies our :class:`~controller.rules.Rule` values the way OVS would
(highest priority match per table, apply-actions in order, goto), across
switches joined by links, so tests assert behaviour ("web1's ARP reaches
web2 and nothing in tenant-b") instead of comparing message lists.

Packets are plain dicts of OXM field names; ``vlan_vid`` is 0 when untagged
and ``0x1000 | vid`` when tagged, as in OpenFlow matches.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from controller.rules import (OFPP_CONTROLLER, OFPP_IN_PORT, OFPVID_PRESENT, Ct, Group,
                              MatchValue, Output, PopVlan, PushVlan, Rule, SetField)
from controller.topology import LinkKey

Packet = dict[str, object]
MAX_HOPS = 64


def _as_int(value: object) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and ":" in value:
        return int(value.replace(":", ""), 16)
    return int(ipaddress.IPv4Address(str(value)))


def field_matches(want: MatchValue, have: object) -> bool:
    """Does packet value ``have`` satisfy match value ``want`` (exact or (value, mask))?"""
    if have is None:
        return False
    if isinstance(want, tuple):
        value, mask = want
        return (_as_int(have) & _as_int(mask)) == (_as_int(value) & _as_int(mask))
    return _as_int(have) == _as_int(want)


def rule_matches(rule: Rule, packet: Mapping[str, object]) -> bool:
    for name, want in rule.match:
        have = packet.get(name, 0 if name == "vlan_vid" else None)
        if not field_matches(want, have):
            return False
    return True


@dataclass
class Trace:
    """Everything one injected packet caused."""

    outputs: list[tuple[int, int, Packet]] = field(default_factory=list)
    """(dpid, port, packet as it left) for every edge output."""
    to_controller: list[tuple[int, Packet]] = field(default_factory=list)
    link_crossings: dict[LinkKey, int] = field(default_factory=dict)
    matched: list[tuple[int, Rule]] = field(default_factory=list)
    loop: bool = False

    def delivered(self) -> set[tuple[int, int]]:
        return {(d, p) for d, p, _ in self.outputs}


class SimSwitch:
    """One switch's flow table."""

    def __init__(self, dpid: int, rules: Iterable[Rule]) -> None:
        self.dpid = dpid
        self.tables: dict[int, list[Rule]] = {}
        for rule in rules:
            self.tables.setdefault(rule.table, []).append(rule)
        for rules_ in self.tables.values():
            rules_.sort(key=lambda r: -r.priority)

    def lookup(self, table: int, packet: Mapping[str, object]) -> Optional[Rule]:
        for rule in self.tables.get(table, []):
            if rule_matches(rule, packet):
                return rule
        return None

    def process(self, packet: Packet, trace: Trace) -> list[tuple[int, Packet]]:
        """Run ``packet`` (with ``in_port`` set) from table 0; return (port, packet) outputs."""
        outs: list[tuple[int, Packet]] = []
        pkt = dict(packet)
        table: Optional[int] = 0
        while table is not None:
            rule = self.lookup(table, pkt)
            if rule is None:
                break
            trace.matched.append((self.dpid, rule))
            for action in rule.actions:
                self._apply(action, pkt, outs, trace)
            table = rule.goto
        return outs

    def _apply(self, action: object, pkt: Packet, outs: list[tuple[int, Packet]], trace: Trace) -> None:
        if isinstance(action, Output):
            if action.port == OFPP_CONTROLLER:
                trace.to_controller.append((self.dpid, dict(pkt)))
            elif action.port == OFPP_IN_PORT:
                outs.append((int(pkt["in_port"]), dict(pkt)))  # type: ignore[call-overload]
            elif action.port != pkt.get("in_port"):
                outs.append((action.port, dict(pkt)))
        elif isinstance(action, PushVlan):
            pkt["vlan_vid"] = OFPVID_PRESENT
        elif isinstance(action, PopVlan):
            pkt["vlan_vid"] = 0
        elif isinstance(action, SetField):
            pkt[action.field] = action.value
        elif isinstance(action, (Group, Ct)):
            raise NotImplementedError(f"simulated table cannot apply {action!r} yet")


class SimNetwork:
    """Switches joined by links; inject a packet at an edge port and trace it."""

    def __init__(self, rules: Mapping[int, Iterable[Rule]], links: Iterable[LinkKey] = ()) -> None:
        self.switches = {d: SimSwitch(d, r) for d, r in rules.items()}
        self.peer: dict[tuple[int, int], tuple[int, int, LinkKey]] = {}
        for link in links:
            self.peer[(link.a_dpid, link.a_port)] = (link.b_dpid, link.b_port, link)
            self.peer[(link.b_dpid, link.b_port)] = (link.a_dpid, link.a_port, link)

    def send(self, dpid: int, port: int, packet: Mapping[str, object]) -> Trace:
        """Inject ``packet`` arriving on ``dpid``/``port`` and follow it everywhere."""
        trace = Trace()
        work: list[tuple[int, int, Packet, int]] = [(dpid, port, dict(packet), 0)]
        while work:
            d, p, pkt, hops = work.pop(0)
            if hops > MAX_HOPS:
                trace.loop = True
                continue
            pkt["in_port"] = p
            for out_port, out_pkt in self.switches[d].process(pkt, trace):
                peer = self.peer.get((d, out_port))
                if peer is None:
                    out_pkt.pop("in_port", None)
                    trace.outputs.append((d, out_port, out_pkt))
                else:
                    pd, pp, link = peer
                    trace.link_crossings[link] = trace.link_crossings.get(link, 0) + 1
                    work.append((pd, pp, out_pkt, hops + 1))
        return trace


def ethernet(src: str, dst: str, eth_type: int = 0x0800, **fields: object) -> Packet:
    """An untagged frame as a packet dict."""
    pkt: Packet = {"eth_src": src, "eth_dst": dst, "eth_type": eth_type, "vlan_vid": 0}
    pkt.update(fields)
    return pkt
