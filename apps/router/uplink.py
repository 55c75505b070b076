"""A router's uplink: source NAT out, floating IPs in, on the uplink's switch (centralised, as an OVN gateway router).

The way out. A VM's packet to an address no route of its router covers
meets the router's default route at its first switch (table ``route``,
:func:`default_route_rule`): unchanged, it is forwarded in its own network
to the gateway MAC, which the fabric carries to the uplink's switch like a
host there (:func:`toward_uplink`). There, table ``uplink_out`` decrements
the TTL and passes it through conntrack NAT in the uplink's zone; table
``snat`` commits a new connection with source NAT to the VM's floating IP,
else to the uplink's address, and sends it out of the uplink from the
uplink's MAC to the upstream gateway's MAC (found by ARP,
:mod:`apps.router.upstream`). A connection allowed by a stateful rule on its
way (its frames carry :data:`~controller.flows.pipeline.PCP_STATEFUL`) is
committed with ``ct_mark`` 1, so its replies are marked again when they come
back in.

The way in. Frames from the uplink port go to table ``uplink_in``: ARP
requests for the uplink's address and its floating IPs are answered by the
switch (from the uplink's MAC); ARP replies from the upstream gateway to the
uplink's address go to the controller (metered); any other ARP, IPv4 from an
inside source (spoofed), and anything not addressed to the uplink's address
or a floating IP drop. The rest passes conntrack NAT in the uplink's zone
(replies are un-SNATed) and table ``dnat`` decides: a packet of a known
connection (reply, or related ICMP error) whose inside address is a VM of
the router goes to that VM, routed as the router would (its network's VLAN,
gateway MAC as source, TTL-1), marked when the connection is; a new
connection to a floating IP is committed with destination NAT to its VM and
goes the same way, where the VM's ``acl_out`` lists judge it; anything else
(a new connection to the uplink's address, invalid packets) drops.

Nothing of the inside answers on the uplink: only the uplink's address and
the floating IPs exist there. Only IPv4, untagged on the uplink.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from apps.router.rules import arp_answer, cidr_match
from controller.config.model import Model, Network, Router, Uplink, Vm
from controller.config.routing import gateway_mac
from controller.config.uplinks import uplink_mac, uplink_number
from controller.flows.pipeline import (
    APP_ROUTER,
    CT_MARK_SKIP_ACL,
    CT_ZONE_UPLINK,
    METER_PACKET_IN,
    PCP_STATEFUL,
    T_DNAT,
    T_FORWARD,
    T_INGRESS,
    T_ROUTE,
    T_SNAT,
    T_UPLINK_IN,
    T_UPLINK_OUT,
)
from controller.flows.rules import (
    CT_INV,
    CT_NEW,
    CT_TRK,
    OFPP_CONTROLLER,
    OFPVID_NONE,
    OFPVID_PRESENT,
    Action,
    Ct,
    DecTtl,
    Nat,
    Output,
    PopVlan,
    PushVlan,
    Rule,
    SetField,
    ct_state,
    make_match,
)
from controller.packets import ETH_ARP, ETH_IPV4

PRIO_UPLINK_PORT = 1004
"""Ingress: an untagged frame from an uplink port goes to ``uplink_in`` (a tagged one drops, at 1003)."""
PRIO_ARP_ANSWER = 300
PRIO_KNOWN_GATEWAY = 301
"""A found upstream MAC's marker (an ARP reply from it, trapped like the others): read back after a restart."""
PRIO_SPOOFED = 200
PRIO_NAT = 100
PRIO_ARP_OTHER = 10
PRIO_DROP = 0
PRIO_TO_VM_MARKED = 210
PRIO_TO_VM = 200
PRIO_FLOATING_NEW = 100
PRIO_SNAT_FLOATING = 300
PRIO_SNAT = 200
PRIO_ESTABLISHED = 100
PRIO_FORWARD = 10
PRIO_DEFAULT_ROUTE = 100
"""The route table's band for prefix length 0 (see :data:`apps.router.rules.PRIO_ROUTE`)."""
TRAP_LEN = 128

Ip = ipaddress.IPv4Address
MacOf = Callable[[str, Ip], str | None]
"""(network name, ip) -> the MAC of the VM with that ip there, if known."""


def zone(uplink: Uplink) -> int:
    """The conntrack zone of ``uplink``'s NAT: :data:`CT_ZONE_UPLINK` plus its number."""
    return CT_ZONE_UPLINK + uplink_number(uplink.name)


@dataclass(frozen=True)
class Exit:
    """One router's uplink as the rules need it: where it is, its floating IPs, its VMs' MACs.

    ``port`` is the uplink's OpenFlow port on its switch; ``upstream_mac`` the
    upstream gateway's MAC (None: not found yet, nothing leaves);
    ``floating`` maps a floating IP to its VM; ``inside`` lists the VMs of
    the router's networks that declare an ip, with their MAC (None: not
    known yet) and network; ``prefixes`` every inside prefix (the networks'
    subnets and the static routes'), which never come from outside.
    """

    router: Router
    uplink: Uplink
    port: int
    upstream_mac: str | None
    floating: Mapping[Ip, Vm]
    inside: tuple[tuple[Vm, Network, str | None], ...]
    prefixes: tuple[ipaddress.IPv4Network, ...]


def exit_of(model: Model, router: Router, port: int, upstream_mac: str | None, mac_of: MacOf) -> Exit | None:
    """The :class:`Exit` of ``router`` (None without an uplink); ``mac_of(network, ip)`` finds VMs' MACs."""
    uplink = model.uplink_by_name.get(router.uplink) if router.uplink is not None else None
    if uplink is None:
        return None
    nets = [model.network_by_name[n] for n in router.networks]
    inside = tuple(
        (vm, model.network_by_name[vm.network], mac_of(vm.network, vm.ip.ip))
        for vm in model.vms
        if vm.network in router.networks and vm.ip is not None
    )
    floating = {f.ip: model.vm_by_name[f.vm] for f in model.floating_ips if f.vm in model.vm_by_name}
    floating = {ip: vm for ip, vm in floating.items() if vm.network in router.networks}
    prefixes = tuple(n.gateway.network for n in nets if n.gateway is not None) + tuple(r.prefix for r in router.routes)
    return Exit(router, uplink, port, upstream_mac, floating, inside, prefixes)


def default_route_rule(source: Network, after_learn: int) -> Rule:
    """Route table: IPv4 to ``source``'s gateway MAC that no longer prefix covers goes on, unchanged, toward
    the uplink (forwarded in ``source`` to its gateway MAC, which the uplink's switch takes)."""
    match = make_match(vlan_vid=OFPVID_PRESENT | source.vlan, eth_dst=gateway_mac(source.vlan), eth_type=ETH_IPV4)
    return Rule(APP_ROUTER, T_ROUTE, PRIO_DEFAULT_ROUTE, match, goto=after_learn)


def toward_uplink(source: Network) -> Rule:
    """Forward table on the uplink's switch: ``source``'s frames to its gateway MAC go to ``uplink_out``."""
    match = make_match(vlan_vid=OFPVID_PRESENT | source.vlan, eth_dst=gateway_mac(source.vlan))
    return Rule(APP_ROUTER, T_FORWARD, PRIO_FORWARD, match, goto=T_UPLINK_OUT)


def inbound_rules(ex: Exit, after_learn: int) -> list[Rule]:
    """Ingress, ``uplink_in`` and ``dnat`` rules of one uplink (all on its switch)."""
    port, up, z = ex.port, ex.uplink, zone(ex.uplink)
    mac = uplink_mac(up.name)
    rules = [
        Rule(
            APP_ROUTER,
            T_INGRESS,
            PRIO_UPLINK_PORT,
            make_match(in_port=port, vlan_vid=OFPVID_NONE),
            goto=T_UPLINK_IN,
        ),
        Rule(APP_ROUTER, T_INGRESS, PRIO_UPLINK_PORT - 1, make_match(in_port=port)),
        Rule(APP_ROUTER, T_UPLINK_IN, PRIO_DROP, make_match(in_port=port)),
        Rule(APP_ROUTER, T_UPLINK_IN, PRIO_ARP_OTHER, make_match(in_port=port, eth_type=ETH_ARP)),
        Rule(
            APP_ROUTER,
            T_UPLINK_IN,
            PRIO_ARP_ANSWER,
            make_match(in_port=port, eth_type=ETH_ARP, arp_op=2, arp_tpa=str(up.ip.ip), arp_spa=str(up.gateway)),
            (Output(OFPP_CONTROLLER, TRAP_LEN),),
            meter=METER_PACKET_IN,
        ),
        Rule(APP_ROUTER, T_DNAT, PRIO_DROP, make_match(in_port=port)),
    ]
    for ip in [up.ip.ip, *sorted(ex.floating)]:
        rules.append(
            Rule(
                APP_ROUTER,
                T_UPLINK_IN,
                PRIO_ARP_ANSWER,
                make_match(in_port=port, eth_type=ETH_ARP, arp_op=1, arp_tpa=str(ip)),
                arp_answer(str(ip), mac, untag=False),
            )
        )
        rules.append(
            Rule(
                APP_ROUTER,
                T_UPLINK_IN,
                PRIO_NAT,
                make_match(in_port=port, eth_type=ETH_IPV4, ipv4_dst=str(ip)),
                (Ct(zone=z, recirc_table=T_DNAT, nat=Nat()),),
            )
        )
    spoofed = sorted(set(ex.prefixes), key=lambda p: (p.network_address, p.prefixlen))
    spoofed += [ipaddress.IPv4Network(ip) for ip in [up.ip.ip, *sorted(ex.floating)]]
    rules += [
        Rule(APP_ROUTER, T_UPLINK_IN, PRIO_SPOOFED, make_match(in_port=port, eth_type=ETH_IPV4, ipv4_src=cidr_match(p)))
        for p in spoofed
    ]
    for vm, net, vm_mac in ex.inside:
        if vm_mac is None or vm.ip is None:
            continue
        to_vm = _route_in(net, vm_mac)
        known = ct_state(CT_TRK, CT_INV)
        vm_ip = str(vm.ip.ip)
        rules.append(
            Rule(
                APP_ROUTER,
                T_DNAT,
                PRIO_TO_VM_MARKED,
                make_match(in_port=port, eth_type=ETH_IPV4, ct_state=known, ct_mark=CT_MARK_SKIP_ACL, ipv4_dst=vm_ip),
                to_vm[:2] + (SetField("vlan_pcp", PCP_STATEFUL),) + to_vm[2:],
                goto=after_learn,
            )
        )
        rules.append(
            Rule(
                APP_ROUTER,
                T_DNAT,
                PRIO_TO_VM,
                make_match(in_port=port, eth_type=ETH_IPV4, ct_state=known, ipv4_dst=vm_ip),
                to_vm,
                goto=after_learn,
            )
        )
    for fip, vm in sorted(ex.floating.items()):
        assert vm.ip is not None
        rules.append(
            Rule(
                APP_ROUTER,
                T_DNAT,
                PRIO_FLOATING_NEW,
                make_match(in_port=port, eth_type=ETH_IPV4, ct_state=ct_state(CT_TRK | CT_NEW), ipv4_dst=str(fip)),
                (Ct(zone=z, commit=True, recirc_table=T_DNAT, nat=Nat(dst=str(vm.ip.ip))),),
            )
        )
    return rules


def _route_in(net: Network, vm_mac: str) -> tuple[Action, ...]:
    """Route an untagged frame from outside into ``net`` to ``vm_mac``: tag, TTL-1, gateway MAC as source."""
    return (
        PushVlan(),
        SetField("vlan_vid", OFPVID_PRESENT | net.vlan),
        DecTtl(),
        SetField("eth_src", gateway_mac(net.vlan)),
        SetField("eth_dst", vm_mac),
    )


def outbound_rules(ex: Exit, networks: Iterable[Network]) -> list[Rule]:
    """``uplink_out`` and ``snat`` rules of one uplink for the router's ``networks`` (on the uplink's switch)."""
    up, z = ex.uplink, zone(ex.uplink)
    rules: list[Rule] = []
    for net in networks:
        vid = OFPVID_PRESENT | net.vlan
        to_gw = make_match(vlan_vid=vid, eth_dst=gateway_mac(net.vlan), eth_type=ETH_IPV4)
        rules.append(toward_uplink(net))
        rules.append(
            Rule(APP_ROUTER, T_UPLINK_OUT, PRIO_NAT, to_gw, (DecTtl(), Ct(zone=z, recirc_table=T_SNAT, nat=Nat())))
        )
        rules.append(Rule(APP_ROUTER, T_SNAT, PRIO_DROP, make_match(vlan_vid=vid, eth_dst=gateway_mac(net.vlan))))
        if ex.upstream_mac is None:
            continue
        out = (
            SetField("eth_src", uplink_mac(up.name)),
            SetField("eth_dst", ex.upstream_mac),
            PopVlan(),
            Output(ex.port),
        )
        new = ct_state(CT_TRK | CT_NEW)
        sources: list[tuple[int, str | None, str]] = [
            (PRIO_SNAT_FLOATING, str(vm.ip.ip), str(fip))
            for fip, vm in sorted(ex.floating.items())
            if vm.network == net.name and vm.ip is not None
        ]
        sources.append((PRIO_SNAT, None, str(up.ip.ip)))
        for priority, inside, outside in sources:
            for marked in (True, False):
                match = make_match(
                    vlan_vid=vid,
                    eth_dst=gateway_mac(net.vlan),
                    eth_type=ETH_IPV4,
                    ct_state=new,
                    ipv4_src=inside,
                    vlan_pcp=PCP_STATEFUL if marked else None,
                )
                commit = Ct(zone=z, commit=True, nat=Nat(src=outside), mark=CT_MARK_SKIP_ACL if marked else None)
                rules.append(Rule(APP_ROUTER, T_SNAT, priority + (1 if marked else 0), match, (commit,) + out))
        rules.append(
            Rule(
                APP_ROUTER,
                T_SNAT,
                PRIO_ESTABLISHED,
                make_match(
                    vlan_vid=vid,
                    eth_dst=gateway_mac(net.vlan),
                    eth_type=ETH_IPV4,
                    ct_state=ct_state(CT_TRK, CT_NEW | CT_INV),
                ),
                out,
            )
        )
    return rules


def marker_rule(ex: Exit) -> Rule | None:
    """The upstream MAC written into a trap rule (an ARP reply from it), for a restarted controller to adopt."""
    if ex.upstream_mac is None:
        return None
    up = ex.uplink
    match = make_match(
        in_port=ex.port,
        eth_type=ETH_ARP,
        arp_op=2,
        arp_tpa=str(up.ip.ip),
        arp_spa=str(up.gateway),
        arp_sha=ex.upstream_mac,
    )
    return Rule(
        APP_ROUTER, T_UPLINK_IN, PRIO_KNOWN_GATEWAY, match, (Output(OFPP_CONTROLLER, TRAP_LEN),), meter=METER_PACKET_IN
    )


Counted = tuple[str, tuple[str, ...]]
"""(counter: ``dropped``, ``floating`` or ``nat``; its label values)."""


def counted(ex: Exit, rules: Iterable[Rule]) -> dict[int, Counted]:
    """Cookie -> what a rule of this uplink counts: drops by reason, floating-IP packets, NATed connections.

    Each new connection meets one commit rule once (its first packet), so the
    commit rules' packet counts are connection counts.
    """
    name = ex.uplink.name
    drops = {
        (T_INGRESS, PRIO_UPLINK_PORT - 1): "tagged",
        (T_UPLINK_IN, PRIO_ARP_OTHER): "arp",
        (T_UPLINK_IN, PRIO_SPOOFED): "spoofed",
        (T_UPLINK_IN, PRIO_DROP): "unknown_destination",
        (T_DNAT, PRIO_DROP): "unsolicited",
    }
    floating = {str(ip) for ip in ex.floating}
    out: dict[int, Counted] = {}
    for rule in rules:
        key = (rule.table, rule.priority)
        match = dict(rule.match)
        if key in drops:
            out[rule.cookie] = ("dropped", (name, drops[key]))
        elif key == (T_UPLINK_IN, PRIO_NAT) and match.get("ipv4_dst") in floating:
            out[rule.cookie] = ("floating", (str(match["ipv4_dst"]),))
        elif key == (T_DNAT, PRIO_FLOATING_NEW):
            out[rule.cookie] = ("nat", (name, "dnat"))
        elif rule.table == T_SNAT and rule.priority >= PRIO_SNAT:
            out[rule.cookie] = ("nat", (name, "snat"))
    return out
