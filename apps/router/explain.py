"""What ``vmn trace`` needs to know about routing: where a routed packet goes, and how to describe its hop.

:func:`routed_target` says, for a VM sending to an IPv4 address, whether the
packet is routed (its network is on a router, the address is not in its
own subnet) and to which VM, so the trace addresses it to the gateway's
MAC. :func:`describe_hops` reads the route rules a traced packet met and
says which router routed it, between which gateways, at which TTL, and by
which route (prefix and priority): the rule that decided.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from controller.config.model import Model, Network, Vm
from controller.config.routing import gateway_mac
from controller.flows.pipeline import APP_ROUTER, T_DNAT, T_INGRESS, T_ROUTE, T_SNAT, T_UPLINK_IN
from controller.flows.rules import Ct, DecTtl, Rule, SetField

Ip = ipaddress.IPv4Address


@dataclass(frozen=True)
class RoutedTarget:
    """A routed destination: the VM that has the address (None: a static route's prefix), and the MACs to use."""

    vm: Vm | None
    first_mac: str
    """The sender's gateway MAC: where the sender addresses the packet."""
    reply_mac: str | None
    """The destination network's gateway MAC: where the reply goes (None when ``vm`` is None)."""
    gateway: bool = False
    """The destination is the sender's own gateway (it answers ARP and ping, back to the sender)."""


def routed_target(model: Model, src: Vm, dst_ip: Ip) -> RoutedTarget | None:
    """Where ``src``'s packet to ``dst_ip`` goes when its router routes it; None if it is not routed.

    Not routed: ``src``'s network has no gateway, or ``dst_ip`` is in its own
    subnet (but its gateway's address is answered by the gateway: ``gateway``). Routed (to the gateway) otherwise, even where no route exists:
    the switch then drops it, and the trace shows that.
    """
    net = model.network_by_name[src.network]
    if net.gateway is not None and dst_ip == net.gateway.ip:
        return RoutedTarget(None, gateway_mac(net.vlan), None, gateway=True)
    if net.gateway is None or dst_ip in net.gateway.network:
        return None
    first = gateway_mac(net.vlan)
    router = model.router_of.get(net.name)
    if router is None:
        return RoutedTarget(None, first, None)
    for name in router.networks:
        other = model.network_by_name[name]
        vm = next((v for v in model.vms if v.network == name and v.ip is not None and v.ip.ip == dst_ip), None)
        if vm is not None:
            return RoutedTarget(vm, first, gateway_mac(other.vlan))
    return RoutedTarget(None, first, None)


def _network_of(model: Model, rule: Rule) -> Network | None:
    vid = rule.match_dict.get("vlan_vid")
    return model.network_by_vlan.get(vid & 0x0FFF) if isinstance(vid, int) else None


def _target_network(model: Model, rule: Rule) -> Network | None:
    for action in rule.actions:
        if isinstance(action, SetField) and action.field == "vlan_vid" and isinstance(action.value, int):
            return model.network_by_vlan.get(action.value & 0x0FFF)
    return None


def _prefix(rule: Rule) -> str:
    dst = rule.match_dict.get("ipv4_dst")
    if dst is None:
        return "0.0.0.0/0"
    if isinstance(dst, tuple):
        return str(ipaddress.IPv4Network(f"{dst[0]}/{dst[1]}"))
    return f"{dst}/32"


def describe_hops(model: Model, matched: Iterable[tuple[int, Rule]], ttl: int) -> tuple[str, ...]:
    """One line per routing decision among ``matched`` (dpid, rule), in order.

    ``ttl`` is the TTL the packet was sent with (a packet is routed once, at
    its first switch, so that is the TTL the router sees).
    """
    out = []
    for dpid, rule in matched:
        if rule.app != APP_ROUTER or rule.table != T_ROUTE:
            continue
        source = _network_of(model, rule)
        if source is None or source.gateway is None:
            continue
        router = model.router_of.get(source.name)
        name = router.name if router is not None else "none"
        switch = model.switch_by_dpid.get(dpid)
        where = switch.name if switch is not None else f"{dpid:#x}"
        if any(isinstance(a, DecTtl) for a in rule.actions):
            target = _target_network(model, rule)
            into = f"{target.name} (gateway {target.gateway.ip})" if target and target.gateway else "?"
            ttl_text = f", ttl {ttl} -> {ttl - 1}" if ttl > 1 else f", ttl {ttl}: dropped"
            out.append(
                f"routed by {name} at {where}: {source.name} (gateway {source.gateway.ip}) -> {into}"
                f"{ttl_text}; route {_prefix(rule)} (priority {rule.priority})"
            )
        elif rule.priority > 0 and not rule.actions and rule.goto is None:
            out.append(
                f"dropped by router {name} at {where}: {source.name} (gateway {source.gateway.ip}) "
                f"has no route for it ({_prefix(rule) if 'ipv4_dst' in rule.match_dict else 'not routable'}, "
                f"priority {rule.priority})"
            )
        elif rule.actions and rule.goto is None and rule.priority > 0:
            out.append(f"answered by the gateway {source.gateway.ip} of {source.name} at {where}")
    return tuple(out)


_DROPS = {T_INGRESS: "tagged", T_UPLINK_IN: "not for the uplink's addresses", T_DNAT: "no connection or floating IP"}


def describe_uplink(model: Model, matched: Iterable[tuple[int, Rule]]) -> tuple[str, ...]:
    """One line per uplink decision among ``matched``: the default route, NAT, a drop on the uplink."""
    out = []
    for dpid, rule in matched:
        if rule.app != APP_ROUTER:
            continue
        switch = model.switch_by_dpid.get(dpid)
        where = switch.name if switch is not None else f"{dpid:#x}"
        nat = next((a.nat for a in rule.actions if isinstance(a, Ct) and a.nat is not None and a.commit), None)
        source = _network_of(model, rule)
        if rule.table == T_ROUTE and rule.goto is not None and "ipv4_dst" not in rule.match_dict and source:
            uplink = model.uplink_of.get(source.name)
            name = uplink.name if uplink is not None else "?"
            out.append(f"default route of {source.name} at {where}: toward uplink {name}")
        elif rule.table == T_SNAT and nat is not None and nat.src is not None:
            out.append(f"source NAT at {where}: leaves as {nat.src}")
        elif rule.table == T_DNAT and nat is not None and nat.dst is not None:
            out.append(f"floating IP {rule.match_dict.get('ipv4_dst')} at {where}: destination NAT to {nat.dst}")
        elif rule.table == T_SNAT and not rule.actions and rule.goto is None:
            out.append(f"dropped at {where}: the upstream gateway's MAC is not known yet")
        elif rule.table in _DROPS and not rule.actions and rule.goto is None and "in_port" in rule.match_dict:
            if rule.table == T_UPLINK_IN and "ipv4_src" in rule.match_dict:
                why = "spoofed inside source"
            elif rule.table == T_UPLINK_IN and "eth_type" in rule.match_dict:
                why = "ARP for an address not answered on the uplink"
            else:
                why = _DROPS[rule.table]
            out.append(f"dropped on the uplink at {where}: {why}")
    return tuple(out)
