"""Flow rules and groups printed in ``ovs-ofctl`` syntax (what ``add-flow`` and ``add-group`` accept).

One printer for ``vmn flows``, ``GET /api/v1/flows`` and ``vmn plan``, so
the three always agree. Output is deterministic: rules sort by table,
priority (highest first), then text.

"""

from __future__ import annotations

from collections.abc import Iterable

from controller.flows.rules import (
    FLAG_SEND_FLOW_REM,
    OFPP_CONTROLLER,
    OFPP_IN_PORT,
    OFPP_LOCAL,
    Action,
    Clone,
    Ct,
    CtClear,
    DecTtl,
    Group,
    GroupEntry,
    MatchValue,
    Move,
    Nat,
    Output,
    PopVlan,
    PushVlan,
    Resubmit,
    Rule,
    SetField,
)

OFPP_ALL = 0xFFFFFFFC
OFPP_FLOOD = 0xFFFFFFFB
_PORT_NAMES = {OFPP_CONTROLLER: "CONTROLLER", OFPP_IN_PORT: "IN_PORT", OFPP_LOCAL: "LOCAL", OFPP_ALL: "ALL"}
_PORT_NAMES[OFPP_FLOOD] = "FLOOD"
_OVS_NAMES = {
    "ipv4_src": "nw_src",
    "ipv4_dst": "nw_dst",
    "icmpv4_type": "icmp_type",
    "icmpv4_code": "icmp_code",
    "ipv6_nd_target": "nd_target",
    "ipv6_nd_sll": "nd_sll",
    "ipv6_nd_tll": "nd_tll",
}
"""OXM field names that ``ovs-ofctl`` spells otherwise; the rest it accepts as they are."""
_HEX_FIELDS = frozenset({"vlan_vid", "eth_type", "metadata", "ct_state", "ct_mark", "ct_label", "tunnel_id"})
_CT_BITS = ("new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat")


def _ct_state(value: int, mask: int) -> str:
    """``+trk+est-inv`` for a (value, mask) pair, as ``ovs-ofctl`` prints it."""
    order = (5, 0, 1, 2, 3, 4, 6, 7)  # trk first, then OVS's bit order
    return "".join(("+" if value >> i & 1 else "-") + _CT_BITS[i] for i in order if mask >> i & 1)


def _value(name: str, value: MatchValue | str | int) -> str:
    if isinstance(value, tuple):
        if name == "ct_state" and isinstance(value[0], int) and isinstance(value[1], int):
            return _ct_state(value[0], value[1])
        return f"{_value(name, value[0])}/{_value(name, value[1])}"
    if isinstance(value, int):
        if name == "eth_type":
            return f"0x{value:04x}"
        return f"0x{value:x}" if name in _HEX_FIELDS else str(value)
    return value


def match_text(match: Iterable[tuple[str, MatchValue]]) -> str:
    """``in_port=1,vlan_vid=0x1064/0x1fff,...`` in the rule's (sorted) field order."""
    return ",".join(f"{_OVS_NAMES.get(k, k)}={_value(k, v)}" for k, v in match)


def _nat(nat: Nat) -> str:
    if nat.src is not None:
        return f"nat(src={nat.src})"
    if nat.dst is None:
        return "nat"
    return f"nat(dst={nat.dst}" + (f":{nat.port})" if nat.port is not None else ")")


def action_text(action: Action) -> str:
    """One action as ``ovs-ofctl`` writes it (``output:2``, ``ct(commit,zone=5,...)``).

    Raises TypeError for an action type this printer does not know.
    """
    if isinstance(action, Output):
        name = _PORT_NAMES.get(action.port)
        if action.port == OFPP_CONTROLLER:
            return f"CONTROLLER:{action.max_len}"
        return name if name else f"output:{action.port}"
    if isinstance(action, PushVlan):
        return f"push_vlan:0x{action.ethertype:04x}"
    if isinstance(action, PopVlan):
        return "pop_vlan"
    if isinstance(action, SetField):
        return f"set_field:{_value(action.field, action.value)}->{_OVS_NAMES.get(action.field, action.field)}"
    if isinstance(action, Group):
        return f"group:{action.group_id}"
    if isinstance(action, Ct):
        parts = ["commit"] if action.commit else []
        parts.append(f"zone={action.zone}")
        if action.recirc_table is not None:
            parts.append(f"table={action.recirc_table}")
        if action.nat is not None:
            parts.append(_nat(action.nat))
        if action.mark is not None:
            parts.append(f"exec(set_field:0x{action.mark:x}->ct_mark)")
        return f"ct({','.join(parts)})"
    if isinstance(action, Move):
        return f"move:{_OVS_NAMES.get(action.src, action.src)}[]->{_OVS_NAMES.get(action.dst, action.dst)}[]"
    if isinstance(action, CtClear):
        return "ct_clear"
    if isinstance(action, Resubmit):
        return f"resubmit(,{action.table})"
    if isinstance(action, DecTtl):
        return "dec_ttl"
    if isinstance(action, Clone):
        return f"clone({','.join(action_text(a) for a in action.actions)})"
    raise TypeError(f"unknown action {action!r}")


def flow_line(rule: Rule) -> str:
    """One rule as an ``ovs-ofctl -O OpenFlow13 add-flow`` argument (cookie included)."""
    head = [f"cookie=0x{rule.cookie:x}", f"table={rule.table}", f"priority={rule.priority}"]
    if rule.match:
        head.append(match_text(rule.match))
    if rule.idle_timeout:
        head.append(f"idle_timeout={rule.idle_timeout}")
    if rule.flags & FLAG_SEND_FLOW_REM:
        head.append("send_flow_rem")
    acts = [f"meter:{rule.meter}"] if rule.meter is not None else []
    acts += [action_text(a) for a in rule.actions]
    if rule.write_metadata is not None:
        acts.append("write_metadata:0x{:x}/0x{:x}".format(*rule.write_metadata))
    if rule.goto is not None:
        acts.append(f"goto_table:{rule.goto}")
    return ",".join(head) + " actions=" + (",".join(acts) or "drop")


def _sort_key(rule: Rule) -> tuple[int, int, str]:
    return (rule.table, -rule.priority, flow_line(rule))


def flow_lines(rules: Iterable[Rule]) -> list[str]:
    """Every rule's line, by table, then priority (highest first), then text."""
    return [flow_line(r) for r in sorted(rules, key=_sort_key)]


def group_line(group: GroupEntry) -> str:
    """One group as an ``ovs-ofctl -O OpenFlow13 add-group`` argument."""
    kind = {"ff": "ff", "select": "select", "all": "all"}[group.type]
    buckets = []
    for weight, watch, actions in group.buckets:
        opts = [f"weight:{weight}"] if group.type == "select" else []
        if group.type == "ff":
            opts.append(f"watch_port:{watch}")
        acts = ",".join(action_text(a) for a in actions) or "drop"
        buckets.append("bucket=" + ",".join([*opts, f"actions={acts}"]))
    return ",".join([f"group_id={group.group_id}", f"type={kind}", *buckets])


def group_lines(groups: Iterable[GroupEntry]) -> list[str]:
    """Every group's line, by group id."""
    return [group_line(g) for g in sorted(groups, key=lambda g: g.group_id)]


def switch_text(name: str, dpid: int, flows: Iterable[str], groups: Iterable[str]) -> str:
    """One switch's block of ``vmn flows``: a ``# name`` header line, its flow lines, then its group lines."""
    flows, groups = list(flows), list(groups)
    head = f"# {name} dpid={dpid:016x} flows={len(flows)} groups={len(groups)}"
    return "\n".join([head, *flows, *groups]) + "\n"


def plan_text(switches: Iterable[tuple[str, str, Iterable[str], Iterable[str]]]) -> str:
    """``vmn plan``'s output from (name, dpid text, removed lines, added lines) per switch.

    Each switch gets a header (``s1 (0000000000000001): 1 removed, 1 added``
    or ``...: no change``), then ``- `` before each removed flow and ``+ ``
    before each added one.
    """
    out = []
    for name, dpid, removed, added in switches:
        gone, new = list(removed), list(added)
        summary = f"{len(gone)} removed, {len(new)} added" if gone or new else "no change"
        out.append(f"{name} ({dpid}): {summary}")
        out += [f"- {line}" for line in gone] + [f"+ {line}" for line in new]
    return "\n".join(out) + "\n"
