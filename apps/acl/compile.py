"""The ACL firewall: tables ``acl_port``, ``acl_net`` and ``acl_commit``.

Semantics (see :mod:`apps.acl.plan` for lists and ids):

- A VM's list is checked in ``acl_port``, its network's list in ``acl_net``;
  a packet goes on only if both allow it. Within a list rules keep their
  file order through priorities; first match wins; no match denies. ARP is
  allowed unless a rule of the list matches ``eth_type: arp`` explicitly;
  IPv6 neighbour discovery (ICMPv6 neighbour solicitations and
  advertisements, its ARP) unless a rule matches ``icmpv6_type`` 135 or 136.
- Each distinct list is compiled once (rules keyed by its id in metadata)
  and installed on every switch where some port uses it, so a 5,000-rule
  ACL on 100 ports is 5,000 flows per switch, not 500,000.
- In a tracked network (a stateful rule applies there, or a load balancer
  lives there, or a router joins it to such a network) IPv4 and IPv6 first
  go through conntrack (``ct(nat)``, so load-balanced replies are un-NATed
  too) in zone = the network's VLAN (the router's zone for a routed
  network, :func:`apps.acl.plan.conntrack_zone`).
  Invalid packets drop, except ICMPv6 messages conntrack does not track
  (neighbour discovery, MLD, router solicitation: always ``+inv``), which
  the lists judge like any packet. Every packet that passed the lists is committed in
  ``acl_commit`` (so conntrack sees both directions and a reply is never
  "invalid"); one a stateful allow let through (metadata bit 63) marks its
  connection with ``ct_mark`` 1. Replies of marked connections skip the
  ACLs; replies of unmarked ones (allowed by a stateless rule) are checked
  like any packet, so a stateless allow admits no reply traffic.

Conntrack runs where a VM's traffic enters the fabric. Replies are matched
against connections their own switch's conntrack saw, which holds for all
bridges of one OVS host (one datapath, one conntrack table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from apps.acl.plan import AclList, AclPlan
from controller.config.model import Acl, AclMatch, AclRule, Model
from controller.flows.pipeline import (
    ACL_TOP_RULE_PRIORITY,
    APP_ACL,
    CT_MARK_SKIP_ACL,
    MAX_ACL_LIST_RULES,
    METADATA_NET_LIST,
    METADATA_NET_SHIFT,
    METADATA_PORT_LIST,
    METADATA_STATEFUL,
    T_ACL_COMMIT,
    T_ACL_NET,
    T_ACL_PORT,
    T_LB,
    T_LEARN,
)
from controller.flows.rules import (
    CT_DNAT,
    CT_EST,
    CT_INV,
    CT_RPL,
    CT_TRK,
    OFPVID_PRESENT,
    Ct,
    MatchValue,
    Nat,
    Rule,
    ct_state,
    make_match,
)
from controller.packets import (
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    ICMPV6_NA,
    ICMPV6_NS,
    IP_PROTO_ICMPV6,
    IP_PROTO_TCP,
    IP_PROTO_UDP,
)

PRIO_CT_TRACK = 65000
PRIO_CT_STATE = 64900
PRIO_ARP = 60000
PRIO_TOP_RULE = ACL_TOP_RULE_PRIORITY
PRIO_DEFAULT_DENY = 100
PRIO_NO_LIST = 1
IMPLICIT_DENY = "implicit-deny"
ARP_ALLOW = "arp-allow"
ND_ALLOW = "nd-allow"
ND_TYPES = (ICMPV6_NS, ICMPV6_NA)
"""ICMPv6 neighbour solicitation and advertisement: allowed unless a rule of the list names one."""
IP_PROTO_DCCP, IP_PROTO_SCTP, IP_PROTO_UDPLITE = 33, 132, 136
INVALID_IPV6: tuple[dict[str, int], ...] = tuple(
    {"ip_proto": p} for p in (IP_PROTO_TCP, IP_PROTO_UDP, IP_PROTO_DCCP, IP_PROTO_SCTP, IP_PROTO_UDPLITE)
) + tuple({"ip_proto": IP_PROTO_ICMPV6, "icmpv6_type": t} for t in (1, 2, 3, 4, 128, 129))
"""The IPv6 packets whose ``+inv`` drops: protocols conntrack follows, ICMPv6 errors and echo.

Conntrack cannot track neighbour discovery, MLD or router solicitation and
flags them ``+inv``; they go on to the lists (no flow matches every other
IPv6 packet, as OpenFlow has no "not")."""


@dataclass(frozen=True)
class Stage:
    """One ACL table: where its list id sits in metadata and where an allow goes."""

    table: int
    bits: int
    shift: int
    allow_to: int


PORT_STAGE = Stage(T_ACL_PORT, METADATA_PORT_LIST, 0, T_ACL_NET)
NET_STAGE = Stage(T_ACL_NET, METADATA_NET_LIST, METADATA_NET_SHIFT, T_LB)

Origin = tuple[str, str]
"""(ACL name, rule label) a flow stands for: the rule index, or a pseudo-rule name."""


def _cidr(net: IPv4Network | IPv6Network | None) -> MatchValue | None:
    """An address (a host prefix) or ``(address, mask)``; None for a prefix that matches everything."""
    if net is None or net.prefixlen == 0:
        return None
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return (str(net.network_address), str(net.netmask))


def acl_match(m: AclMatch) -> dict[str, MatchValue | None]:
    """OXM match fields of one ACL rule's ``match`` (prerequisites guaranteed by the loader)."""
    return dict(
        eth_type=m.eth_type,
        eth_src=m.eth_src,
        eth_dst=m.eth_dst,
        ip_proto=m.ip_proto,
        ipv4_src=_cidr(m.ipv4_src),
        ipv4_dst=_cidr(m.ipv4_dst),
        tcp_src=m.tcp_src,
        tcp_dst=m.tcp_dst,
        udp_src=m.udp_src,
        udp_dst=m.udp_dst,
        icmpv4_type=m.icmp_type,
        ipv6_src=_cidr(m.ipv6_src),
        ipv6_dst=_cidr(m.ipv6_dst),
        icmpv6_type=m.icmpv6_type,
    )


def compile_list(stage: Stage, list_id: int, acls: tuple[Acl, ...]) -> tuple[tuple[Rule, Origin], ...]:
    """The rules of one ACL list in one stage, each with the ACL rule it stands for.

    Raises ``ValueError`` when the list has more than :data:`MAX_ACL_LIST_RULES` rules.
    """
    entries = [(acl.name, i, rule) for acl in acls for i, rule in enumerate(acl.rules)]
    if len(entries) > MAX_ACL_LIST_RULES:
        raise ValueError(f"ACL list {[a.name for a in acls]} has {len(entries)} rules; at most {MAX_ACL_LIST_RULES}")
    meta = (list_id << stage.shift, stage.bits)
    label = ",".join(a.name for a in acls)
    out: list[tuple[Rule, Origin]] = []
    if not any(r.match.eth_type == ETH_ARP for _, _, r in entries):
        out.append(
            (
                Rule(APP_ACL, stage.table, PRIO_ARP, make_match(metadata=meta, eth_type=ETH_ARP), goto=stage.allow_to),
                (label, ARP_ALLOW),
            )
        )
    if not any(r.match.icmpv6_type in ND_TYPES for _, _, r in entries):
        out += [
            (
                Rule(
                    APP_ACL,
                    stage.table,
                    PRIO_ARP,
                    make_match(metadata=meta, eth_type=ETH_IPV6, ip_proto=IP_PROTO_ICMPV6, icmpv6_type=t),
                    goto=stage.allow_to,
                ),
                (label, ND_ALLOW),
            )
            for t in ND_TYPES
        ]
    for k, (name, index, rule) in enumerate(entries):
        out.append((_rule(stage, meta, PRIO_TOP_RULE - k, rule), (name, str(index))))
    out.append((Rule(APP_ACL, stage.table, PRIO_DEFAULT_DENY, make_match(metadata=meta)), (label, IMPLICIT_DENY)))
    return tuple(out)


def _rule(stage: Stage, meta: tuple[int, int], priority: int, rule: AclRule) -> Rule:
    match = make_match(metadata=meta, **acl_match(rule.match))
    if rule.action == "deny":
        return Rule(APP_ACL, stage.table, priority, match)
    commit = (METADATA_STATEFUL, METADATA_STATEFUL) if rule.stateful else None
    return Rule(APP_ACL, stage.table, priority, match, goto=stage.allow_to, write_metadata=commit)


def _lists(plan: AclPlan) -> list[tuple[Stage, AclList, int]]:
    return [(PORT_STAGE, names, i) for names, i in sorted(plan.port_ids.items())] + [
        (NET_STAGE, names, i) for names, i in sorted(plan.net_ids.items())
    ]


Compiled = tuple[tuple[Rule, Origin], ...]


class ListCompiler:
    """The compiled lists of the latest model, reused while their ACLs stay the same.

    Each :meth:`lists` call keeps only the lists that model uses, so a reload
    reuses what did not change and memory does not grow with reloads.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[Stage, int, tuple[Acl, ...]], Compiled] = {}

    def lists(self, model: Model, plan: AclPlan) -> list[tuple[Stage, AclList, Compiled]]:
        """Every list of ``model`` with its compiled rules, ports' lists first."""
        fresh: dict[tuple[Stage, int, tuple[Acl, ...]], Compiled] = {}
        out = []
        for stage, names, list_id in _lists(plan):
            key = (stage, list_id, tuple(model.acl_by_name[n] for n in names))
            compiled = self._cache.get(key) or compile_list(*key)
            fresh[key] = compiled
            out.append((stage, names, compiled))
        self._cache = fresh
        return out

    def origins(self, model: Model, plan: AclPlan) -> Mapping[int, Origin]:
        """Cookie of every ACL-list flow -> the (ACL, rule) it counts hits for."""
        return {rule.cookie: origin for _, _, compiled in self.lists(model, plan) for rule, origin in compiled}


def rule_origins(model: Model, plan: AclPlan) -> Mapping[int, Origin]:
    """:meth:`ListCompiler.origins` for a one-off question (``vmn trace``, tests)."""
    return ListCompiler().origins(model, plan)


def conntrack_rules(
    vlans: Iterable[int], after: int = T_LEARN, zone_of: Callable[[int], int] = lambda vlan: vlan
) -> list[Rule]:
    """Conntrack pass and verdicts in ``acl_port``, commits in ``acl_commit``, for ``vlans``.

    ``after`` is the table after ``acl_commit`` (where commits and replies that skip the ACLs go on);
    ``zone_of`` gives a network's conntrack zone (:func:`apps.acl.plan.conntrack_zone`).
    """
    vlans = sorted(vlans)
    if not vlans:
        return []
    invalid = ct_state(CT_TRK | CT_INV)
    rules = [Rule(APP_ACL, T_ACL_PORT, PRIO_CT_STATE, make_match(ct_state=invalid, eth_type=ETH_IPV4))]
    rules += [
        Rule(APP_ACL, T_ACL_PORT, PRIO_CT_STATE, make_match(ct_state=invalid, eth_type=ETH_IPV6, **fields))
        for fields in INVALID_IPV6
    ]
    rules += [
        Rule(
            APP_ACL,
            T_ACL_PORT,
            PRIO_CT_STATE,
            make_match(ct_state=ct_state(CT_TRK | CT_EST | CT_RPL, CT_INV), ct_mark=CT_MARK_SKIP_ACL),
            goto=after,
        ),
        Rule(
            APP_ACL,
            T_ACL_PORT,
            PRIO_CT_STATE,
            make_match(ct_state=ct_state(CT_TRK | CT_EST | CT_DNAT, CT_INV | CT_RPL)),
            goto=T_LB,
        ),
    ]
    for vlan in vlans:
        vid = OFPVID_PRESENT | vlan
        for eth_type in (ETH_IPV4, ETH_IPV6):
            rules.append(
                Rule(
                    APP_ACL,
                    T_ACL_PORT,
                    PRIO_CT_TRACK,
                    make_match(vlan_vid=vid, eth_type=eth_type, ct_state=ct_state(0, CT_TRK)),
                    (Ct(zone=zone_of(vlan), recirc_table=T_ACL_PORT, nat=Nat()),),
                )
            )
            rules.append(
                Rule(
                    APP_ACL,
                    T_ACL_COMMIT,
                    PRIO_DEFAULT_DENY,
                    make_match(vlan_vid=vid, eth_type=eth_type, metadata=(METADATA_STATEFUL, METADATA_STATEFUL)),
                    (Ct(zone=zone_of(vlan), commit=True, mark=CT_MARK_SKIP_ACL),),
                    goto=after,
                )
            )
            rules.append(
                Rule(
                    APP_ACL,
                    T_ACL_COMMIT,
                    PRIO_NO_LIST,
                    make_match(vlan_vid=vid, eth_type=eth_type),
                    (Ct(zone=zone_of(vlan), commit=True),),
                    goto=after,
                )
            )
    return rules


def base_rules(after: int = T_LEARN) -> list[Rule]:
    """Per-switch rules independent of any list: no-list passes and table misses (``after``: see above)."""
    return [
        Rule(APP_ACL, T_ACL_PORT, PRIO_NO_LIST, make_match(metadata=(0, METADATA_PORT_LIST)), goto=T_ACL_NET),
        Rule(APP_ACL, T_ACL_NET, PRIO_NO_LIST, make_match(metadata=(0, METADATA_NET_LIST)), goto=T_LB),
        Rule(APP_ACL, T_ACL_PORT, 0),
        Rule(APP_ACL, T_ACL_NET, 0),
        Rule(APP_ACL, T_ACL_COMMIT, 0, goto=after),
    ]
