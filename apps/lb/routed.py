"""Load-balancer VIPs reached from routed networks: a balancer's VIP served in the other networks of its router.

A client in network X sends to the VIP of a balancer of network Y through
its gateway (the VIP is off its subnet). On the switches with edge ports of
X, table ``lb`` treats such packets as it treats the VIP's own network's
(:mod:`apps.lb.rules`), in X's own balancer zone
(:data:`~controller.flows.pipeline.CT_ZONE_LB` + X's VLAN): a conntrack pass
with NAT, new connections to a select group of the balancer *for X* whose
buckets commit the destination NAT to each backend there. A NATed packet
keeps its destination MAC (the gateway's) and goes on to the ACL commit
(tracked in X's zone, marked stateful) and then to table ``route``, which
routes it by the backend's address into Y like any routed packet (TTL - 1,
gateway MACs, Y's VLAN). The backend's reply is routed back into X and
un-NATed where it is delivered to the client (the ACL app's ``egress_commit``
un-NATs replies in X's balancer zone: X counts as balanced in
:func:`apps.acl.plan.plan_of`), so it comes from the VIP.

There is no VIP ARP responder in X (clients ARP for their gateway) and no
probe trap (health checks stay in Y). Only backends the router can reach
are used from X: those that are the ip of a VM of Y (the router has a host
route to each); an ``ip:`` backend that is no VM is served in Y only.
Within X, X's own balancers win: a routed service with the same VIP,
protocol and port as one of X's is left out, and so is a backend whose
address is a backend of X's own balancers (the NATed packet would be
taken for theirs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from apps.lb.rules import PRIO_NATED, bucket, group_id, vip_rules
from apps.lb.runtime import LbRuntime
from controller.config.model import Backend, LoadBalancer, Model, Network
from controller.flows.pipeline import APP_LB, CT_ZONE_LB, T_LB
from controller.flows.rules import CT_DNAT, CT_RPL, CT_TRK, OFPVID_PRESENT, GroupEntry, Rule, ct_state, make_match
from controller.packets import ETH_IPV4

GROUP_ID_BITS = 24


@dataclass(frozen=True)
class RoutedVip:
    """Balancer ``lb`` served to ``client``, a network its router joins to the balancer's own.

    ``backends`` are the ones used from ``client``; ``group`` is the select
    group of (``lb``, ``client``) on the client's switches.
    """

    lb: LoadBalancer
    client: Network
    backends: tuple[Backend, ...]
    group: int


def _routable(model: Model, lb: LoadBalancer) -> tuple[Backend, ...]:
    """Backends of ``lb`` that are the ip of a VM of its network (the router has a host route to each)."""
    ips = {vm.ip.ip for vm in model.vms if vm.network == lb.network and vm.ip is not None}
    return tuple(b for b in lb.backends if b.ip in ips)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=GROUP_ID_BITS // 8).digest(), "big")


def routed_vips(model: Model) -> tuple[RoutedVip, ...]:
    """Every (balancer, client network) pair of ``model``, by client network then balancer name.

    Group ids are ``APP_LB`` in the top byte and a digest of the balancer's
    and the client network's names below, probing upward past ids already
    taken (the balancers' own groups, :func:`apps.lb.rules.group_id`, first,
    then these in order): unique within the model, and stable while no
    digest collides.
    """
    taken = {group_id(lb) for lb in model.load_balancers}
    own_services = {(lb.network, lb.vip, lb.protocol, lb.port) for lb in model.load_balancers}
    own_backends = {(lb.network, b.ip) for lb in model.load_balancers for b in lb.backends}
    out = []
    pairs = sorted(
        ((client, lb) for lb in model.load_balancers for client in _clients(model, lb)),
        key=lambda p: (p[0].name, p[1].name),
    )
    for client, lb in pairs:
        if (client.name, lb.vip, lb.protocol, lb.port) in own_services:
            continue
        backends = tuple(b for b in _routable(model, lb) if (client.name, b.ip) not in own_backends)
        low = _digest(f"{lb.name}\0{client.name}")
        gid = (APP_LB << GROUP_ID_BITS) | low
        while gid in taken:
            low = (low + 1) % (1 << GROUP_ID_BITS)
            gid = (APP_LB << GROUP_ID_BITS) | low
        taken.add(gid)
        out.append(RoutedVip(lb, client, backends, gid))
    return tuple(out)


def _clients(model: Model, lb: LoadBalancer) -> list[Network]:
    router = model.router_of.get(lb.network)
    names = router.networks if router is not None else ()
    return [model.network_by_name[name] for name in names if name != lb.network]


def routed_rules(vip: RoutedVip, after_lb: int) -> list[Rule]:
    """Table ``lb`` rules serving ``vip`` on a switch with edge ports of its client network.

    As the balancer's own (:func:`apps.lb.rules.vip_rules`) in the client's
    VLAN and balancer zone; NATed packets keep their destination (gateway)
    MAC and go on to ``after_lb``, whence table ``route`` routes them.
    """
    vlan = vip.client.vlan
    rules = vip_rules(vip.lb, vlan, vip.group)
    for backend in vip.backends:
        match = make_match(
            vlan_vid=OFPVID_PRESENT | vlan,
            eth_type=ETH_IPV4,
            ipv4_dst=str(backend.ip),
            ct_state=ct_state(CT_TRK | CT_DNAT, CT_RPL),
        )
        rules.append(Rule(APP_LB, T_LB, PRIO_NATED, match, goto=after_lb))
    return rules


def routed_group(vip: RoutedVip, runtime: LbRuntime) -> GroupEntry:
    """The select group of (balancer, client network): healthy, located backends, NAT in the client's zone."""
    lb = vip.lb
    up = runtime.up_backends(lb.name)
    zone = CT_ZONE_LB + vip.client.vlan
    buckets = tuple(bucket(lb, b, zone) for b in vip.backends if b.ip in up and (lb.network, b.ip) in runtime.located)
    return GroupEntry(APP_LB, vip.group, "select", buckets)


def group_names(model: Model, routed: Iterable[RoutedVip]) -> Mapping[int, str]:
    """Group id -> balancer name, for every balancer group of ``model`` (own and routed)."""
    names = {group_id(lb): lb.name for lb in model.load_balancers}
    names.update({vip.group: vip.lb.name for vip in routed})
    return names
