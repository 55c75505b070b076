"""The load balancer: table ``lb``, its probe traps in ``acl_port``, one select group per VIP:port.

Per switch with edge ports in a balancer's network:

- **ARP**: a request for the VIP is answered by the switch itself (the frame
  is turned into the reply and sent back out of its port), no packet-in.
- **Packets to** ``vip:port`` first go through conntrack with NAT in the
  balancer's own zone (:data:`~controller.flows.pipeline.CT_ZONE_LB` +
  VLAN, apart from the network's zone, where the ACL app tracks the NATed
  connection at both ends). **New connections** (``+new`` there) go to a
  select group whose buckets are the healthy backends, weighted; each
  bucket commits the connection with destination NAT to its backend and
  recirculates to ``lb``. A connection is then pinned by conntrack: later
  packets are NATed by that lookup and never meet the group again, so
  adding or removing backends moves no established connection. The ACL app
  commits balanced connections marked (replies skip the ACLs) and un-NATs
  their replies where they are delivered to the client, in the same zone
  on the client's host: they reach the client from the VIP, wherever the
  backend is.
- **NATed packets** get the backend's MAC as destination and go on to the
  ACL app's commit table (learning when the ACL app is off).
- Anything else sent to the VIP drops (it answers nothing else).
- **Probe replies** to the VIP (TCP to the probe port block, ICMP echo
  replies, ARP replies) are trapped to the controller, metered, ahead of the
  conntrack pass.

Health and backend locations come from :class:`apps.lb.runtime.LbRuntime`.
The VIP served in the other networks of the balancer's router:
:mod:`apps.lb.routed`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from apps.lb.probe import vip_mac
from apps.lb.runtime import PROBE_PORT_BASE, PROBE_PORT_MASK, LbRuntime, Location
from controller.config.model import Backend, LoadBalancer
from controller.flows.pipeline import (
    APP_LB,
    CT_ZONE_HAIRPIN,
    CT_ZONE_LB,
    METER_PACKET_IN,
    T_ACL_COMMIT,
    T_ACL_PORT,
    T_LB,
)
from controller.flows.rules import (
    CT_DNAT,
    CT_EST,
    CT_NEW,
    CT_RPL,
    CT_TRK,
    OFPP_CONTROLLER,
    OFPP_IN_PORT,
    OFPVID_PRESENT,
    Action,
    Ct,
    Group,
    GroupEntry,
    Move,
    Nat,
    Output,
    PopVlan,
    Rule,
    SetField,
    ct_state,
    make_match,
)
from controller.packets import ETH_ARP, ETH_IPV4, IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP

PRIO_HAIRPIN_UNSNAT = 65150
PRIO_TRAP = 65100
PRIO_HAIRPIN = 65050
PRIO_HAIRPIN_OUT = 120
PRIO_HAIRPIN_SNAT = 110
PRIO_ARP = 300
PRIO_VIP_LOOKUP = 250
PRIO_VIP_NEW = 200
PRIO_VIP_OTHER = 150
PRIO_NATED = 100
TRAP_LEN = 128
OFPP_ANY = 0xFFFFFFFF
PROTOS = {"tcp": IP_PROTO_TCP, "udp": IP_PROTO_UDP}


def group_id(lb: LoadBalancer) -> int:
    """A stable group id for ``lb``: the app id in the top byte, a digest of the name below."""
    digest = int.from_bytes(hashlib.blake2b(lb.name.encode(), digest_size=3).digest(), "big")
    return (APP_LB << 24) | digest


def arp_responder(vlan: int, vip: str) -> Rule:
    """Turn an ARP request for ``vip`` into the reply and send it back where it came from."""
    mac = vip_mac(vip)
    return Rule(
        APP_LB,
        T_LB,
        PRIO_ARP,
        make_match(vlan_vid=OFPVID_PRESENT | vlan, eth_type=ETH_ARP, arp_op=1, arp_tpa=vip),
        (
            Move("eth_src", "eth_dst"),
            SetField("eth_src", mac),
            SetField("arp_op", 2),
            Move("arp_sha", "arp_tha"),
            SetField("arp_sha", mac),
            Move("arp_spa", "arp_tpa"),
            SetField("arp_spa", vip),
            PopVlan(),
            Output(OFPP_IN_PORT),
        ),
    )


def probe_traps(vlan: int, vip: str) -> list[Rule]:
    """Replies to the controller's health probes, to the controller (metered)."""
    vid = OFPVID_PRESENT | vlan
    to_ctl = (Output(OFPP_CONTROLLER, TRAP_LEN),)
    matches = [
        make_match(
            vlan_vid=vid,
            eth_type=ETH_IPV4,
            ip_proto=IP_PROTO_TCP,
            ipv4_dst=vip,
            tcp_dst=(PROBE_PORT_BASE, PROBE_PORT_MASK),
        ),
        make_match(vlan_vid=vid, eth_type=ETH_IPV4, ip_proto=IP_PROTO_ICMP, ipv4_dst=vip, icmpv4_type=0),
        make_match(vlan_vid=vid, eth_type=ETH_ARP, arp_op=2, arp_tpa=vip),
    ]
    return [Rule(APP_LB, T_ACL_PORT, PRIO_TRAP, m, to_ctl, meter=METER_PACKET_IN) for m in matches]


def hairpin_rules(lb: LoadBalancer, vlan: int, backend: str, where: Location) -> list[Rule]:
    """Rules letting ``backend`` (at ``where``) connect to its own VIP, on its switch.

    The select group may send a backend's connection to the VIP back to the
    backend itself. Delivered as is it would come from the backend's own
    address (a host drops that) and out of its ingress port (a switch does
    not send a frame back where it came from). As OVN does
    (``ct_snat_to_vip``), the connection is also source-NATed to the VIP in
    a conntrack zone of its own and sent back out of ``IN_PORT``; the
    backend's replies (to the VIP, from the balanced port) are un-SNATed in
    that zone, un-DNATed in the balancer's, and returned the same way.
    """
    vip = str(lb.vip)
    zone = CT_ZONE_HAIRPIN + vlan
    lb_zone = CT_ZONE_LB + vlan
    here = dict(in_port=where.port, vlan_vid=OFPVID_PRESENT | vlan, eth_type=ETH_IPV4)
    back = (SetField("eth_src", vip_mac(vip)), SetField("eth_dst", where.mac), PopVlan(), Output(OFPP_IN_PORT))
    reply = make_match(
        **here,
        ip_proto=PROTOS[lb.protocol],
        ipv4_src=backend,
        ipv4_dst=vip,
        ct_state=ct_state(0, CT_TRK),
        **{f"{lb.protocol}_src": lb.port},
    )
    return [
        Rule(APP_LB, T_ACL_PORT, PRIO_HAIRPIN_UNSNAT, reply, (Ct(zone=zone, recirc_table=T_ACL_PORT, nat=Nat()),)),
        Rule(
            APP_LB,
            T_ACL_PORT,
            PRIO_HAIRPIN,
            make_match(**here, ct_zone=zone, ct_state=ct_state(CT_TRK)),
            (Ct(zone=lb_zone, recirc_table=T_ACL_PORT, nat=Nat()),),
        ),
        Rule(
            APP_LB,
            T_ACL_PORT,
            PRIO_HAIRPIN,
            make_match(
                **here, ipv4_src=vip, ipv4_dst=backend, ct_zone=lb_zone, ct_state=ct_state(CT_TRK | CT_EST | CT_RPL)
            ),
            back,
        ),
        Rule(
            APP_LB,
            T_LB,
            PRIO_HAIRPIN_SNAT,
            make_match(**here, ipv4_src=backend, ipv4_dst=backend, ct_state=ct_state(CT_TRK | CT_DNAT, CT_RPL)),
            (Ct(zone=zone, commit=True, recirc_table=T_LB, nat=Nat(src=vip)),),
        ),
        Rule(
            APP_LB,
            T_LB,
            PRIO_HAIRPIN_OUT,
            make_match(**here, ipv4_src=vip, ipv4_dst=backend, ct_zone=zone, ct_state=ct_state(CT_TRK)),
            back,
        ),
    ]


def vip_rules(lb: LoadBalancer, vlan: int, group: int) -> list[Rule]:
    """Table ``lb`` in network ``vlan``: ``vip:port`` through conntrack NAT, new connections to ``group``.

    Packets to ``vip:port`` not yet looked up in the balancer zone
    (:data:`CT_ZONE_LB` + ``vlan``; the ACL pass left them in the network's
    zone) go through it with NAT; ``+new`` there go to the select group;
    anything else to the VIP drops.
    """
    lb_zone = CT_ZONE_LB + vlan
    to_vip: dict[str, int | str] = dict(
        vlan_vid=OFPVID_PRESENT | vlan,
        eth_type=ETH_IPV4,
        ip_proto=PROTOS[lb.protocol],
        ipv4_dst=str(lb.vip),
        **{f"{lb.protocol}_dst": lb.port},
    )
    new = make_match(**to_vip, ct_zone=lb_zone, ct_state=ct_state(CT_TRK | CT_NEW))
    other = make_match(vlan_vid=OFPVID_PRESENT | vlan, eth_type=ETH_IPV4, ipv4_dst=str(lb.vip))
    return [
        Rule(
            APP_LB,
            T_LB,
            PRIO_VIP_LOOKUP,
            make_match(**to_vip, ct_zone=vlan),
            (Ct(zone=lb_zone, recirc_table=T_LB, nat=Nat()),),
        ),
        Rule(APP_LB, T_LB, PRIO_VIP_NEW, new, (Group(group),)),
        Rule(APP_LB, T_LB, PRIO_VIP_OTHER, other),
    ]


def lb_rules(lb: LoadBalancer, vlan: int, runtime: LbRuntime, dpid: int, after_lb: int = T_ACL_COMMIT) -> list[Rule]:
    """The rules of one balancer on switch ``dpid`` of its network.

    NATed packets go on to ``after_lb`` (the ACL app's commit table, which
    tracks the NATed connection in the network's zone and marks it
    stateful for the delivering switch; learning when the ACL app is off).
    """
    vip = str(lb.vip)
    rules = [arp_responder(vlan, vip), *probe_traps(vlan, vip), *vip_rules(lb, vlan, group_id(lb))]
    for backend in lb.backends:
        where = runtime.located.get((lb.network, backend.ip))
        if where is not None:
            rules.append(
                Rule(
                    APP_LB,
                    T_LB,
                    PRIO_NATED,
                    make_match(
                        vlan_vid=OFPVID_PRESENT | vlan,
                        eth_type=ETH_IPV4,
                        ipv4_dst=str(backend.ip),
                        ct_state=ct_state(CT_TRK | CT_DNAT, CT_RPL),
                    ),
                    (SetField("eth_dst", where.mac),),
                    goto=after_lb,
                )
            )
            if where.dpid == dpid:
                rules += hairpin_rules(lb, vlan, str(backend.ip), where)
    return rules


def bucket(lb: LoadBalancer, backend: Backend, zone: int) -> tuple[int, int, tuple[Action, ...]]:
    """A select-group bucket: commit the connection in ``zone`` with destination NAT to ``backend``."""
    return (
        backend.weight,
        OFPP_ANY,
        (Ct(zone=zone, commit=True, recirc_table=T_LB, nat=Nat(str(backend.ip), lb.port)),),
    )


def lb_group(lb: LoadBalancer, vlan: int, runtime: LbRuntime) -> GroupEntry:
    """The select group of ``lb``: one weighted bucket per healthy, located backend."""
    up = runtime.up_backends(lb.name)
    buckets = tuple(
        bucket(lb, b, CT_ZONE_LB + vlan) for b in lb.backends if b.ip in up and (lb.network, b.ip) in runtime.located
    )
    return GroupEntry(APP_LB, group_id(lb), "select", buckets)


def bucket_backends(
    names: Mapping[int, str], groups: Mapping[int, GroupEntry], buckets: Mapping[int, Sequence[int]]
) -> dict[tuple[str, str], int]:
    """Per-bucket counts of a switch's groups as (lb name, backend ip) -> count, summed over its groups.

    ``names`` maps the balancers' group ids to their names (a balancer has
    a group for its own network and one per routed client network),
    ``groups`` are the groups installed there, ``buckets`` the switch's
    report (group id -> count per bucket, in bucket order). Groups that are
    not a balancer's are left out.
    """
    out: dict[tuple[str, str], int] = {}
    for gid, counts in buckets.items():
        group = groups.get(gid)
        if group is None or gid not in names:
            continue
        for (_, _, actions), count in zip(group.buckets, counts, strict=False):
            nat = next((a.nat for a in actions if isinstance(a, Ct) and a.nat is not None), None)
            if nat is not None and nat.dst is not None:
                key = (names[gid], nat.dst)
                out[key] = out.get(key, 0) + count
    return out
