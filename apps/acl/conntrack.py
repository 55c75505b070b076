"""Conntrack where traffic enters and where it is delivered: passes, verdicts, commits.

Semantics: :mod:`apps.acl.compile` (module docstring). The tables:
``acl_port`` (pass and verdicts) and ``acl_commit`` where traffic enters,
``egress`` (claiming a port's deliveries), ``acl_out_net`` (pass and
verdicts) and ``egress_commit`` where it is delivered.
"""

from __future__ import annotations

from collections.abc import Iterable

from apps.acl.compile import PRIO_DEFAULT_DENY, PRIO_NO_LIST
from controller.flows.pipeline import (
    APP_ACL,
    CT_MARK_SKIP_ACL,
    CT_ZONE_LB,
    METADATA_ALL,
    METADATA_STATEFUL,
    PCP_STATEFUL,
    REG_OUT_PORT,
    T_ACL_COMMIT,
    T_ACL_OUT_NET,
    T_ACL_PORT,
    T_EGRESS,
    T_EGRESS_COMMIT,
    T_LEARN,
    T_OUTPUT,
)
from controller.flows.rules import (
    CT_DNAT,
    CT_EST,
    CT_INV,
    CT_REL,
    CT_RPL,
    CT_TRK,
    OFPVID_PRESENT,
    Ct,
    CtClear,
    Nat,
    Rule,
    SetField,
    ct_state,
    make_match,
)
from controller.packets import ETH_IPV4, ETH_IPV6, IP_PROTO_ICMPV6, IP_PROTO_TCP, IP_PROTO_UDP

PRIO_CT_TRACK = 65000
PRIO_CT_STATE = 64900
PRIO_BALANCED = 110
PRIO_CARRIED = 110
PRIO_DELIVERY = 100
PRIO_ORIGINAL = 2
"""Added in ``egress_commit`` to a commit rule's priority for its twin without the balancer's un-NAT."""
TAGGED = (OFPVID_PRESENT, OFPVID_PRESENT)
"""``vlan_vid`` of any tagged frame (every frame inside the pipeline): the prerequisite of ``vlan_pcp``."""
IP_PROTO_DCCP, IP_PROTO_SCTP, IP_PROTO_UDPLITE = 33, 132, 136
INVALID_IPV6: tuple[dict[str, int], ...] = tuple(
    {"ip_proto": p} for p in (IP_PROTO_TCP, IP_PROTO_UDP, IP_PROTO_DCCP, IP_PROTO_SCTP, IP_PROTO_UDPLITE)
) + tuple({"ip_proto": IP_PROTO_ICMPV6, "icmpv6_type": t} for t in (1, 2, 3, 4, 128, 129))
"""The IPv6 packets whose ``+inv`` drops: protocols conntrack follows, ICMPv6 errors and echo.

Conntrack cannot track neighbour discovery, MLD or router solicitation and
flags them ``+inv``; they go on to the lists (no flow matches every other
IPv6 packet, as OpenFlow has no "not")."""


def _invalid_drops(table: int) -> list[Rule]:
    """Drop what conntrack found invalid (IPv6: only what it can track, see :data:`INVALID_IPV6`)."""
    invalid = ct_state(CT_TRK | CT_INV)
    rules = [Rule(APP_ACL, table, PRIO_CT_STATE, make_match(ct_state=invalid, eth_type=ETH_IPV4))]
    rules += [
        Rule(APP_ACL, table, PRIO_CT_STATE, make_match(ct_state=invalid, eth_type=ETH_IPV6, **fields))
        for fields in INVALID_IPV6
    ]
    return rules


def _track(table: int, vlan: int, eth_type: int) -> Rule:
    """The conntrack pass of ``table``: untracked IP of network ``vlan`` through its zone, back into ``table``."""
    return Rule(
        APP_ACL,
        table,
        PRIO_CT_TRACK,
        make_match(vlan_vid=OFPVID_PRESENT | vlan, eth_type=eth_type, ct_state=ct_state(0, CT_TRK)),
        (Ct(zone=vlan, recirc_table=table),),
    )


ADMITTED = (ct_state(CT_TRK | CT_EST | CT_RPL, CT_INV), ct_state(CT_TRK | CT_REL, CT_INV))
"""Replies, and ICMP errors related to a connection (``+rel``): admitted without the lists when the
connection is marked (:data:`CT_MARK_SKIP_ACL`) or, at delivery, the frame carries :data:`PCP_STATEFUL`."""
ORIGINAL = ct_state(0, CT_RPL | CT_REL)
"""Packets in their connection's original direction (``-rpl-rel``): the only ones a stateful rule vouches for.

A reply or related error a stateful rule lets through opens nothing (OVN's ``allow-related`` admits the
replies of sessions allowed in their original direction; the Neutron OVS firewall's rules judge and commit
``+new`` packets): it is committed unmarked and does not carry :data:`PCP_STATEFUL`, so the other lists on
its way (the receiver's ``acl_out``) still judge it, and its connection stays unmarked."""


def conntrack_rules(vlans: Iterable[int], after: int = T_LEARN) -> list[Rule]:
    """Where traffic enters: conntrack pass and verdicts in ``acl_port``, commits in ``acl_commit``.

    ``after`` is the table after ``acl_commit``, where commits and the
    replies that skip the lists go on (routing, DHCP or learning).

    The pass tracks each packet in its network's zone (the VLAN id). Replies
    and related ICMP errors of marked connections skip the lists and leave
    marked :data:`PCP_STATEFUL`, as does every packet in its connection's
    original direction (:data:`ORIGINAL`) a stateful rule let through, and
    every packet the load balancer let through (``+dnat``: the balancer NATed
    it in its own zone). Connections are committed here unmarked: only the delivering
    switch marks them (:func:`egress_conntrack_rules`), once the receiver's
    ``acl_out`` allowed the packet too, so a connection the far end refused
    admits no "replies" (on one host that is the same entry; on another
    host the reply carries the mark back).
    """
    vlans = sorted(vlans)
    if not vlans:
        return []
    stateful = (SetField("vlan_pcp", PCP_STATEFUL),)
    rules = _invalid_drops(T_ACL_PORT)
    rules += [
        Rule(
            APP_ACL,
            T_ACL_PORT,
            PRIO_CT_STATE,
            make_match(vlan_vid=TAGGED, ct_state=state, ct_mark=CT_MARK_SKIP_ACL),
            stateful,
            goto=after,
        )
        for state in ADMITTED
    ]
    for vlan in vlans:
        vid = OFPVID_PRESENT | vlan
        for eth_type in (ETH_IPV4, ETH_IPV6):
            rules.append(_track(T_ACL_PORT, vlan, eth_type))
            carried = (Ct(zone=vlan, commit=True),) + stateful
            rules.append(
                Rule(
                    APP_ACL,
                    T_ACL_COMMIT,
                    PRIO_DEFAULT_DENY,
                    make_match(
                        vlan_vid=vid,
                        eth_type=eth_type,
                        metadata=(METADATA_STATEFUL, METADATA_STATEFUL),
                        ct_state=ORIGINAL,
                    ),
                    carried,
                    goto=after,
                )
            )
            if eth_type == ETH_IPV4:
                rules.append(
                    Rule(
                        APP_ACL,
                        T_ACL_COMMIT,
                        PRIO_BALANCED,
                        make_match(vlan_vid=vid, eth_type=eth_type, ct_state=ct_state(CT_TRK | CT_DNAT, CT_RPL)),
                        carried,
                        goto=after,
                    )
                )
            rules.append(
                Rule(
                    APP_ACL,
                    T_ACL_COMMIT,
                    PRIO_NO_LIST,
                    make_match(vlan_vid=vid, eth_type=eth_type),
                    (Ct(zone=vlan, commit=True),),
                    goto=after,
                )
            )
    return rules


def egress_conntrack_rules(vlans: Iterable[int], balanced: Iterable[int]) -> list[Rule]:
    """Where traffic is delivered: conntrack pass and verdicts in ``acl_out_net``, commits in ``egress_commit``.

    As OVN's to-lport stage: the delivering switch tracks the packet in its
    network's zone again (on another host that conntrack never saw it; on
    the same host it finds the connection committed where it entered) and
    commits it, so a reply entering here is a reply, whatever the path.
    Replies and related ICMP errors skip the ``acl_out`` lists when their
    connection is marked or the frame says :data:`PCP_STATEFUL`; the commit
    marks the connection when the frame says so or a stateful ``acl_out``
    rule allowed a packet in its original direction (:data:`ORIGINAL`). In
    networks with a load balancer (``balanced``), replies of balanced
    connections are un-NATed here, in the balancer's zone
    (:data:`CT_ZONE_LB` + VLAN), where the client's connection was NATed:
    the balancer's state lives on the client's host, wherever the backend is.
    Packets in a connection's original direction (``-rpl-rel``) were never
    NATed by the balancer where they are delivered, so they skip that
    un-NAT pass (one datapath recirculation less for most of the traffic).
    """
    vlans, lb_vlans = sorted(vlans), frozenset(balanced)
    if not vlans:
        return []
    rules = _invalid_drops(T_ACL_OUT_NET)
    for state in ADMITTED:
        rules += [
            Rule(
                APP_ACL,
                T_ACL_OUT_NET,
                PRIO_CT_STATE,
                make_match(ct_state=state, ct_mark=CT_MARK_SKIP_ACL),
                goto=T_EGRESS_COMMIT,
            ),
            Rule(
                APP_ACL,
                T_ACL_OUT_NET,
                PRIO_CT_STATE,
                make_match(vlan_vid=TAGGED, vlan_pcp=PCP_STATEFUL, ct_state=state),
                goto=T_EGRESS_COMMIT,
            ),
        ]
    for vlan in vlans:
        vid = OFPVID_PRESENT | vlan
        for eth_type in (ETH_IPV4, ETH_IPV6):
            rules.append(_track(T_ACL_OUT_NET, vlan, eth_type))
            unnat: tuple[Ct, ...] = ()
            if vlan in lb_vlans and eth_type == ETH_IPV4:
                unnat = (Ct(zone=CT_ZONE_LB + vlan, nat=Nat(), recirc_table=T_OUTPUT),)
            goto = None if unnat else T_OUTPUT
            marked = (Ct(zone=vlan, commit=True, mark=CT_MARK_SKIP_ACL),) + unnat
            here = dict(vlan_vid=vid, eth_type=eth_type)
            rules += [
                Rule(
                    APP_ACL,
                    T_EGRESS_COMMIT,
                    PRIO_CARRIED,
                    make_match(**here, vlan_pcp=PCP_STATEFUL),
                    marked,
                    goto=goto,
                ),
                Rule(  # original direction only: never NATed by the balancer, so no un-NAT pass
                    APP_ACL,
                    T_EGRESS_COMMIT,
                    PRIO_DEFAULT_DENY,
                    make_match(**here, metadata=(METADATA_STATEFUL, METADATA_STATEFUL), ct_state=ORIGINAL),
                    marked[:1],
                    goto=T_OUTPUT,
                ),
                Rule(
                    APP_ACL,
                    T_EGRESS_COMMIT,
                    PRIO_NO_LIST,
                    make_match(**here),
                    (Ct(zone=vlan, commit=True),) + unnat,
                    goto=goto,
                ),
            ]
            if unnat:  # only replies (and related errors) were NATed by the balancer: the rest skips the un-NAT pass
                rules += [
                    Rule(
                        APP_ACL,
                        T_EGRESS_COMMIT,
                        PRIO_CARRIED + PRIO_ORIGINAL,
                        make_match(**here, vlan_pcp=PCP_STATEFUL, ct_state=ORIGINAL),
                        marked[:1],
                        goto=T_OUTPUT,
                    ),
                    Rule(
                        APP_ACL,
                        T_EGRESS_COMMIT,
                        PRIO_NO_LIST + PRIO_ORIGINAL,
                        make_match(**here, ct_state=ORIGINAL),
                        (Ct(zone=vlan, commit=True),),
                        goto=T_OUTPUT,
                    ),
                ]
    return rules


def delivery_rule(port: int, metadata: int) -> Rule:
    """Claim deliveries to ``port`` for the ``acl_out`` tables: fresh conntrack state, the port's list ids."""
    return Rule(
        APP_ACL,
        T_EGRESS,
        PRIO_DELIVERY,
        make_match(**{REG_OUT_PORT: port}),
        (CtClear(),),
        goto=T_ACL_OUT_NET,
        write_metadata=(metadata, METADATA_ALL),
    )
