"""The router's rules: table ``route``, on every switch where a network with a gateway has edge ports.

Per network A with a gateway, on a switch with edge ports of A:

- **Gateway ARP**: a request for A's gateway address is turned into the
  reply by the switch itself and sent back out of its port (no packet-in),
  from the gateway MAC (:func:`~controller.config.routing.gateway_mac`).
- **Gateway ping**: an ICMP echo request to the gateway address is turned
  into the echo reply (addresses and MACs swapped, type 0) and sent back the
  same way. Anything else to the gateway address drops.
- **ARP replies** to the gateway (answers to the controller's requests for
  VMs that declare an ip but no mac) go to the controller, metered.
- **Routed IPv4**, when A is on a router: a frame to A's gateway MAC whose
  destination lies in another network B of the router (or in a static
  route's prefix) has its TTL decremented (a TTL of 0 or 1 drops), gets B's
  gateway MAC as source, the destination VM's (or the next hop's) MAC as
  destination and B's VLAN, and goes past ``learn`` (its new source MAC is
  the gateway's, nothing to learn) to B's forwarding: it is delivered
  untagged to the VM like any frame of B. Longest prefix first: each rule's
  priority is :data:`PRIO_ROUTE` plus its prefix length, host routes (/32)
  above their subnet, whose remaining addresses (no VM, or its MAC not
  known yet) drop. Anything else to the gateway MAC drops.

Everything else goes on to the next table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from controller.config.model import Model, Network, Router
from controller.config.routing import gateway_mac
from controller.flows.pipeline import APP_ROUTER, METER_PACKET_IN, T_ROUTE
from controller.flows.rules import (
    OFPP_CONTROLLER,
    OFPP_IN_PORT,
    OFPVID_PRESENT,
    Action,
    DecTtl,
    Move,
    Output,
    PopVlan,
    Rule,
    SetField,
    make_match,
)
from controller.packets import ETH_ARP, ETH_IPV4, IP_PROTO_ICMP

PRIO_ARP = 1300
PRIO_PING = 1200
PRIO_TO_GATEWAY = 1100
PRIO_ROUTE = 100
"""Plus the prefix length: 100 (a default route) to 132 (a host)."""
PRIO_GATEWAY_MAC = 50
TRAP_LEN = 128
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0

Ip = ipaddress.IPv4Address
MacOf = Callable[[str, Ip], str | None]
"""(network name, ip) -> the MAC of the VM with that ip there, if known."""


@dataclass(frozen=True)
class Hop:
    """Where a prefix is routed: into network ``network`` (its VLAN), to MAC ``mac`` (None: drop)."""

    prefix: ipaddress.IPv4Network
    network: Network
    mac: str | None


def arp_answer(ip: str, mac: str, untag: bool) -> tuple[Action, ...]:
    """Actions turning an ARP request for ``ip`` into the reply from ``mac``, back out of its port
    (its network's tag popped first when ``untag``). RFC 826: sender and target swapped, opcode 2."""
    return (
        Move("eth_src", "eth_dst"),
        SetField("eth_src", mac),
        SetField("arp_op", 2),
        Move("arp_sha", "arp_tha"),
        SetField("arp_sha", mac),
        Move("arp_spa", "arp_tpa"),
        SetField("arp_spa", ip),
        *((PopVlan(),) if untag else ()),
        Output(OFPP_IN_PORT),
    )


def gateway_rules(net: Network) -> list[Rule]:
    """ARP and ping answered for ``net``'s gateway, ARP replies to it trapped, other packets to it dropped."""
    assert net.gateway is not None
    vid = OFPVID_PRESENT | net.vlan
    gw, mac = str(net.gateway.ip), gateway_mac(net.vlan)
    arp_reply = arp_answer(gw, mac, untag=True)
    echo_reply = (
        Move("eth_src", "eth_dst"),
        SetField("eth_src", mac),
        Move("ipv4_src", "ipv4_dst"),
        SetField("ipv4_src", gw),
        SetField("icmpv4_type", ICMP_ECHO_REPLY),
        PopVlan(),
        Output(OFPP_IN_PORT),
    )
    return [
        Rule(
            APP_ROUTER, T_ROUTE, PRIO_ARP, make_match(vlan_vid=vid, eth_type=ETH_ARP, arp_op=1, arp_tpa=gw), arp_reply
        ),
        Rule(
            APP_ROUTER,
            T_ROUTE,
            PRIO_ARP,
            make_match(vlan_vid=vid, eth_type=ETH_ARP, arp_op=2, arp_tpa=gw),
            (Output(OFPP_CONTROLLER, TRAP_LEN),),
            meter=METER_PACKET_IN,
        ),
        Rule(
            APP_ROUTER,
            T_ROUTE,
            PRIO_PING,
            make_match(
                vlan_vid=vid, eth_type=ETH_IPV4, ipv4_dst=gw, ip_proto=IP_PROTO_ICMP, icmpv4_type=ICMP_ECHO_REQUEST
            ),
            echo_reply,
        ),
        Rule(APP_ROUTER, T_ROUTE, PRIO_TO_GATEWAY, make_match(vlan_vid=vid, eth_type=ETH_IPV4, ipv4_dst=gw)),
        Rule(APP_ROUTER, T_ROUTE, PRIO_GATEWAY_MAC, make_match(vlan_vid=vid, eth_dst=mac)),
    ]


def router_hops(model: Model, router: Router, mac_of: MacOf) -> list[Hop]:
    """Every prefix ``router`` routes: its networks' subnets, their VMs' /32s, its static routes."""
    hops: list[Hop] = []
    for name in router.networks:
        net = model.network_by_name[name]
        assert net.gateway is not None
        hops.append(Hop(net.gateway.network, net, None))
        for vm in model.vms:
            if vm.network == name and vm.ip is not None:
                hops.append(Hop(ipaddress.IPv4Network(vm.ip.ip), net, mac_of(name, vm.ip.ip)))
    for route in router.routes:
        vm = next(
            v for v in model.vms if v.network in router.networks and v.ip is not None and v.ip.ip == route.next_hop
        )
        hops.append(Hop(route.prefix, model.network_by_name[vm.network], mac_of(vm.network, route.next_hop)))
    return hops


def cidr_match(prefix: ipaddress.IPv4Network) -> str | tuple[str, str] | None:
    """The ``ipv4_src``/``ipv4_dst`` match value of ``prefix``: an address, (address, mask), None for /0."""
    if prefix.prefixlen == 0:
        return None
    if prefix.prefixlen == 32:
        return str(prefix.network_address)
    return (str(prefix.network_address), str(prefix.netmask))


def route_rules(source: Network, hops: Iterable[Hop], after_learn: int) -> list[Rule]:
    """Frames sent to ``source``'s gateway MAC, routed by ``hops`` (longest prefix first)."""
    vid = OFPVID_PRESENT | source.vlan
    gw_mac = gateway_mac(source.vlan)
    rules = []
    for hop in hops:
        match = make_match(vlan_vid=vid, eth_dst=gw_mac, eth_type=ETH_IPV4, ipv4_dst=cidr_match(hop.prefix))
        priority = PRIO_ROUTE + hop.prefix.prefixlen
        if hop.mac is None:
            rules.append(Rule(APP_ROUTER, T_ROUTE, priority, match))
            continue
        actions = (
            DecTtl(),
            SetField("eth_src", gateway_mac(hop.network.vlan)),
            SetField("eth_dst", hop.mac),
            SetField("vlan_vid", OFPVID_PRESENT | hop.network.vlan),
        )
        rules.append(Rule(APP_ROUTER, T_ROUTE, priority, match, actions, goto=after_learn))
    return rules


@dataclass(frozen=True)
class Tables:
    """Where the route table sends what it does not handle (``following``) and routed frames (``after_learn``)."""

    following: int
    after_learn: int


def switch_rules(model: Model, networks: Iterable[Network], hops_of: Mapping[str, list[Hop]], to: Tables) -> list[Rule]:
    """The route table of a switch with edge ports of ``networks``; ``hops_of`` maps a router to its hops."""
    rules = [Rule(APP_ROUTER, T_ROUTE, 0, goto=to.following)]
    for net in networks:
        if net.gateway is None:
            continue
        rules += gateway_rules(net)
        router = model.router_of.get(net.name)
        if router is not None:
            rules += route_rules(net, hops_of[router.name], to.after_learn)
    return rules
