"""Validation of the ``load_balancers`` section of a network file.

Called by :func:`controller.config.parse_model`; like the other checks, these
functions record errors in the given :class:`~controller.config_base.Ctx`
and return only the objects that validated. Standard library only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

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
            return None if ip is None else Backend(ip=ip, vm=str(item))
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
