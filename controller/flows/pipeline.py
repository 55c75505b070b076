"""The table pipeline, declared as data, and the check every rule must pass.

| table | name       | owner   | does                                                                 |
|-------|------------|---------|----------------------------------------------------------------------|
| 0     | ingress    | ingress | LLDP to controller; port -> network VLAN and ACL ids; port security  |
| 1     | acl_port   | acl, lb | conntrack pass; replies of committed connections on; per-VM ACLs     |
| 2     | acl_net    | acl     | per-network ACLs                                                     |
| 3     | lb         | lb      | VIP ARP replies, VIP -> backend (select group, conntrack NAT)         |
| 4     | acl_commit | acl     | commit connections a stateful rule allowed                           |
| 5     | learn      | l2      | known (vlan, src MAC, port) -> 6; unknown -> controller + 6           |
| 6     | forward    | l2      | (vlan, dst MAC) -> output or fast-failover group; miss -> 7          |
| 7     | flood      | flood   | per-network flood along the loop-free tree                           |

Traffic from a trunk was filtered at its first switch and goes from
ingress straight to learn. The metadata register carries, from ingress to
the ACL tables, which ACL list applies to the port (bits 0-31) and to the
network (bits 32-62); bit 63 marks "a stateful rule allowed this".
On trunks the VLAN tag's priority (PCP) is 0, or 1 on a frame that a
fast-failover group sent onto a backup path (see :mod:`apps.l2.rules`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from controller.flows.rules import Ct, Rule

# App ids: the top byte of every cookie.
APP_INGRESS = 1
APP_ACL = 2
APP_LB = 3
APP_L2 = 4
APP_FLOOD = 5
APP_NAMES: Mapping[int, str] = {
    APP_INGRESS: "ingress", APP_ACL: "acl", APP_LB: "lb", APP_L2: "l2", APP_FLOOD: "flood",
}

T_INGRESS, T_ACL_PORT, T_ACL_NET, T_LB, T_ACL_COMMIT, T_LEARN, T_FORWARD, T_FLOOD = range(8)


class PipelineError(ValueError):
    """A rule does not fit the declared pipeline."""


@dataclass(frozen=True)
class TableSpec:
    """What a table may match, who may write it and where it may go next."""

    table_id: int
    name: str
    owners: frozenset[int]
    match_fields: frozenset[str]
    next_tables: frozenset[int]


_L2 = frozenset({"in_port", "vlan_vid", "eth_src", "eth_dst", "eth_type"})
_L3 = frozenset({"arp_spa", "arp_tpa", "arp_sha", "arp_op", "ip_proto", "ipv4_src", "ipv4_dst",
                 "tcp_src", "tcp_dst", "udp_src", "udp_dst", "icmpv4_type", "icmpv4_code"})

_CT = frozenset({"ct_state", "ct_zone", "ct_mark", "metadata"})

PIPELINE: tuple[TableSpec, ...] = (
    TableSpec(T_INGRESS, "ingress", frozenset({APP_INGRESS}), _L2 | _L3,
              frozenset({T_ACL_PORT, T_LB, T_LEARN})),
    TableSpec(T_ACL_PORT, "acl_port", frozenset({APP_ACL, APP_LB}), _L2 | _L3 | _CT,
              frozenset({T_ACL_PORT, T_ACL_NET, T_LB, T_LEARN})),
    TableSpec(T_ACL_NET, "acl_net", frozenset({APP_ACL}), _L2 | _L3 | _CT, frozenset({T_LB})),
    TableSpec(T_LB, "lb", frozenset({APP_LB}), _L2 | _L3 | _CT,
              frozenset({T_LB, T_ACL_COMMIT, T_LEARN})),
    TableSpec(T_ACL_COMMIT, "acl_commit", frozenset({APP_ACL}), _L2 | _CT, frozenset({T_LEARN})),
    TableSpec(T_LEARN, "learn", frozenset({APP_L2}), _L2, frozenset({T_FORWARD})),
    TableSpec(T_FORWARD, "forward", frozenset({APP_L2}), _L2 | {"vlan_pcp"}, frozenset({T_FLOOD})),
    TableSpec(T_FLOOD, "flood", frozenset({APP_FLOOD}), _L2, frozenset()),
)
TABLES: Mapping[int, TableSpec] = {t.table_id: t for t in PIPELINE}


def check_rule(rule: Rule) -> None:
    """Raise :class:`PipelineError` unless ``rule`` fits its table's declaration.

    Checks the table exists, the owner app may write it, every match field
    is allowed there, and ``goto`` / conntrack recirculation go only to a
    declared next table.
    """
    spec = TABLES.get(rule.table)
    if spec is None:
        raise PipelineError(f"rule for unknown table {rule.table}: {rule}")
    if rule.app not in spec.owners:
        raise PipelineError(f"app {APP_NAMES.get(rule.app, rule.app)} may not write table {spec.name}")
    bad = sorted(k for k, _ in rule.match if k not in spec.match_fields)
    if bad:
        raise PipelineError(f"table {spec.name} does not match on {', '.join(bad)}")
    nexts = [rule.goto] if rule.goto is not None else []
    nexts += [a.recirc_table for a in rule.actions if isinstance(a, Ct) and a.recirc_table is not None]
    for nxt in nexts:
        if nxt not in spec.next_tables:
            raise PipelineError(f"table {spec.name} may not go to table {nxt}")


def check_rules(rules: Iterable[Rule]) -> None:
    """Check every rule and that no two share (table, priority, match) with different content."""
    seen: dict[tuple[object, ...], Rule] = {}
    for rule in rules:
        check_rule(rule)
        key = (rule.table, rule.priority, rule.match)
        other = seen.setdefault(key, rule)
        if other != rule:
            raise PipelineError(f"conflicting rules for one match: {other} and {rule}")
