"""Port security: which frames a declared VM may send, as OpenFlow match fields.

A VM that declares no ``mac`` may send anything. With ``mac`` only, any
frame from that MAC. With ``mac`` and an address (``ip``, ``ipv6`` or
both) the VM is a host with exactly those addresses, and only what such a
host sends passes:

=============================================  ===============================================
frame                                          admitted when
=============================================  ===============================================
ARP                                            sender MAC is ``mac`` and sender IP is ``ip``
                                               (requests, replies, gratuitous ARP, announcements)
ARP probe (RFC 5227)                           request, sender MAC ``mac``, sender IP 0.0.0.0,
                                               target IP ``ip``
IPv4                                           source is ``ip``
DHCP from 0.0.0.0                              UDP 68 -> 67, to 255.255.255.255
IPv6                                           source is ``ipv6`` or the link-local address
                                               derived from ``mac`` (modified EUI-64)
neighbour solicitation                         from those, source link-layer option ``mac`` or none
neighbour advertisement                        from those, target one of them, target
                                               link-layer option ``mac`` or none
DAD neighbour solicitation                     from ::, to the solicited-node group of its
                                               target, target one of its addresses, no option
router solicitation                            from its addresses, or from :: to ff02::2
MLD report from ::                             MLDv2 to ff02::16; MLDv1 to the solicited-node
                                               group of one of its addresses
=============================================  ===============================================

Everything else drops: another sender in ARP, an ARP probe for another
address, IPv4 from 0.0.0.0 that is not DHCP, router advertisements and
redirects (a VM is a host), neighbour discovery claiming another address or
MAC, other ethertypes. Without ``ip`` no ARP or IPv4 passes; without
``ipv6`` the only IPv6 address is the link-local one, so neighbour
discovery and link-local traffic work but no global address can be
claimed. Every frame must come from ``mac``.

OpenFlow cannot look into DHCP (the client hardware address), an MLDv2
report's groups, or the options of a router solicitation; these are not
checked. Neighbour discovery OVS cannot parse (an option twice, a bad
length), which it reports with target ``::`` and no options, drops.
"""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import NamedTuple

from controller.config.model import Vm
from controller.flows.rules import MatchValue
from controller.packets import (
    ARP_REQUEST,
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    ICMPV6_MLD2_REPORT,
    ICMPV6_MLD_REPORT,
    ICMPV6_NA,
    ICMPV6_NS,
    ICMPV6_RA,
    ICMPV6_REDIRECT,
    ICMPV6_RS,
    IP_PROTO_ICMPV6,
    IP_PROTO_UDP,
    IPV4_ANY,
    IPV4_BROADCAST,
    IPV6_ALL_ROUTERS,
    IPV6_ANY,
    IPV6_MLDV2_ROUTERS,
    NO_MAC,
    UDP_BOOTPC,
    UDP_BOOTPS,
    link_local,
    solicited_node,
)

PRIO_MALFORMED = 125
"""A neighbour solicitation OVS could not parse (it reports target ``::``): dropped."""
PRIO_CHECKED = 120
"""Neighbour discovery that passed its checks."""
PRIO_GUARD = 110
"""Neighbour discovery, router advertisements and redirects otherwise: dropped."""
PRIO_ADMIT = 100
"""What the VM may send."""
GUARDED = (ICMPV6_NS, ICMPV6_NA, ICMPV6_RA, ICMPV6_REDIRECT)

Field = tuple[str, MatchValue]
"""One match field, ``(oxm_field_name, value)``."""

_IS_ARP: Field = ("eth_type", ETH_ARP)
_IS_IPV4: Field = ("eth_type", ETH_IPV4)
_IS_IPV6: Field = ("eth_type", ETH_IPV6)
_ARP_REQUEST: Field = ("arp_op", ARP_REQUEST)
_ARP_SPA_ANY: Field = ("arp_spa", IPV4_ANY)
_IPV4_SRC_ANY: Field = ("ipv4_src", IPV4_ANY)
_IPV4_DST_BROADCAST: Field = ("ipv4_dst", IPV4_BROADCAST)
_UDP: Field = ("ip_proto", IP_PROTO_UDP)
_BOOTPC: Field = ("udp_src", UDP_BOOTPC)
_BOOTPS: Field = ("udp_dst", UDP_BOOTPS)
_ICMPV6: Field = ("ip_proto", IP_PROTO_ICMPV6)
_NS: Field = ("icmpv6_type", ICMPV6_NS)
_NA: Field = ("icmpv6_type", ICMPV6_NA)
_RS: Field = ("icmpv6_type", ICMPV6_RS)
_MLD_REPORT: Field = ("icmpv6_type", ICMPV6_MLD_REPORT)
_MLD2_REPORT: Field = ("icmpv6_type", ICMPV6_MLD2_REPORT)
_GUARDED: tuple[Field, ...] = tuple(("icmpv6_type", t) for t in GUARDED)
_ND_TARGET_ANY: Field = ("ipv6_nd_target", IPV6_ANY)
_IPV6_SRC_ANY: Field = ("ipv6_src", IPV6_ANY)
_TO_ALL_ROUTERS: Field = ("ipv6_dst", IPV6_ALL_ROUTERS)
_TO_MLDV2_ROUTERS: Field = ("ipv6_dst", IPV6_MLDV2_ROUTERS)
_NO_SLL: Field = ("ipv6_nd_sll", NO_MAC)
_NO_TLL: Field = ("ipv6_nd_tll", NO_MAC)


class Kind(NamedTuple):
    """A kind of frame from a VM port: its match fields (no port, no VLAN) and whether it passes.

    ``fields`` come in no particular order (a :data:`~controller.flows.rules.Match`
    is sorted: :func:`apps.ingress.edge_port_rules` sorts them with the port's).
    The field tuples themselves are shared: a VM's kinds hold its MAC and addresses
    once, and every VM the constant fields (a large fabric holds ~34 rules per VM).
    """

    priority: int
    fields: tuple[Field, ...]
    admit: bool = True


def ipv6_sources(vm: Vm) -> tuple[IPv6Address, ...]:
    """The IPv6 addresses ``vm`` may send from (its link-local one first); none without ``mac``."""
    if vm.mac is None:
        return ()
    own = [link_local(vm.mac)]
    if vm.ipv6 is not None:
        own.append(vm.ipv6.ip)
    return tuple(own)


def kinds(vm: Vm | None) -> list[Kind]:
    """What ``vm`` (None: an undeclared VM of a zero-config network) may send; see the module docstring."""
    if vm is None or vm.mac is None:
        return [Kind(PRIO_ADMIT, ())]
    src: Field = ("eth_src", vm.mac)
    if vm.ip is None and vm.ipv6 is None:
        return [Kind(PRIO_ADMIT, (src,))]
    out = _ipv4(src, vm.mac, str(vm.ip.ip)) if vm.ip is not None else []
    return out + _ipv6(src, vm.mac, ipv6_sources(vm))


def _ipv4(src: Field, mac: str, ip: str) -> list[Kind]:
    sha: Field = ("arp_sha", mac)
    return [
        Kind(PRIO_ADMIT, (src, _IS_ARP, sha, ("arp_spa", ip))),
        Kind(PRIO_ADMIT, (src, _IS_ARP, sha, _ARP_REQUEST, _ARP_SPA_ANY, ("arp_tpa", ip))),
        Kind(PRIO_ADMIT, (src, _IS_IPV4, ("ipv4_src", ip))),
        Kind(PRIO_ADMIT, (src, _IS_IPV4, _IPV4_SRC_ANY, _IPV4_DST_BROADCAST, _UDP, _BOOTPC, _BOOTPS)),
    ]


def _ipv6(src: Field, mac: str, addresses: tuple[IPv6Address, ...]) -> list[Kind]:
    own = [str(a) for a in addresses]
    v6 = (src, _IS_IPV6)
    icmp = (src, _IS_IPV6, _ICMPV6)
    out = [Kind(PRIO_GUARD, (*icmp, t), False) for t in _GUARDED]
    # OVS reports no options and target :: for ND it cannot parse (an option given twice, a bad
    # length), while a host may still read the first option: such a solicitation must not pass
    # for one without a source link-layer option.
    out.append(Kind(PRIO_MALFORMED, (*icmp, _NS, _ND_TARGET_ANY), False))
    slls: tuple[Field, Field] = (("ipv6_nd_sll", mac), _NO_SLL)
    tlls: tuple[Field, Field] = (("ipv6_nd_tll", mac), _NO_TLL)
    targets: list[Field] = [("ipv6_nd_target", t) for t in own]
    for addr in own:
        from_addr: Field = ("ipv6_src", addr)
        out.append(Kind(PRIO_ADMIT, (*v6, from_addr)))
        out += [Kind(PRIO_CHECKED, (*icmp, from_addr, _NS, sll)) for sll in slls]
        out += [Kind(PRIO_CHECKED, (*icmp, from_addr, _NA, target, tll)) for target in targets for tll in tlls]
    unspecified = (*icmp, _IPV6_SRC_ANY)
    for address, target in zip(addresses, targets, strict=True):
        group: Field = ("ipv6_dst", str(solicited_node(address)))
        out.append(Kind(PRIO_CHECKED, (*unspecified, group, _NS, target, _NO_SLL)))
        out.append(Kind(PRIO_ADMIT, (*unspecified, group, _MLD_REPORT)))
    out.append(Kind(PRIO_ADMIT, (*unspecified, _TO_ALL_ROUTERS, _RS)))
    out.append(Kind(PRIO_ADMIT, (*unspecified, _TO_MLDV2_ROUTERS, _MLD2_REPORT)))
    return out
