"""Validation of the ``load_balancers`` section of a network file.

Addresses are per network, as isolation is: a VIP may not be the ip of a VM
of its own network, nor an ``ip:`` backend of a balancer of its network, and
it must lie in the network's subnets when its VMs declare any; the same
address in another network is no conflict. Balancers may share a VIP when
their protocol or port differ (the app answers ARP for the VIP once and
keeps one group per balancer); the same VIP, protocol and port twice in a
network is an error. When routers join networks, the scope of these checks
will have to grow to the networks a router joins to the VIP's.

Called by :func:`controller.config.parse_model`; like the other checks, these
functions record errors in the given :class:`~controller.config.base.Ctx`
and return only the objects that validated. Standard library only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from controller.config.base import (
    Ctx,
    Known,
    describe,
    int_in,
    ipv4_address,
    mapping,
    one_of,
    optional,
    positive_number,
    reference,
    required,
    sequence,
)
from controller.config.model import Backend, HealthCheck, LoadBalancer, Vm

_WEIGHT = int_in(1, 65535)  # an OpenFlow select-group bucket weight is 16 bits


Ip = ipaddress.IPv4Address
Scoped = tuple[str, Ip]
"""An address in a network: (network name, address)."""


@dataclass
class _Claims:
    """Who already holds each address as a VIP or as an ``ip:`` backend, while balancers are checked."""

    vips: dict[Scoped, str] = field(default_factory=dict)
    backends: dict[Scoped, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Env:
    """What load-balancer checks need from the rest of the file."""

    known: Known
    vm_by_name: dict[str, Vm]
    vm_by_ip: dict[Scoped, str]
    """(network, ip) -> the VM that has it (the first by name)."""
    subnets: dict[str, frozenset[ipaddress.IPv4Network]]
    """Per network, the subnets its VMs' ips declare (prefixes shorter than /32)."""
    claims: _Claims = field(default_factory=_Claims)


def parse_load_balancers(ctx: Ctx, raw: dict[str, object], known: Known, vms: list[Vm]) -> list[LoadBalancer]:
    """The load balancers that validated, in file order; ``vms`` are the valid VMs."""
    ordered = sorted(vms, key=lambda v: v.name)
    subnets: dict[str, set[ipaddress.IPv4Network]] = {}
    for vm in ordered:
        if vm.ip is not None and vm.ip.network.prefixlen < 32:
            subnets.setdefault(vm.network, set()).add(vm.ip.network)
    env = _Env(
        known=known,
        vm_by_name={vm.name: vm for vm in ordered},
        vm_by_ip={(vm.network, vm.ip.ip): vm.name for vm in reversed(ordered) if vm.ip is not None},
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


def _load_balancer(ctx: Ctx, name: str, value: object, env: _Env) -> LoadBalancer | None:
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
    vip_ok = vip is not None and _check_vip(ctx.at("vip"), vip, network, env)
    backends = _backends(ctx.at("backends"), m.get("backends"), vip, network, env)
    if network is not None:
        _claim(env.claims, name, network, vip if vip_ok else None, backends or ())
    if vip is None or network is None or protocol is None or port is None or backends is None:
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


def _special(ip: Ip) -> str | None:
    """Why ``ip`` cannot be a host's (a VIP's, a backend's) address, or None."""
    if ip.is_unspecified:
        return "the unspecified address"
    if ip == Ip("255.255.255.255"):
        return "the broadcast address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_reserved:
        return "a reserved address"
    return None


def _subnet_end(ip: Ip, subnets: frozenset[ipaddress.IPv4Network]) -> str | None:
    """``"the network address of 10.0.0.0/24"`` when ``ip`` is one of a subnet's two reserved addresses."""
    for subnet in sorted(subnets):
        if subnet.prefixlen <= 30 and ip in (subnet.network_address, subnet.broadcast_address):
            which = "network" if ip == subnet.network_address else "broadcast"
            return f"the {which} address of {subnet}"
    return None


def _claim(claims: _Claims, name: str, network: str, vip: Ip | None, backends: tuple[Backend, ...]) -> None:
    """Record balancer ``name``'s valid VIP and ``ip:`` backends, for the balancers after it."""
    if vip is not None:
        claims.vips.setdefault((network, vip), name)
    for backend in backends:
        if backend.vm is None:
            claims.backends.setdefault((network, backend.ip), name)


def _check_vip(ctx: Ctx, vip: Ip, network: str | None, env: _Env) -> bool:
    """Whether ``vip`` is a host address, in its network's subnets, nobody else's address there."""
    mark = ctx.mark()
    special = _special(vip)
    if special is not None:
        ctx.error(f"{vip} is {special}")
        return False
    if network is None:
        return True
    holder = env.vm_by_ip.get((network, vip))
    if holder is not None:
        ctx.error(f"{vip} is the ip of VM {holder!r} in network {network!r}")
    holder = env.claims.backends.get((network, vip))
    if holder is not None:
        ctx.error(f"{vip} is a backend of load balancer {holder!r}")
    subnets = env.subnets.get(network, frozenset())
    end = _subnet_end(vip, subnets)
    if subnets and not any(vip in subnet for subnet in subnets):
        shown = ", ".join(str(s) for s in sorted(subnets))
        ctx.error(f"{vip} is outside network {network!r} ({shown})")
    elif end is not None:
        ctx.error(f"{vip} is {end}")
    return not ctx.failed_since(mark)


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
        ctx.at("timeout").error(f"must not exceed interval {interval:g}, got {timeout:g}")
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
    """The backends sorted by ip, or None after an error.

    A missing list is reported by the caller. An ``ip:`` backend must be a
    host address, not a subnet's network or broadcast address, and not the
    VIP of any balancer in the network (a VM backend's address is the VM's:
    a VIP equal to it is reported at the VIP).
    """
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
        problem = None if backend.vm is not None else _address_problem(backend.ip, network, env)
        if backend.ip == vip:
            ctx.at(i).error(f"{backend.ip} is the vip")
        elif problem is not None:
            ctx.at(i).error(f"{backend.ip} is {problem}")
        elif backend.ip in seen:
            ctx.at(i).error(f"{backend.ip} is already a backend (backends[{seen[backend.ip]}])")
        else:
            seen[backend.ip] = str(i)
            out.append(backend)
    return None if ctx.failed_since(mark) else tuple(sorted(out, key=lambda b: b.ip))


def _address_problem(ip: Ip, network: str | None, env: _Env) -> str | None:
    """Why ``ip`` cannot be an ``ip:`` backend in ``network``, or None."""
    special = _special(ip)
    if special is not None or network is None:
        return special
    holder = env.claims.vips.get((network, ip))
    if holder is not None:
        return f"the vip of load balancer {holder!r}"
    return _subnet_end(ip, env.subnets.get(network, frozenset()))


def _backend(ctx: Ctx, item: object, network: str | None, env: _Env) -> Backend | None:
    """A VM name or IPv4 address, or ``{vm: NAME, weight: N}`` / ``{ip: A.B.C.D, weight: N}``."""
    if isinstance(item, str):
        try:
            return Backend(ip=ipaddress.IPv4Address(item))
        except ValueError:
            ip = _vm_ip(ctx, item, network, env)
            return None if ip is None else Backend(ip=ip, vm=str(item))
    if not isinstance(item, dict):
        ctx.error(f"expected a VM name, an IPv4 address or a mapping, got {describe(item)}")
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


def _vm_ip(ctx: Ctx, name: str, network: str | None, env: _Env) -> ipaddress.IPv4Address | None:
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
