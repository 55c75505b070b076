"""A simulated OpenFlow pipeline: where would this packet go?

Applies our :class:`~controller.flows.rules.Rule` values the way OVS would
(highest priority match per table, apply-actions in order, goto), across
switches joined by links, so tests assert behaviour ("web1's ARP reaches
web2 and nothing in tenant-b") instead of comparing message lists.

Packets are plain dicts of OXM field names; ``vlan_vid`` is 0 when untagged
and ``0x1000 | vid`` when tagged, as in OpenFlow matches (a priority-tagged
frame has ``vlan_vid`` 0x1000), with ``vlan_pcp`` its priority. As OVS
parses one VLAN header (its default ``vlan-limit``), a doubly tagged frame
is ``vlan_vid`` of the outer tag and ``eth_type`` the inner tag's TPID, and
the TPID itself (802.1Q or 802.1ad) is not a field: no rule can tell them
apart. Addresses are strings (MACs ``aa:bb:..``, IPv4 or IPv6); masks are
``(value, mask)``. An ICMPv6 neighbour solicitation or advertisement has
``ipv6_nd_target``, ``ipv6_nd_sll`` and ``ipv6_nd_tll`` whether the packet
dict gives them or not (``::`` and ``00:00:00:00:00:00`` when absent), as
OVS reports them. ``metadata``, ``ct_state`` and ``ct_zone`` start at 0.

Conntrack is simulated by :class:`SimConntrack` (one table shared by all
switches, as on one OVS host, unless ``host_conntracks`` gives hosts their own): connections by 5-tuple per zone, IPv4 or
IPv6, committed or not, with destination NAT. TCP state tracking is not
modelled; as in OVS, an ICMPv6 message that is neither an echo nor an error
(neighbour discovery, MLD, router solicitation) is ``+inv``, and nothing
else is.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from controller.fabric.topology import LinkKey
from controller.flows.rules import (
    CT_DNAT,
    CT_EST,
    CT_INV,
    CT_NEW,
    CT_RPL,
    CT_SNAT,
    CT_TRK,
    OFPP_CONTROLLER,
    OFPP_IN_PORT,
    OFPVID_PRESENT,
    Action,
    Clone,
    Ct,
    CtClear,
    DecTtl,
    Group,
    GroupEntry,
    MatchValue,
    Move,
    Output,
    PopVlan,
    PushVlan,
    Resubmit,
    Rule,
    SetField,
)

Packet = dict[str, object]
MAX_HOPS = 64
DEFAULT_TTL = 64
"""The IPv4 TTL (``nw_ttl``) of a packet that gives none."""
HALTED = "_halted"
"""Set on a packet whose actions stopped (TTL expired at ``DecTtl``): it goes nowhere further."""


_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")
_ND_TYPES = (135, 136)
_ND_ABSENT: Mapping[str, str] = {
    "ipv6_nd_target": "::",
    "ipv6_nd_sll": "00:00:00:00:00:00",
    "ipv6_nd_tll": "00:00:00:00:00:00",
}
_ICMPV6_TRACKED = frozenset({1, 2, 3, 4, 128, 129})
"""ICMPv6 types conntrack knows: errors and echo (anything else is ``+inv``)."""


def _as_int(value: object) -> int:
    """A field value as a number: ints as they are, MACs and IPv4/IPv6 addresses from their text."""
    if isinstance(value, int):
        return value
    return _text_as_int(str(value))


@functools.lru_cache(maxsize=65536)
def _text_as_int(text: str) -> int:
    """A MAC or an IPv4/IPv6 address as a number (a pure function, cached: masks and MACs repeat)."""
    if _MAC_RE.match(text):
        return int(text.replace(":", ""), 16)
    return int(ipaddress.ip_address(text))


def field_value(packet: Mapping[str, object], name: str) -> object:
    """The value OVS would match for field ``name`` of ``packet`` (None: the field is absent)."""
    if name in packet:
        return packet[name]
    if name == "vlan_vid":
        return 0
    if name in _ND_ABSENT and packet.get("icmpv6_type") in _ND_TYPES and packet.get("icmpv6_code", 0) == 0:
        return _ND_ABSENT[name]
    return None


def field_matches(want: MatchValue, have: object) -> bool:
    """Does packet value ``have`` satisfy match value ``want`` (exact or (value, mask))?"""
    if have is None:
        return False
    if isinstance(want, tuple):
        value, mask = want
        return (_as_int(have) & _as_int(mask)) == (_as_int(value) & _as_int(mask))
    return have == want or _as_int(have) == _as_int(want)


def rule_matches(rule: Rule, packet: Mapping[str, object]) -> bool:
    for name, want in rule.match:
        if not field_matches(want, field_value(packet, name)):
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
    arrivals: list[tuple[int, int]] = field(default_factory=list)
    """(dpid, in_port) of every switch the packet entered, in order."""
    loop: bool = False
    ttl_expired: list[int] = field(default_factory=list)
    """Switches where a ``DecTtl`` found the TTL at 0 or 1 and dropped the packet."""

    def delivered(self) -> set[tuple[int, int]]:
        return {(d, p) for d, p, _ in self.outputs}


ConnKey = tuple[int, object, object, object, object, object]
"""(zone, ip_proto, src ip, dst ip, src port, dst port)."""


def _family(pkt: Mapping[str, object]) -> str:
    """``ipv6`` for an IPv6 packet, else ``ipv4``: the prefix of its address fields."""
    return "ipv6" if "ipv6_src" in pkt else "ipv4"


def _conn_key(zone: int, pkt: Mapping[str, object]) -> ConnKey:
    proto = pkt.get("ip_proto")
    sport = pkt.get("tcp_src", pkt.get("udp_src", 0))
    dport = pkt.get("tcp_dst", pkt.get("udp_dst", 0))
    fam = _family(pkt)
    return (zone, proto, pkt.get(f"{fam}_src"), pkt.get(f"{fam}_dst"), sport, dport)


def _untrackable(pkt: Mapping[str, object]) -> bool:
    """An ICMPv6 message conntrack does not track (neighbour discovery, MLD, ...): always ``+inv``."""
    return _family(pkt) == "ipv6" and pkt.get("ip_proto") == 58 and pkt.get("icmpv6_type") not in _ICMPV6_TRACKED


def _reverse(key: ConnKey) -> ConnKey:
    zone, proto, src, dst, sport, dport = key
    return (zone, proto, dst, src, dport, sport)


def _port_field(pkt: Mapping[str, object], end: str) -> str:
    return ("tcp_" if "tcp_src" in pkt else "udp_") + end


def _rewrite(pkt: Packet, want: ConnKey, is_reply: bool, fam: str) -> int:
    """Rewrite ``pkt``'s ``fam`` (``ipv4``/``ipv6``) addresses and ports to ``want``; the NAT bits that implies.

    A changed destination is DNAT on the original direction (SNAT undone on a
    reply); a changed source is SNAT (DNAT undone on a reply), as OVS reports.
    """
    _, _, src, dst, sport, dport = want
    state = 0
    if dst != pkt.get(f"{fam}_dst"):
        pkt[f"{fam}_dst"] = dst
        if dport:
            pkt[_port_field(pkt, "dst")] = dport
        state |= CT_SNAT if is_reply else CT_DNAT
    if src != pkt.get(f"{fam}_src"):
        pkt[f"{fam}_src"] = src
        if sport:
            pkt[_port_field(pkt, "src")] = sport
        state |= CT_DNAT if is_reply else CT_SNAT
    return state


class SimConntrack:
    """Committed connections: original 5-tuple -> reply 5-tuple (NAT applied), and marks."""

    def __init__(self) -> None:
        self.replies: dict[ConnKey, ConnKey] = {}
        self.originals: dict[ConnKey, ConnKey] = {}
        self.marks: dict[ConnKey, int] = {}
        """Original 5-tuple -> ``ct_mark``."""

    def apply(self, action: Ct, pkt: Packet) -> None:
        """Run ``pkt`` through conntrack as ``action`` says; sets ct_state/ct_zone, may rewrite it."""
        if _untrackable(pkt):
            if action.recirc_table is not None:
                pkt.update(ct_state=CT_TRK | CT_INV, ct_zone=action.zone, ct_mark=0)
            return
        key = _conn_key(action.zone, pkt)
        state = CT_TRK
        fam = _family(pkt)
        conn = key if key in self.replies else self.originals.get(key)
        if conn is not None and action.commit and action.mark is not None:
            self.marks[conn] = action.mark
        known = self.replies.get(key) or self.originals.get(key)
        if known is not None:  # a packet of a committed connection, either way
            is_reply = key not in self.replies
            state |= CT_EST | (CT_RPL if is_reply else 0)
            if action.nat is not None:
                # NAT makes a packet the mirror image of the other direction's tuple: the original
                # direction goes to where replies come from, a reply leaves from where the original went.
                state |= _rewrite(pkt, _reverse(known), is_reply, fam)
        else:
            state |= CT_NEW
            if action.commit:
                nat = action.nat
                if nat is not None and nat.dst is not None:
                    pkt[f"{fam}_dst"] = nat.dst
                    if nat.port is not None:
                        pkt[_port_field(pkt, "dst")] = nat.port
                    state |= CT_DNAT
                if nat is not None and nat.src is not None:
                    pkt[f"{fam}_src"] = nat.src
                    state |= CT_SNAT
                reply = _reverse(_conn_key(action.zone, pkt))
                self.replies[key] = reply
                self.originals[reply] = key
                self.marks[key] = action.mark or 0
                conn = key
        if action.recirc_table is not None:
            pkt["ct_state"] = state
            pkt["ct_zone"] = action.zone
            pkt["ct_mark"] = self.marks.get(conn, 0) if conn is not None else 0


def _bucket_index(group: GroupEntry, pkt: Mapping[str, object], live: Callable[[int], bool]) -> list[int]:
    """Which buckets of ``group`` a packet takes (select: a weighted 5-tuple hash)."""
    if group.type == "all":
        return list(range(len(group.buckets)))
    if group.type == "ff":
        return next(([i] for i, b in enumerate(group.buckets) if live(b[1])), [])
    total = sum(b[0] for b in group.buckets)
    if not total:
        return []
    point = zlib.crc32(repr(_conn_key(0, pkt)).encode()) % total
    for i, (weight, _, _) in enumerate(group.buckets):
        if point < weight:
            return [i]
        point -= weight
    return []


class SimSwitch:
    """One switch's flow table and groups."""

    def __init__(
        self,
        dpid: int,
        rules: Iterable[Rule],
        groups: Iterable[GroupEntry] = (),
        conntrack: SimConntrack | None = None,
        live: Callable[[int], bool] = lambda port: True,
    ) -> None:
        self.dpid = dpid
        self.tables: dict[int, list[Rule]] = {}
        self.groups = {g.group_id: g for g in groups}
        self.conntrack = conntrack or SimConntrack()
        self.live = live
        for rule in rules:
            self.tables.setdefault(rule.table, []).append(rule)
        for rules_ in self.tables.values():
            rules_.sort(key=lambda r: -r.priority)

    def lookup(self, table: int, packet: Mapping[str, object]) -> Rule | None:
        for rule in self.tables.get(table, []):
            if rule_matches(rule, packet):
                return rule
        return None

    def process(self, packet: Packet, trace: Trace) -> list[tuple[int, Packet]]:
        """Run ``packet`` (with ``in_port`` set) from table 0; return (port, packet) outputs."""
        outs: list[tuple[int, Packet]] = []
        pkt = dict(packet)
        for name in ("metadata", "ct_state", "ct_zone", "ct_mark", "reg0"):
            pkt.setdefault(name, 0)
        self._run(pkt, 0, trace, outs, 0)
        return outs

    def _run(self, pkt: Packet, table: int | None, trace: Trace, outs: list[tuple[int, Packet]], depth: int) -> None:
        while table is not None:
            if depth > MAX_HOPS:
                trace.loop = True
                return
            rule = self.lookup(table, pkt)
            if rule is None:
                return
            trace.matched.append((self.dpid, rule))
            recirc = self._apply_all(rule.actions, pkt, trace, outs, depth)
            if pkt.get(HALTED):
                trace.ttl_expired.append(self.dpid)
                return
            if rule.write_metadata is not None:
                value, mask = rule.write_metadata
                pkt["metadata"] = (int(pkt.get("metadata", 0)) & ~mask) | (value & mask)  # type: ignore[call-overload]
            table = recirc if recirc is not None else rule.goto
            depth += 1

    def _apply_all(
        self, actions: Iterable[Action], pkt: Packet, trace: Trace, outs: list[tuple[int, Packet]], depth: int
    ) -> int | None:
        """Apply ``actions`` to ``pkt``; the table a conntrack action recirculates to, if any."""
        recirc = None
        for action in actions:
            if isinstance(action, Group):
                group = self.groups.get(action.group_id)
                if group is None:
                    continue  # OVS rejects such a flow; the sim just drops
                for i in _bucket_index(group, pkt, self.live):
                    clone = dict(pkt)
                    nxt = self._apply_all(group.buckets[i][2], clone, trace, outs, depth)
                    if nxt is not None:
                        self._run(clone, nxt, trace, outs, depth + 1)
            elif isinstance(action, DecTtl):
                ttl = int(pkt.get("nw_ttl", DEFAULT_TTL))  # type: ignore[call-overload]
                if ttl <= 1:  # OVS drops it: no further action applies
                    pkt[HALTED] = True
                    return None
                pkt["nw_ttl"] = ttl - 1
            elif isinstance(action, Ct):
                self.conntrack.apply(action, pkt)
                recirc = action.recirc_table if action.recirc_table is not None else recirc
            elif isinstance(action, Clone):
                copy = dict(pkt)
                nxt = self._apply_all(action.actions, copy, trace, outs, depth)
                if nxt is not None:
                    self._run(copy, nxt, trace, outs, depth + 1)
            elif isinstance(action, Resubmit):
                self._run(pkt, action.table, trace, outs, depth + 1)
            elif isinstance(action, CtClear):
                pkt.update(ct_state=0, ct_zone=0, ct_mark=0)
            else:
                self._apply(action, pkt, outs, trace)
        return recirc

    def _apply(self, action: object, pkt: Packet, outs: list[tuple[int, Packet]], trace: Trace) -> None:
        if isinstance(action, Output):
            if action.port == OFPP_CONTROLLER:
                trace.to_controller.append((self.dpid, dict(pkt)))
            elif action.port == OFPP_IN_PORT:
                outs.append((int(pkt["in_port"]), dict(pkt)))  # type: ignore[call-overload]
            elif action.port != pkt.get("in_port"):
                outs.append((action.port, dict(pkt)))
        elif isinstance(action, PushVlan):
            if not int(pkt.get("vlan_vid", 0)) & OFPVID_PRESENT:  # type: ignore[call-overload]
                pkt["vlan_pcp"] = 0  # a new outermost tag copies an existing one's fields (OpenFlow 1.3)
            pkt["vlan_vid"] = OFPVID_PRESENT | (int(pkt.get("vlan_vid", 0)) & 0xFFF)  # type: ignore[call-overload]
        elif isinstance(action, PopVlan):
            pkt["vlan_vid"] = 0
            pkt.pop("vlan_pcp", None)
        elif isinstance(action, SetField):
            pkt[action.field] = action.value
        elif isinstance(action, Move):
            pkt[action.dst] = pkt.get(action.src)


class SimNetwork:
    """Switches joined by links; inject a packet at an edge port and trace it."""

    def __init__(
        self,
        rules: Mapping[int, Iterable[Rule]],
        links: Iterable[LinkKey] = (),
        groups: Mapping[int, Iterable[GroupEntry]] | None = None,
        conntrack: SimConntrack | None = None,
        down: Iterable[tuple[int, int]] = (),
        host_conntracks: Mapping[int, SimConntrack] | None = None,
        tunnels: Iterable[LinkKey] = (),
    ) -> None:
        """``host_conntracks`` maps a switch to the conntrack of its host (switches on one OVS host share
        one); a switch absent there uses ``conntrack``. ``tunnels`` are the links that are tunnels: a
        frame crosses one with its ``tunnel_id`` (0 if none was set, as OVS sends a ``key=flow`` tunnel),
        and arrives from any other link without one."""
        self.tunnels = frozenset(tunnels)
        self.conntrack = conntrack or SimConntrack()
        dead = frozenset(down)
        groups = groups or {}
        own = host_conntracks or {}
        self.switches = {
            d: SimSwitch(d, r, groups.get(d, ()), own.get(d, self.conntrack), lambda port, d=d: (d, port) not in dead)  # type: ignore[misc]
            for d, r in rules.items()
        }
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
            trace.arrivals.append((d, p))
            for out_port, out_pkt in self.switches[d].process(pkt, trace):
                peer = self.peer.get((d, out_port))
                if peer is None:
                    out_pkt.pop("in_port", None)
                    trace.outputs.append((d, out_port, out_pkt))
                else:
                    pd, pp, link = peer
                    if link in self.tunnels:
                        out_pkt["tunnel_id"] = out_pkt.get("tunnel_id", 0)
                    else:
                        out_pkt.pop("tunnel_id", None)
                    trace.link_crossings[link] = trace.link_crossings.get(link, 0) + 1
                    work.append((pd, pp, out_pkt, hops + 1))
        return trace


def ethernet(src: str, dst: str, eth_type: int = 0x0800, **fields: object) -> Packet:
    """An untagged frame as a packet dict."""
    pkt: Packet = {"eth_src": src, "eth_dst": dst, "eth_type": eth_type, "vlan_vid": 0}
    pkt.update(fields)
    return pkt


def conntracks_of_hosts(hosts: Mapping[int, str]) -> dict[int, SimConntrack]:
    """One :class:`SimConntrack` per host of ``hosts`` (dpid -> host name), as ``host_conntracks`` wants it."""
    tables: dict[str, SimConntrack] = {}
    return {dpid: tables.setdefault(host, SimConntrack()) for dpid, host in sorted(hosts.items())}
