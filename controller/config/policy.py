"""Validation of the policy sections of a network file: ``acls`` and ``load_balancers``.

Called by :func:`controller.config.parse_model`; like the other checks, these
functions record errors in the given :class:`~controller.config_base.Ctx`
and return only the objects that validated. Standard library only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from controller.flows.pipeline import MAX_ACL_LIST_RULES
from controller.config.base import (
    Check,
    Ctx,
    Known,
    boolean,
    describe,
    int_in,
    ipv4_address,
    ipv4_network,
    mac,
    mapping,
    one_of,
    optional,
    positive_number,
    reference,
    required,
    sequence,
)
from controller.config.ipv6 import ipv6_network
from controller.config.model import (
    Acl,
    AclMatch,
    AclRule,
    Backend,
    HealthCheck,
    LoadBalancer,
    Vm,
)

ETH_TYPES: Mapping[str, int] = MappingProxyType(
    {"arp": 0x0806, "ipv4": 0x0800, "ipv6": 0x86DD}
)
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
_WEIGHT = int_in(1, 65535)  # an OpenFlow select-group bucket weight is 16 bits


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
    return AclRule(
        match=match, action="allow" if action == "allow" else "deny", stateful=stateful
    )


def _named_number(names: Mapping[str, int], lo: int, hi: int, width: int) -> Check[int]:
    """A check for one of ``names`` or an integer in ``lo..hi`` (shown as hex when ``width``)."""

    def show(n: int) -> str:
        return f"{n:#0{width + 2}x}" if width else str(n)

    def check(ctx: Ctx, value: object) -> int | None:
        if isinstance(value, str) and value in names:
            return names[value]
        if isinstance(value, bool) or not isinstance(value, int):
            ctx.error(f"expected {', '.join(names)} or a number, got {describe(value)}")
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


@dataclass(frozen=True)
class _Env:
    """What load-balancer checks need from the rest of the file."""

    known: Known
    vm_by_name: dict[str, Vm]
    vm_by_ip: dict[ipaddress.IPv4Address, str]
    subnets: dict[str, frozenset[ipaddress.IPv4Network]]
    """Per network, the subnets its VMs' ips declare (prefixes shorter than /32)."""


def parse_load_balancers(
    ctx: Ctx, raw: dict[str, object], known: Known, vms: list[Vm]
) -> list[LoadBalancer]:
    """The load balancers that validated, in file order; ``vms`` are the valid VMs."""
    ordered = sorted(vms, key=lambda v: v.name)
    subnets: dict[str, set[ipaddress.IPv4Network]] = {}
    for vm in ordered:
        if vm.ip is not None and vm.ip.network.prefixlen < 32:
            subnets.setdefault(vm.network, set()).add(vm.ip.network)
    env = _Env(
        known=known,
        vm_by_name={vm.name: vm for vm in ordered},
        vm_by_ip={vm.ip.ip: vm.name for vm in reversed(ordered) if vm.ip is not None},
        subnets={net: frozenset(nets) for net, nets in subnets.items()},
    )
    out: list[LoadBalancer] = []
    services: dict[tuple[object, ...], str] = {}
    for name, value in raw.items():
        lb = _load_balancer(ctx.at(name), name, value, env)
        if lb is None:
            continue
        service = (lb.network, lb.vip, lb.protocol, lb.port)
        if service in services:
            ctx.at(name).error(
                f"{lb.vip} {lb.protocol}/{lb.port} in network {lb.network!r} "
                f"is already served by load balancer {services[service]!r}"
            )
            continue
        services[service] = name
        out.append(lb)
    return out


def _load_balancer(
    ctx: Ctx, name: str, value: object, env: _Env
) -> LoadBalancer | None:
    mark = ctx.mark()
    m = mapping(
        ctx,
        value,
        required=("vip", "network", "protocol", "port", "backends"),
        optional=("health_check",),
    )
    if m is None:
        return None
    vip = required(ctx, m, "vip", ipv4_address)
    network = required(ctx, m, "network", reference(env.known.networks, "network"))
    protocol = required(ctx, m, "protocol", one_of("tcp", "udp"))
    port = required(ctx, m, "port", int_in(1, 65535))
    health = optional(ctx, m, "health_check", _health_check, HealthCheck())
    if vip is not None:
        _check_vip(ctx.at("vip"), vip, network, env)
    backends = _backends(ctx.at("backends"), m.get("backends"), vip, network, env)
    if (
        vip is None
        or network is None
        or protocol is None
        or port is None
        or backends is None
    ):
        return None
    if ctx.failed_since(mark):
        return None
    return LoadBalancer(
        name=name,
        vip=vip,
        network=network,
        protocol="udp" if protocol == "udp" else "tcp",
        port=port,
        backends=backends,
        health_check=health,
    )


def _check_vip(
    ctx: Ctx, vip: ipaddress.IPv4Address, network: str | None, env: _Env
) -> None:
    if vip in env.vm_by_ip:
        ctx.error(f"{vip} is the ip of VM {env.vm_by_ip[vip]!r}")
    subnets = env.subnets.get(network or "")
    if subnets and not any(vip in subnet for subnet in subnets):
        shown = ", ".join(str(s) for s in sorted(subnets))
        ctx.error(f"{vip} is outside network {network!r} ({shown})")


def _health_check(ctx: Ctx, value: object) -> HealthCheck | None:
    d = HealthCheck()
    m = mapping(ctx, value, optional=("type", "interval", "timeout", "fall", "rise"))
    if m is None:
        return None
    default_kind: str = d.type
    kind = optional(ctx, m, "type", one_of("tcp", "icmp"), default_kind)
    interval = optional(ctx, m, "interval", positive_number, d.interval)
    timeout = optional(ctx, m, "timeout", positive_number, d.timeout)
    if timeout > interval:
        ctx.at("timeout").error(
            f"must not exceed interval {interval:g}, got {timeout:g}"
        )
    return HealthCheck(
        type="icmp" if kind == "icmp" else "tcp",
        interval=interval,
        timeout=timeout,
        fall=optional(ctx, m, "fall", int_in(1), d.fall),
        rise=optional(ctx, m, "rise", int_in(1), d.rise),
    )


def _backends(
    ctx: Ctx,
    value: object,
    vip: ipaddress.IPv4Address | None,
    network: str | None,
    env: _Env,
) -> tuple[Backend, ...] | None:
    """The backends sorted by ip, or None after an error (a missing list is reported by the caller)."""
    if value is None:
        return None
    items = sequence(ctx, value)
    if items is None:
        return None
    if not items:
        ctx.error("must list at least one backend")
        return None
    mark = ctx.mark()
    seen: dict[ipaddress.IPv4Address, str] = {}
    out: list[Backend] = []
    for i, item in enumerate(items):
        backend = _backend(ctx.at(i), item, network, env)
        if backend is None:
            continue
        if backend.ip == vip:
            ctx.at(i).error(f"{backend.ip} is the vip")
        elif backend.ip in seen:
            ctx.at(i).error(
                f"{backend.ip} is already a backend (backends[{seen[backend.ip]}])"
            )
        else:
            seen[backend.ip] = str(i)
            out.append(backend)
    return None if ctx.failed_since(mark) else tuple(sorted(out, key=lambda b: b.ip))


def _backend(ctx: Ctx, item: object, network: str | None, env: _Env) -> Backend | None:
    """A VM name or IPv4 address, or ``{vm: NAME, weight: N}`` / ``{ip: A.B.C.D, weight: N}``."""
    if isinstance(item, str):
        try:
            return Backend(ip=ipaddress.IPv4Address(item))
        except ValueError:
            ip = _vm_ip(ctx, item, network, env)
            return None if ip is None else Backend(ip=ip, vm=item)
    if not isinstance(item, dict):
        ctx.error(
            f"expected a VM name, an IPv4 address or a mapping, got {describe(item)}"
        )
        return None
    m = mapping(ctx, item, optional=("vm", "ip", "weight"))
    if m is None:
        return None
    weight = optional(ctx, m, "weight", _WEIGHT, 1)
    if ("vm" in m) == ("ip" in m):
        ctx.error("needs exactly one of vm or ip")
        return None
    if "ip" in m:
        address = required(ctx, m, "ip", ipv4_address)
        return None if address is None else Backend(ip=address, weight=weight)
    vm = required(ctx, m, "vm", reference(env.known.vms, "VM"))
    ip = None if vm is None else _vm_ip(ctx.at("vm"), vm, network, env)
    return None if ip is None else Backend(ip=ip, vm=vm, weight=weight)


def _vm_ip(
    ctx: Ctx, name: str, network: str | None, env: _Env
) -> ipaddress.IPv4Address | None:
    """The ip of backend VM ``name``, which must exist, have an ip and be in ``network``."""
    if env.known.vms is not None and name not in env.known.vms:
        ctx.error(f"unknown VM {name!r}")
        return None
    vm = env.vm_by_name.get(name)
    if vm is None:  # declared but invalid: already reported
        return None
    if vm.ip is None:
        ctx.error(f"VM {name!r} has no ip")
        return None
    if network is not None and vm.network != network:
        ctx.error(f"VM {name!r} is in network {vm.network!r}, not {network!r}")
        return None
    return vm.ip.ip


MAX_LIST_RULES = MAX_ACL_LIST_RULES
"""Rules one ``acl_in`` list may hold in all (the ACL priority band, :mod:`controller.flows.pipeline`)."""


def check_list_sizes(ctx: Ctx, acls: list[Acl], users: list[tuple[str, tuple[str, ...]]]) -> None:
    """Reject an ``acl_in`` list whose ACLs have more than :data:`MAX_LIST_RULES` rules in all.

    ``users`` are (YAML path of the ``acl_in`` key, the list) pairs.
    """
    sizes = {acl.name: len(acl.rules) for acl in acls}
    for path, names in users:
        total = sum(sizes.get(n, 0) for n in names)
        if total > MAX_LIST_RULES:
            ctx.at(path).error(f"ACLs {', '.join(names)} have {total} rules in all; "
                               f"more than {MAX_LIST_RULES} cannot keep their order")
