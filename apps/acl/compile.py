"""The ACL firewall: where traffic enters (``acl_port``, ``acl_net``, ``acl_commit``) and where it is delivered
(``egress``, ``acl_out_net``, ``acl_out_port``, ``egress_commit``).

Semantics (see :mod:`apps.acl.plan` for lists and ids, :mod:`apps.acl.conntrack`
for the conntrack passes and commits):

- Where a packet enters, the sender VM's ``acl_in`` list is checked in
  ``acl_port``, its network's in ``acl_net``; where it is delivered, the
  receiver's network ``acl_out`` list in ``acl_out_net`` and the VM's in
  ``acl_out_port``. A packet goes on only if every list allows it. Within a
  list rules keep their file order through priorities; first match wins;
  no match denies. ARP is allowed unless a rule of the list matches
  ``eth_type: arp`` explicitly; IPv6 neighbour discovery (ICMPv6 neighbour
  solicitations and advertisements, its ARP) unless a rule matches
  ``icmpv6_type`` 135 or 136.
- Each distinct list is compiled once per stage (rules keyed by its id in
  metadata) and installed on every switch where some port uses it, so a
  5,000-rule ACL on 100 ports is 5,000 flows per switch, not 500,000.
- In a tracked network (a stateful rule applies there, or a load balancer
  lives there) IPv4 and IPv6 go through conntrack in zone = the network's
  VLAN where they enter and again where they are delivered (after
  ``ct_clear``), as OVN's from-lport and to-lport stages: on one host both
  passes find the one connection, on two hosts each conntrack learns it.
  Invalid packets drop, except ICMPv6 messages conntrack does not track
  (neighbour discovery, MLD, router solicitation: always ``+inv``), which
  the lists judge like any packet. Every packet that passed the lists is
  committed at both ends (so conntrack sees both directions and a reply is
  never "invalid"). One in its connection's original direction
  (``-rpl-rel``) that a stateful allow let through (or any the load balancer
  let through) carries VLAN priority :data:`~controller.flows.pipeline.PCP_STATEFUL`
  to the delivering switch, which commits its connection marked
  (``ct_mark`` 1) once the receiver's ``acl_out`` allowed it too. Replies
  and related ICMP errors (``+rel``) of marked connections skip the lists
  at both ends (entering, they leave with the same priority, so a delivering
  switch on another host knows); replies of unmarked ones (allowed by
  stateless rules) are checked like any packet, so a stateless allow admits
  no reply traffic, and a stateful allow that lets a reply through opens
  nothing (the reply still meets the receiver's ``acl_out``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from apps.acl.plan import AclList, AclPlan
from controller.config.model import Acl, AclMatch, AclRule, Model
from controller.flows.pipeline import (
    ACL_TOP_RULE_PRIORITY,
    APP_ACL,
    MAX_ACL_LIST_RULES,
    METADATA_NET_LIST,
    METADATA_NET_SHIFT,
    METADATA_PORT_LIST,
    METADATA_STATEFUL,
    T_ACL_COMMIT,
    T_ACL_NET,
    T_ACL_OUT_NET,
    T_ACL_OUT_PORT,
    T_ACL_PORT,
    T_EGRESS_COMMIT,
    T_LB,
    T_LEARN,
    T_OUTPUT,
)
from controller.flows.rules import (
    MatchValue,
    Rule,
    make_match,
)
from controller.packets import (
    ETH_ARP,
    ETH_IPV6,
    ICMPV6_NA,
    ICMPV6_NS,
    IP_PROTO_ICMPV6,
)

PRIO_ARP = 60000
PRIO_TOP_RULE = ACL_TOP_RULE_PRIORITY
PRIO_DEFAULT_DENY = 100
PRIO_NO_LIST = 1
IMPLICIT_DENY = "implicit-deny"
ARP_ALLOW = "arp-allow"
ND_ALLOW = "nd-allow"
ND_TYPES = (ICMPV6_NS, ICMPV6_NA)
"""ICMPv6 neighbour solicitation and advertisement: allowed unless a rule of the list names one."""


@dataclass(frozen=True)
class Stage:
    """One ACL table: where its list id sits in metadata, where an allow goes, which direction it polices.

    ``direction`` is ``in`` (``acl_in``, where traffic enters) or ``out``
    (``acl_out``, where it is delivered); ``scope`` is ``vm`` or ``network``.
    """

    table: int
    bits: int
    shift: int
    allow_to: int
    direction: str = "in"
    scope: str = "vm"


PORT_STAGE = Stage(T_ACL_PORT, METADATA_PORT_LIST, 0, T_ACL_NET)
NET_STAGE = Stage(T_ACL_NET, METADATA_NET_LIST, METADATA_NET_SHIFT, T_LB, scope="network")
OUT_NET_STAGE = Stage(
    T_ACL_OUT_NET, METADATA_NET_LIST, METADATA_NET_SHIFT, T_ACL_OUT_PORT, direction="out", scope="network"
)
OUT_PORT_STAGE = Stage(T_ACL_OUT_PORT, METADATA_PORT_LIST, 0, T_EGRESS_COMMIT, direction="out")
STAGES = (PORT_STAGE, NET_STAGE, OUT_NET_STAGE, OUT_PORT_STAGE)
STAGE_OF_TABLE = {stage.table: stage for stage in STAGES}

Origin = tuple[str, str, str]
"""(ACL name, rule label, direction) a flow stands for: the rule index or a pseudo-rule name, ``in`` or ``out``."""


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
    way = stage.direction
    out: list[tuple[Rule, Origin]] = []
    if not any(r.match.eth_type == ETH_ARP for _, _, r in entries):
        out.append(
            (
                Rule(APP_ACL, stage.table, PRIO_ARP, make_match(metadata=meta, eth_type=ETH_ARP), goto=stage.allow_to),
                (label, ARP_ALLOW, way),
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
                (label, ND_ALLOW, way),
            )
            for t in ND_TYPES
        ]
    for k, (name, index, rule) in enumerate(entries):
        out.append((_rule(stage, meta, PRIO_TOP_RULE - k, rule), (name, str(index), way)))
    out.append((Rule(APP_ACL, stage.table, PRIO_DEFAULT_DENY, make_match(metadata=meta)), (label, IMPLICIT_DENY, way)))
    return tuple(out)


def _rule(stage: Stage, meta: tuple[int, int], priority: int, rule: AclRule) -> Rule:
    match = make_match(metadata=meta, **acl_match(rule.match))
    if rule.action == "deny":
        return Rule(APP_ACL, stage.table, priority, match)
    commit = (METADATA_STATEFUL, METADATA_STATEFUL) if rule.stateful else None
    return Rule(APP_ACL, stage.table, priority, match, goto=stage.allow_to, write_metadata=commit)


def _lists(plan: AclPlan) -> list[tuple[Stage, AclList, int]]:
    return [
        (stage, names, i)
        for stage, ids in (
            (PORT_STAGE, plan.port_ids),
            (NET_STAGE, plan.net_ids),
            (OUT_NET_STAGE, plan.out_net_ids),
            (OUT_PORT_STAGE, plan.out_port_ids),
        )
        for names, i in sorted(ids.items())
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
        """Every list of ``model`` with its compiled rules: ``acl_in`` (ports', networks'), then ``acl_out``."""
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
        """Cookie of every ACL-list flow -> the (ACL, rule, direction) it counts hits for."""
        return {rule.cookie: origin for _, _, compiled in self.lists(model, plan) for rule, origin in compiled}


def rule_origins(model: Model, plan: AclPlan) -> Mapping[int, Origin]:
    """:meth:`ListCompiler.origins` for a one-off question (``vmn trace``, tests)."""
    return ListCompiler().origins(model, plan)


def base_rules(after: int = T_LEARN) -> list[Rule]:
    """Per-switch rules independent of any list: no-list passes and table misses, both directions.

    ``after`` is the table after ``acl_commit`` (where commits and replies that skip the ACLs go on).
    """
    return [
        Rule(APP_ACL, stage.table, PRIO_NO_LIST, make_match(metadata=(0, stage.bits)), goto=stage.allow_to)
        for stage in STAGES
    ] + [
        Rule(APP_ACL, T_ACL_PORT, 0),
        Rule(APP_ACL, T_ACL_NET, 0),
        Rule(APP_ACL, T_ACL_COMMIT, 0, goto=after),
        Rule(APP_ACL, T_ACL_OUT_NET, 0),
        Rule(APP_ACL, T_ACL_OUT_PORT, 0),
        Rule(APP_ACL, T_EGRESS_COMMIT, 0, goto=T_OUTPUT),
    ]
