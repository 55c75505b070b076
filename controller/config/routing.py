"""Validation of routing: ``networks.X.gateway``, ``dhcp``, ``dns`` and the ``routers`` section.

A network with a ``gateway`` (``10.0.0.1/24``) is a subnet with a router
address; a ``router`` joins networks that all have one, and routes IPv4
between them (and to its static routes' prefixes). The checks:

- a gateway is a host address of its own subnet (prefix at most /31; not
  the subnet's network or broadcast address, nor a special address);
- a VM's ``ip`` lies in its network's gateway subnet, with the same prefix
  when it declares one, and is not the gateway's address; a load balancer's
  VIP is not the gateway's address either;
- ``dhcp: true`` needs a gateway (the server's address and the router it
  offers); ``dns`` (IPv4 addresses) needs ``dhcp``;
- every network of a router exists and has a gateway, a network is on at
  most one router (routers do not chain), and the subnets of one router's
  networks do not overlap (across routers they may);
- a static route's prefix is not inside one of the router's subnets (those
  are reached directly), appears once per router, and its next hop is the
  ip of a VM of one of the router's networks.

- ``uplink`` names a declared uplink that serves no other router, whose
  subnet overlaps none of the router's (:mod:`controller.config.uplinks`).

Standard library only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.config.base import (
    Ctx,
    Known,
    boolean,
    ipv4_address,
    ipv4_interface,
    ipv4_network,
    mapping,
    optional,
    reference,
    references,
    required,
    sequence,
)
from controller.config.model import LoadBalancer, Network, Router, StaticRoute, Uplink, Vm

NETWORK_KEYS = ("gateway", "dhcp", "dns")
"""The keys of a network this module reads."""
_ROUTER_KEYS = ("routes", "uplink")


GATEWAY_MAC_PREFIX = "0a:56:4d:4e"
"""The first four bytes of every gateway MAC: ``0a`` (locally administered, unicast), then "VMN" in ASCII."""


def gateway_mac(vlan: int) -> str:
    """The MAC of the gateway of the network on VLAN ``vlan``: :data:`GATEWAY_MAC_PREFIX` and the VLAN id.

    Stable across restarts and hosts, different per network, and distinct
    from the load balancers' VIP MACs (``0e:`` + a digest).

    >>> gateway_mac(100)
    '0a:56:4d:4e:00:64'
    """
    return f"{GATEWAY_MAC_PREFIX}:{vlan >> 8:02x}:{vlan & 0xFF:02x}"


def special(ip: ipaddress.IPv4Address) -> str | None:
    """Why ``ip`` cannot be a host's address (unspecified, broadcast, multicast, loopback, reserved), or None."""
    if ip.is_unspecified:
        return "the unspecified address"
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return "the broadcast address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_reserved:
        return "a reserved address"
    return None


def host_interface(
    ctx: Ctx, value: object, what: str, example: str, max_prefix: int, too_long: str
) -> ipaddress.IPv4Interface | None:
    """An address with its subnet's prefix (``10.0.0.1/24``), the prefix at most ``max_prefix``, not special.

    ``what`` names the address in errors ("the gateway address"), ``example``
    shows one, ``too_long`` says why a longer prefix is refused.
    """
    if isinstance(value, str) and "/" not in value:
        ctx.error(f"expected {what} with its subnet's prefix, like {example!r}, got {value!r}")
        return None
    iface = ipv4_interface(ctx, value)
    if iface is None:
        return None
    if iface.network.prefixlen > max_prefix:
        ctx.error(f"{value}: {too_long} (prefix at most /{max_prefix})")
        return None
    why = special(iface.ip)
    if why is not None:
        ctx.error(f"{iface.ip} is {why}")
        return None
    return iface


def _gateway(ctx: Ctx, value: object) -> ipaddress.IPv4Interface | None:
    """``10.0.0.1/24``: a host address of its subnet, with a prefix of at most /31."""
    return host_interface(ctx, value, "the gateway address", "10.0.0.1/24", 31, "a gateway's prefix is its subnet's")


def _dns(ctx: Ctx, value: object) -> tuple[ipaddress.IPv4Address, ...] | None:
    items = sequence(ctx, value)
    if items is None:
        return None
    mark = ctx.mark()
    out: list[ipaddress.IPv4Address] = []
    for i, item in enumerate(items):
        ip = ipv4_address(ctx.at(i), item)
        if ip is None:
            continue
        why = special(ip)
        if why is not None:
            ctx.at(i).error(f"{ip} is {why}")
        elif ip in out:
            ctx.at(i).error(f"{ip} is listed twice")
        else:
            out.append(ip)
    return None if ctx.failed_since(mark) else tuple(out)


def network_addressing(
    ctx: Ctx, m: Mapping[str, object]
) -> tuple[ipaddress.IPv4Interface | None, bool, tuple[ipaddress.IPv4Address, ...]]:
    """``gateway``, ``dhcp`` and ``dns`` of one network's (already key-checked) mapping ``m``."""
    gateway = optional(ctx, m, "gateway", _gateway, None)
    dhcp = optional(ctx, m, "dhcp", boolean, False)
    dns: tuple[ipaddress.IPv4Address, ...] = optional(ctx, m, "dns", _dns, ())
    if dhcp and gateway is None and "gateway" not in m:
        ctx.at("dhcp").error("needs a gateway: the DHCP server answers from it and offers it as the router")
    if "dns" in m and not dhcp:
        ctx.at("dns").error("is offered by DHCP only: set dhcp: true")
    return gateway, dhcp, dns


def check_vm_addresses(ctx: Ctx, networks: Sequence[Network], vms: Sequence[Vm]) -> None:
    """Each VM's ``ip`` lies in its network's gateway subnet (same prefix when given) and is not the gateway;
    no VM's ``mac`` is in the gateways' range."""
    by_name = {n.name: n for n in networks}
    for vm in vms:
        if vm.mac is not None and vm.mac.startswith(GATEWAY_MAC_PREFIX + ":"):
            ctx.at("vms").at(vm.name).at("mac").error(
                f"{vm.mac}: {GATEWAY_MAC_PREFIX}:xx:xx is reserved for the networks' gateways"
            )

        net = by_name.get(vm.network)
        if net is None or net.gateway is None or vm.ip is None:
            continue
        where = ctx.at("vms").at(vm.name).at("ip")
        subnet = net.gateway.network
        if vm.ip.ip == net.gateway.ip:
            where.error(f"{vm.ip.ip} is the gateway of network {net.name!r}")
        elif vm.ip.ip not in subnet:
            where.error(f"{vm.ip.ip} is outside the subnet {subnet} of network {net.name!r} (gateway {net.gateway})")
        elif vm.ip.network.prefixlen != 32 and vm.ip.network != subnet:
            where.error(
                f"{vm.ip} does not match the subnet {subnet} of network {net.name!r} (gateway {net.gateway}): "
                f"write {vm.ip.ip}/{subnet.prefixlen}"
            )
        elif subnet.prefixlen <= 30 and vm.ip.ip in (subnet.network_address, subnet.broadcast_address):
            which = "network" if vm.ip.ip == subnet.network_address else "broadcast"
            where.error(f"{vm.ip.ip} is the {which} address of the subnet {subnet} of network {net.name!r}")


def check_vips(ctx: Ctx, networks: Sequence[Network], balancers: Sequence[LoadBalancer]) -> None:
    """A load balancer's VIP is not its network's gateway address."""
    by_name = {n.name: n for n in networks}
    for lb in balancers:
        net = by_name.get(lb.network)
        if net is not None and net.gateway is not None and lb.vip == net.gateway.ip:
            ctx.at("load_balancers").at(lb.name).at("vip").error(f"{lb.vip} is the gateway of network {net.name!r}")


def parse_routers(
    ctx: Ctx,
    raw: dict[str, object],
    known: Known,
    networks: Sequence[Network],
    vms: Sequence[Vm],
    uplinks: Sequence[Uplink] = (),
    uplink_names: frozenset[str] = frozenset(),
) -> list[Router]:
    """The valid routers, in file order; ``networks``, ``vms`` and ``uplinks`` are the valid ones,
    ``uplink_names`` every name declared under ``uplinks``."""
    by_name = {n.name: n for n in networks}
    owner: dict[str, str] = {}
    exits = _Exits({u.name: u for u in uplinks}, uplink_names, {})
    out = []
    for name, value in raw.items():
        router = _router(ctx.at(name), name, value, known, by_name, vms, owner, exits)
        if router is not None:
            out.append(router)
    return out


def _router(
    ctx: Ctx,
    name: str,
    value: object,
    known: Known,
    networks: Mapping[str, Network],
    vms: Sequence[Vm],
    owner: dict[str, str],
    exits: _Exits,
) -> Router | None:
    mark = ctx.mark()
    m = mapping(ctx, value, required=("networks",), optional=_ROUTER_KEYS)
    if m is None:
        return None
    names = required(ctx, m, "networks", references(known.networks, "network"))
    if names is None:
        return None
    if not names:
        ctx.at("networks").error("must name at least one network")
    subnets: dict[str, ipaddress.IPv4Network] = {}
    for i, net_name in enumerate(names):
        where = ctx.at("networks").at(i)
        net = networks.get(net_name)
        if net is None:
            continue  # invalid network: already reported
        if net.gateway is None:
            where.error(f"network {net_name!r} has no gateway: every network of a router needs one")
            continue
        if net_name in owner:
            where.error(f"network {net_name!r} is already on router {owner[net_name]!r} (routers do not chain)")
        else:
            owner[net_name] = name
        subnet = net.gateway.network
        clash = next((other for other, s in subnets.items() if s.overlaps(subnet)), None)
        if clash is not None:
            where.error(
                f"subnet {subnet} of network {net_name!r} overlaps {subnets[clash]} of network {clash!r} "
                "on this router (subnets may overlap only across routers)"
            )
        subnets[net_name] = subnet
    routes = _routes(ctx.at("routes"), m["routes"], names, subnets, vms) if "routes" in m else ()
    uplink = None
    if "uplink" in m:
        uplink = _uplink(ctx.at("uplink"), m["uplink"], exits.uplinks, exits.names, subnets, exits.owner, name)
        default = next((i for i, r in enumerate(routes or ()) if r.prefix.prefixlen == 0), None)
        if uplink is not None and default is not None:
            ctx.at("routes").error("a static route to 0.0.0.0/0 and an uplink both make the default route: keep one")
    if ctx.failed_since(mark) or routes is None:
        return None
    return Router(name, tuple(sorted(names)), routes, uplink)


def _uplink(
    ctx: Ctx,
    value: object,
    uplinks: Mapping[str, Uplink],
    known_uplinks: frozenset[str],
    subnets: Mapping[str, ipaddress.IPv4Network],
    owner: dict[str, str],
    router: str,
) -> str | None:
    """``routers.X.uplink``: a declared uplink that no other router uses, its subnet apart from the router's."""
    name = reference(known_uplinks, "uplink")(ctx, value)
    if name is None:
        return None
    if name in owner:
        ctx.error(f"uplink {name!r} already serves router {owner[name]!r} (one router per uplink)")
        return None
    owner[name] = router
    uplink = uplinks.get(name)
    if uplink is None:
        return name  # declared but invalid: already reported
    clash = next((net for net, s in subnets.items() if s.overlaps(uplink.ip.network)), None)
    if clash is not None:
        ctx.error(
            f"the uplink's subnet {uplink.ip.network} overlaps {subnets[clash]} of network {clash!r} on this router"
        )
        return None
    return name


@dataclass(frozen=True)
class _Exits:
    """The uplinks routers may name: valid ones by name, every declared name, and which router took which."""

    uplinks: Mapping[str, Uplink]
    names: frozenset[str]
    owner: dict[str, str]


def _routes(
    ctx: Ctx, value: object, names: tuple[str, ...], subnets: Mapping[str, ipaddress.IPv4Network], vms: Sequence[Vm]
) -> tuple[StaticRoute, ...] | None:
    items = sequence(ctx, value)
    if items is None:
        return None
    mark = ctx.mark()
    hops = {vm.ip.ip: vm for vm in vms if vm.ip is not None and vm.network in names}
    out: dict[ipaddress.IPv4Network, StaticRoute] = {}
    for i, item in enumerate(items):
        c = ctx.at(i)
        m = mapping(c, item, required=("prefix", "next_hop"))
        if m is None:
            continue
        prefix = required(c, m, "prefix", ipv4_network)
        hop = required(c, m, "next_hop", ipv4_address)
        if prefix is not None:
            inside = next((n for n, s in subnets.items() if prefix.subnet_of(s)), None)
            if inside is not None:
                c.at("prefix").error(
                    f"{prefix} is inside the subnet {subnets[inside]} of network {inside!r}, "
                    "which this router reaches directly"
                )
            elif prefix in out:
                c.at("prefix").error(f"{prefix} is routed twice on this router")
        if hop is not None and hop not in hops:
            listed = ", ".join(repr(n) for n in names)
            c.at("next_hop").error(f"{hop} is not the ip of a VM in this router's networks ({listed})")
        if prefix is not None and hop is not None and prefix not in out:
            out[prefix] = StaticRoute(prefix, hop)
    if ctx.failed_since(mark):
        return None
    return tuple(sorted(out.values(), key=lambda r: (r.prefix.network_address, r.prefix.prefixlen)))
