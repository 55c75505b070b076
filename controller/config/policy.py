"""Validation of the ``acls`` section of a network file (and the size of ``acl_in`` and ``acl_out`` lists).

Called by :func:`controller.config.parse_model`; like the other checks, these
functions record errors in the given :class:`~controller.config.base.Ctx`
and return only the objects that validated. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from controller.config.base import (
    Check,
    Ctx,
    boolean,
    describe,
    int_in,
    integer,
    ipv4_network,
    mac,
    mapping,
    one_of,
    optional,
    required,
    sequence,
)
from controller.config.ipv6 import ipv6_network
from controller.config.model import Acl, AclMatch, AclRule
from controller.flows.pipeline import MAX_ACL_LIST_RULES

ETH_TYPES: Mapping[str, int] = MappingProxyType({"arp": 0x0806, "ipv4": 0x0800, "ipv6": 0x86DD})
IP_PROTOS: Mapping[str, int] = MappingProxyType({"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58})
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD

_MATCH_KEYS = (
    "eth_type",
    "eth_src",
    "eth_dst",
    "ip_proto",
    "ipv4_src",
    "ipv4_dst",
    "tcp_src",
    "tcp_dst",
    "udp_src",
    "udp_dst",
    "icmp_type",
    "ipv6_src",
    "ipv6_dst",
    "icmpv6_type",
)
_NEEDS_PROTO: Mapping[str, str] = MappingProxyType(
    {
        "tcp_src": "tcp",
        "tcp_dst": "tcp",
        "udp_src": "udp",
        "udp_dst": "udp",
        "icmp_type": "icmp",
        "icmpv6_type": "icmpv6",
    }
)
_L4_PORT = int_in(0, 65535)
_BYTE = int_in(0, 255)


def parse_acls(ctx: Ctx, raw: dict[str, object]) -> list[Acl]:
    """The ACLs whose every rule validated, in file order."""
    out: list[Acl] = []
    for name, value in raw.items():
        c = ctx.at(name)
        items = sequence(c, value)
        if items is None:
            continue
        if not items:
            c.error("must have at least one rule")
            continue
        rules = [_rule(c.at(i), item) for i, item in enumerate(items)]
        valid = [rule for rule in rules if rule is not None]
        if len(valid) == len(rules):
            out.append(Acl(name=name, rules=tuple(valid)))
    return out


def _rule(ctx: Ctx, value: object) -> AclRule | None:
    mark = ctx.mark()
    m = mapping(ctx, value, required=("action",), optional=("match", "stateful"))
    if m is None:
        return None
    match = optional(ctx, m, "match", _match, AclMatch())
    action = required(ctx, m, "action", one_of("allow", "deny"))
    stateful = optional(ctx, m, "stateful", boolean, False)
    if stateful and action == "deny":
        ctx.at("stateful").error("only an allow rule can be stateful")
    if action is None or ctx.failed_since(mark):
        return None
    return AclRule(match=match, action="allow" if action == "allow" else "deny", stateful=stateful)


def _named_number(names: Mapping[str, int], lo: int, hi: int, width: int) -> Check[int]:
    """A check for one of ``names`` or an integer in ``lo..hi`` (shown as hex when ``width``)."""

    def show(n: int) -> str:
        return f"{n:#0{width + 2}x}" if width else str(n)

    def check(ctx: Ctx, raw: object) -> int | None:
        if isinstance(raw, str) and raw in names:
            return names[raw]
        value = integer(ctx, raw, f"{', '.join(names)} or a number", hex_first=width > 0)
        if value is None:
            return None
        if not lo <= value <= hi:
            ctx.error(f"must be between {show(lo)} and {show(hi)}, got {show(value)}")
            return None
        return value

    return check


_eth_type = _named_number(ETH_TYPES, 0x0600, 0xFFFF, 4)
_ip_proto = _named_number(IP_PROTOS, 0, 255, 0)


def _match(ctx: Ctx, value: object) -> AclMatch | None:
    """Check and normalise a rule's ``match``; see :class:`AclMatch` for the invariants."""
    mark = ctx.mark()
    m = mapping(ctx, value, optional=_MATCH_KEYS)
    if m is None:
        return None
    eth_type = optional(ctx, m, "eth_type", _eth_type, None)
    ip_proto = optional(ctx, m, "ip_proto", _ip_proto, None)
    v4, v6 = _families(m, ip_proto)
    if v4 and v6:
        ctx.error(f"mixes IPv4 ({', '.join(v4)}) and IPv6 ({', '.join(v6)}) fields")
    elif eth_type is not None:
        _check_eth_type(ctx.at("eth_type"), m["eth_type"], eth_type, v4, v6, "ip_proto" in m)
    if "ip_proto" not in m or ip_proto is not None:
        for key, proto in _NEEDS_PROTO.items():
            if key in m and ip_proto != IP_PROTOS[proto]:
                ctx.at(key).error(f"needs ip_proto: {proto}")
    implied = ETH_IPV6 if v6 else ETH_IPV4 if v4 or "ip_proto" in m else None
    result = AclMatch(
        eth_type=implied if eth_type is None else eth_type,
        eth_src=optional(ctx, m, "eth_src", mac, None),
        eth_dst=optional(ctx, m, "eth_dst", mac, None),
        ip_proto=ip_proto,
        ipv4_src=optional(ctx, m, "ipv4_src", ipv4_network, None),
        ipv4_dst=optional(ctx, m, "ipv4_dst", ipv4_network, None),
        tcp_src=optional(ctx, m, "tcp_src", _L4_PORT, None),
        tcp_dst=optional(ctx, m, "tcp_dst", _L4_PORT, None),
        udp_src=optional(ctx, m, "udp_src", _L4_PORT, None),
        udp_dst=optional(ctx, m, "udp_dst", _L4_PORT, None),
        icmp_type=optional(ctx, m, "icmp_type", _BYTE, None),
        ipv6_src=optional(ctx, m, "ipv6_src", ipv6_network, None),
        ipv6_dst=optional(ctx, m, "ipv6_dst", ipv6_network, None),
        icmpv6_type=optional(ctx, m, "icmpv6_type", _BYTE, None),
    )
    return None if ctx.failed_since(mark) else result


def _families(m: Mapping[str, object], ip_proto: int | None) -> tuple[list[str], list[str]]:
    """The keys of a match that make it IPv4, and those that make it IPv6 (ICMP is one or the other)."""
    v4 = [key for key in ("ipv4_src", "ipv4_dst") if key in m]
    v6 = [key for key in ("ipv6_src", "ipv6_dst") if key in m]
    if ip_proto == IP_PROTOS["icmp"]:
        v4.insert(0, "ip_proto: icmp")
    elif ip_proto == IP_PROTOS["icmpv6"]:
        v6.insert(0, "ip_proto: icmpv6")
    return v4, v6


def _check_eth_type(ctx: Ctx, raw: object, eth_type: int, v4: list[str], v6: list[str], has_proto: bool) -> None:
    """``eth_type`` must be the family the IP fields of the match belong to."""
    for family, value, keys in (("ipv4", ETH_IPV4, v4), ("ipv6", ETH_IPV6, v6)):
        if keys and eth_type != value:
            verb = "is" if len(keys) == 1 else "are"
            ctx.error(f"must be {family} when {', '.join(keys)} {verb} given, got {describe(raw)}")
            return
    if has_proto and not v4 and not v6 and eth_type not in (ETH_IPV4, ETH_IPV6):
        ctx.error(f"must be ipv4 or ipv6 when ip_proto is given, got {describe(raw)}")


MAX_LIST_RULES = MAX_ACL_LIST_RULES
"""Rules one ``acl_in`` or ``acl_out`` list may hold in all (the ACL priority band, :mod:`controller.flows.pipeline`)."""


def check_list_sizes(ctx: Ctx, acls: list[Acl], users: list[tuple[str, tuple[str, ...]]]) -> None:
    """Reject an ``acl_in`` or ``acl_out`` list whose ACLs have more than :data:`MAX_LIST_RULES` rules in all.

    ``users`` are (YAML path of the list's key, the list) pairs.
    """
    sizes = {acl.name: len(acl.rules) for acl in acls}
    for path, names in users:
        total = sum(sizes.get(n, 0) for n in names)
        if total > MAX_LIST_RULES:
            ctx.at(path).error(
                f"ACLs {', '.join(names)} have {total} rules in all; more than {MAX_LIST_RULES} cannot keep their order"
            )
