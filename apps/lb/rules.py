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
- **NATed packets** get the backend's MAC as destination and go to learning.
- Anything else sent to the VIP drops (it answers nothing else).
- **Probe replies** to the VIP (TCP to the probe port block, ICMP echo
  replies, ARP replies) are trapped to the controller, metered, ahead of the
  conntrack pass.

Health and backend locations come from :class:`apps.lb.runtime.LbRuntime`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from apps.lb.probe import vip_mac
from apps.lb.runtime import PROBE_PORT_BASE, PROBE_PORT_MASK, LbRuntime, Location
from controller.config.model import LoadBalancer
from controller.flows.pipeline import (
    APP_LB,
    CT_ZONE_HAIRPIN,
    CT_ZONE_LB,
    METER_PACKET_IN,
    T_ACL_PORT,
    T_LB,
    T_LEARN,
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


def lb_rules(lb: LoadBalancer, vlan: int, runtime: LbRuntime, dpid: int, after: int = T_LEARN) -> list[Rule]:
    """The rules of one balancer on switch ``dpid`` of its network; NATed packets go on to table ``after``.

    ``after`` is the table after ``lb`` (``acl_commit`` with the ACL app on,
    which commits the balanced connection in the network's zone on the
    client's host, so the backend's replies delivered there are replies).
    """
    vip = str(lb.vip)
    proto = PROTOS[lb.protocol]
    lb_zone = CT_ZONE_LB + vlan
    to_vip: dict[str, int | str] = dict(
        vlan_vid=OFPVID_PRESENT | vlan,
        eth_type=ETH_IPV4,
        ip_proto=proto,
        ipv4_dst=vip,
        **{f"{lb.protocol}_dst": lb.port},
    )
    new = make_match(**to_vip, ct_zone=lb_zone, ct_state=ct_state(CT_TRK | CT_NEW))
    rules = [
        arp_responder(vlan, vip),
        *probe_traps(vlan, vip),
        Rule(
            APP_LB,
            T_LB,
            PRIO_VIP_LOOKUP,
            make_match(**to_vip, ct_zone=vlan),
            (Ct(zone=lb_zone, recirc_table=T_LB, nat=Nat()),),
        ),
        Rule(APP_LB, T_LB, PRIO_VIP_NEW, new, (Group(group_id(lb)),)),
        Rule(APP_LB, T_LB, PRIO_VIP_OTHER, make_match(vlan_vid=OFPVID_PRESENT | vlan, eth_type=ETH_IPV4, ipv4_dst=vip)),
    ]
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
                    goto=after,
                )
            )
            if where.dpid == dpid:
                rules += hairpin_rules(lb, vlan, str(backend.ip), where)
    return rules


def lb_group(lb: LoadBalancer, vlan: int, runtime: LbRuntime) -> GroupEntry:
    """The select group of ``lb``: one weighted bucket per healthy, located backend."""
    up = runtime.up_backends(lb.name)
    buckets = tuple(
        (
            b.weight,
            OFPP_ANY,
            (Ct(zone=CT_ZONE_LB + vlan, commit=True, recirc_table=T_LB, nat=Nat(str(b.ip), lb.port)),),
        )
        for b in lb.backends
        if b.ip in up and (lb.network, b.ip) in runtime.located
    )
    return GroupEntry(APP_LB, group_id(lb), "select", buckets)


def bucket_backends(
    lbs: Iterable[LoadBalancer], groups: Mapping[int, GroupEntry], buckets: Mapping[int, Sequence[int]]
) -> dict[tuple[str, str], int]:
    """Per-bucket counts of a switch's groups as (lb name, backend ip) -> count.

    ``groups`` are the groups installed there, ``buckets`` the switch's
    report (group id -> count per bucket, in bucket order). Groups that are
    not a balancer's are left out.
    """
    names = {group_id(lb): lb.name for lb in lbs}
    out: dict[tuple[str, str], int] = {}
    for gid, counts in buckets.items():
        group = groups.get(gid)
        if group is None or gid not in names:
            continue
        for (_, _, actions), count in zip(group.buckets, counts, strict=False):
            nat = next((a.nat for a in actions if isinstance(a, Ct) and a.nat is not None), None)
            if nat is not None and nat.dst is not None:
                out[(names[gid], nat.dst)] = count
    return out
