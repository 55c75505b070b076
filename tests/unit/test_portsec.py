"""Port security on simulated tables: what a declared VM may send while it takes its addresses and after.

One network of five VMs on two switches: ``a`` dual stack (mac, ip, ipv6),
``b`` IPv4 (mac, ip: IPv6 link-local only), ``c`` IPv6 only (mac, ipv6),
``d`` only a mac, ``e`` nothing declared; ``x`` in another network. Every
frame kind is sent untagged and priority-tagged; an admitted one reaches
exactly the other VMs of the network (or its unicast destination),
untagged; a refused one reaches nobody.
"""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import Any

import pytest

from controller.effects import DumpedFlow
from controller.fabric.crossing import trunk_ports_in_dump
from controller.fabric.topology import LinkKey
from controller.flows.pipeline import T_INGRESS
from controller.packets import link_local, solicited_node
from controller.tools.sim import Trace
from tests.unit.fabric_helpers import BCAST, Harness, model_from

NET = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks: {red: {vlan: 100}, blue: {vlan: 200}}
vms:
  a: {switch: s1, port: 1, network: red, mac: "02:00:00:00:00:0a", ip: 10.0.0.1/24, ipv6: 2001:db8::a/64}
  b: {switch: s1, port: 2, network: red, mac: "02:00:00:00:00:0b", ip: 10.0.0.2/24}
  c: {switch: s2, port: 3, network: red, mac: "02:00:00:00:00:0c", ipv6: 2001:db8::c/64}
  d: {switch: s2, port: 4, network: red, mac: "02:00:00:00:00:0d"}
  e: {switch: s2, port: 5, network: red}
  x: {switch: s1, port: 6, network: blue, mac: "02:00:00:00:00:0f", ip: 10.0.0.1/24, ipv6: 2001:db8::a/64}
"""
AT = {"a": (1, 1), "b": (1, 2), "c": (2, 3), "d": (2, 4), "e": (2, 5), "x": (1, 6)}
MAC = {vm: f"02:00:00:00:00:0{vm}" for vm in "abcd"} | {"e": "02:00:00:00:00:0e", "x": "02:00:00:00:00:0f"}
IP = {"a": "10.0.0.1", "b": "10.0.0.2"}
GLOBAL = {"a": "2001:db8::a", "c": "2001:db8::c"}
LL = {vm: str(link_local(mac)) for vm, mac in MAC.items()}
RED = {AT[vm] for vm in "abcde"}
ARP, IPV4, IPV6, QINQ, VLAN = 0x0806, 0x0800, 0x86DD, 0x88A8, 0x8100
FOREIGN_MAC = "02:00:00:00:00:99"


def group_mac(address: str) -> str:
    """The Ethernet multicast address of an IPv6 multicast group."""
    return "33:33:" + IPv6Address(address).packed[12:].hex(":")


def solicited(address: str) -> str:
    return str(solicited_node(IPv6Address(address)))


def harness() -> Harness:
    h = Harness(model_from(NET), {1: [1, 2, 6, 10], 2: [3, 4, 5, 10]}, [LinkKey.of(1, 10, 2, 10)])
    for vm in AT:  # every VM is learned from a frame it may send
        h.send(*AT[vm], MAC[vm], BCAST, **legit_broadcast(vm))
    assert len(h.hosts) == len(AT)
    return h


def legit_broadcast(vm: str) -> dict[str, Any]:
    if vm in IP:
        return dict(eth_type=ARP, arp_op=1, arp_sha=MAC[vm], arp_spa=IP[vm], arp_tpa="10.0.0.254")
    return dict(eth_type=IPV6, ipv6_src=LL[vm], ipv6_dst="ff02::1", ip_proto=17, udp_src=5, udp_dst=5)


# --- frames -------------------------------------------------------------------------


def arp(vm: str, op: int = 1, sha: str = "", spa: str = "", tpa: str = "") -> dict[str, Any]:
    return dict(dst=BCAST, eth_type=ARP, arp_op=op, arp_sha=sha or MAC[vm], arp_spa=spa or IP[vm], arp_tpa=tpa)


def dhcp(dst: str = "255.255.255.255", sport: int = 68, dport: int = 67) -> dict[str, Any]:
    return dict(dst=BCAST, eth_type=IPV4, ipv4_src="0.0.0.0", ipv4_dst=dst, ip_proto=17, udp_src=sport, udp_dst=dport)


def ipv6(src: str, dst: str, eth_dst: str = "", **fields: Any) -> dict[str, Any]:
    return dict(
        dst=eth_dst or (group_mac(dst) if IPv6Address(dst).is_multicast else MAC["c"]),
        eth_type=IPV6,
        ipv6_src=src,
        ipv6_dst=dst,
        **fields,
    )


def icmp6(src: str, dst: str, kind: int, **fields: Any) -> dict[str, Any]:
    return ipv6(src, dst, ip_proto=58, icmpv6_type=kind, icmpv6_code=0, **fields)


def ns(src: str, target: str, sll: str | None = None, dst: str = "") -> dict[str, Any]:
    extra = {} if sll is None else {"ipv6_nd_sll": sll}
    return icmp6(src, dst or solicited(target), 135, ipv6_nd_target=target, **extra)


def na(src: str, target: str, tll: str | None = None, dst: str = "ff02::1") -> dict[str, Any]:
    extra = {} if tll is None else {"ipv6_nd_tll": tll}
    return icmp6(src, dst, 136, ipv6_nd_target=target, **extra)


A, B, C = MAC["a"], MAC["b"], MAC["c"]

# (name, sending VM, frame); the frame goes to everyone else in red (broadcast/multicast) or to c.
ADMITTED: list[tuple[str, str, dict[str, Any]]] = [
    ("dhcp-discover", "a", dhcp()),
    ("dhcp-from-ipv4-only-vm", "b", dhcp()),
    ("arp-probe", "a", arp("a", spa="0.0.0.0", tpa=IP["a"])),
    ("arp-announcement", "a", arp("a", tpa=IP["a"])),
    ("gratuitous-arp-reply", "a", arp("a", op=2, tpa=IP["a"])),
    ("arp-request", "b", arp("b", tpa="10.0.0.1")),
    ("ipv4", "a", dict(dst=C, eth_type=IPV4, ipv4_src=IP["a"], ipv4_dst="10.0.0.3", ip_proto=6, tcp_src=1, tcp_dst=2)),
    ("dad-link-local", "a", ns("::", LL["a"], dst=solicited(LL["a"]))),
    ("dad-global", "a", ns("::", GLOBAL["a"])),
    ("dad-ipv4-only-vm", "b", ns("::", LL["b"])),
    ("dad-ipv6-only-vm", "c", ns("::", GLOBAL["c"])),
    ("ns-link-local-with-sll", "a", ns(LL["a"], LL["b"], sll=A)),
    ("ns-global-without-sll", "a", ns(GLOBAL["a"], GLOBAL["c"], dst=GLOBAL["c"])),
    ("na-solicited", "a", na(GLOBAL["a"], GLOBAL["a"], tll=A, dst=GLOBAL["c"])),
    ("na-unsolicited", "a", na(LL["a"], LL["a"], tll=A)),
    ("na-from-link-local-for-global", "a", na(LL["a"], GLOBAL["a"], tll=A)),
    ("na-without-tll", "a", na(GLOBAL["a"], GLOBAL["a"], dst=GLOBAL["c"])),
    ("na-ipv4-only-vm", "b", na(LL["b"], LL["b"], tll=B)),
    ("rs-unspecified", "a", icmp6("::", "ff02::2", 133)),
    ("rs-link-local", "b", icmp6(LL["b"], "ff02::2", 133)),
    ("mldv2-unspecified", "a", icmp6("::", "ff02::16", 143)),
    ("mldv1-unspecified", "a", icmp6("::", solicited(GLOBAL["a"]), 131)),
    ("mldv2-link-local", "c", icmp6(LL["c"], "ff02::16", 143)),
    ("ping6-global", "a", icmp6(GLOBAL["a"], GLOBAL["c"], 128)),
    ("ping6-link-local", "b", icmp6(LL["b"], LL["c"], 128)),
    ("tcp6", "c", ipv6(GLOBAL["c"], GLOBAL["a"], eth_dst=A, ip_proto=6, tcp_src=1, tcp_dst=22)),
    ("dhcpv6-solicit", "a", ipv6(LL["a"], "ff02::1:2", ip_proto=17, udp_src=546, udp_dst=547)),
    ("mac-only-vm-any-ipv6", "d", icmp6("2001:db8::99", "ff02::1", 134)),
    ("mac-only-vm-any-ipv4", "d", dict(dst=BCAST, eth_type=IPV4, ipv4_src="10.9.9.9", ipv4_dst="10.0.0.1")),
    ("undeclared-vm-anything", "e", dict(dst=BCAST, eth_type=0x88B5)),
]

REFUSED: list[tuple[str, str, dict[str, Any]]] = [
    ("arp-probe-other-sha", "a", arp("a", sha=B, spa="0.0.0.0", tpa=IP["a"])),
    ("arp-probe-other-eth-src", "a", dict(arp("a", spa="0.0.0.0", tpa=IP["a"]), src=FOREIGN_MAC)),
    ("arp-probe-for-another-address", "a", arp("a", spa="0.0.0.0", tpa=IP["b"])),
    ("arp-probe-reply", "a", arp("a", op=2, spa="0.0.0.0", tpa=IP["a"])),
    ("gratuitous-arp-for-another-ip", "a", arp("a", spa=IP["b"], tpa=IP["b"])),
    ("arp-from-ipv6-only-vm", "c", arp("c", spa="10.0.0.3", tpa="10.0.0.3")),
    ("arp-probe-from-ipv6-only-vm", "c", arp("c", spa="0.0.0.0", tpa="10.0.0.3")),
    ("dhcp-other-eth-src", "a", dict(dhcp(), src=FOREIGN_MAC)),
    ("dhcp-to-unicast", "a", dhcp(dst="10.0.0.254")),
    ("dhcp-server-ports", "a", dhcp(sport=67, dport=68)),
    ("dhcp-from-ipv6-only-vm", "c", dhcp()),
    ("ipv4-any-udp", "a", dhcp(sport=68, dport=68)),
    (
        "ipv4-any-tcp",
        "a",
        dict(
            dst=BCAST, eth_type=IPV4, ipv4_src="0.0.0.0", ipv4_dst="255.255.255.255", ip_proto=6, tcp_src=68, tcp_dst=67
        ),
    ),
    ("ipv4-any-icmp", "a", dict(dst=BCAST, eth_type=IPV4, ipv4_src="0.0.0.0", ipv4_dst="10.0.0.2", ip_proto=1)),
    ("ipv4-from-ipv6-only-vm", "c", dict(dst=BCAST, eth_type=IPV4, ipv4_src="10.0.0.3", ipv4_dst="10.0.0.1")),
    ("ipv6-foreign-global", "a", icmp6("2001:db8::99", GLOBAL["c"], 128)),
    ("ipv6-another-vms-global", "a", icmp6(GLOBAL["c"], "ff02::1", 128)),
    ("ipv6-foreign-link-local", "a", icmp6("fe80::1", "ff02::1", 128)),
    ("ipv6-another-vms-link-local", "b", icmp6(LL["a"], "ff02::1", 128)),
    ("ipv6-global-from-ipv4-only-vm", "b", icmp6("2001:db8::b", "ff02::1", 128)),
    ("ipv6-other-eth-src", "a", dict(icmp6(GLOBAL["a"], "ff02::1", 128), src=FOREIGN_MAC)),
    ("ipv6-unspecified-udp", "a", ipv6("::", "ff02::1", ip_proto=17, udp_src=546, udp_dst=547)),
    ("ipv6-unspecified-echo", "a", icmp6("::", "ff02::1", 128)),
    ("ns-other-sll", "a", ns(LL["a"], LL["b"], sll=B)),
    # two source link-layer options (another MAC first): OVS reports target :: and none, a host reads the first
    ("ns-unparseable", "a", ns(LL["a"], "::", dst=solicited(LL["b"]))),
    ("ns-foreign-source", "a", ns("fe80::1", LL["b"], sll=A)),
    ("na-another-vms-target", "a", na(LL["a"], LL["b"], tll=A)),
    ("na-foreign-target", "a", na(GLOBAL["a"], "2001:db8::99", tll=A)),
    ("na-other-tll", "a", na(GLOBAL["a"], GLOBAL["a"], tll=B)),
    ("na-foreign-source", "a", na("2001:db8::99", GLOBAL["a"], tll=A)),
    ("na-global-from-ipv4-only-vm", "b", na(LL["b"], "2001:db8::b", tll=B)),
    ("dad-another-vms-address", "a", ns("::", GLOBAL["c"])),
    ("dad-with-sll", "a", ns("::", GLOBAL["a"], sll=A)),
    ("dad-to-all-nodes", "a", ns("::", GLOBAL["a"], dst="ff02::1")),
    ("ns-unspecified-unicast", "a", ns("::", GLOBAL["c"], dst=GLOBAL["c"])),
    ("router-advertisement", "a", icmp6(LL["a"], "ff02::1", 134)),
    ("redirect", "a", icmp6(LL["a"], LL["b"], 137)),
    ("rs-unspecified-to-all-nodes", "a", icmp6("::", "ff02::1", 133)),
    ("mldv1-unspecified-foreign-group", "a", icmp6("::", "ff02::1:ff00:99", 131)),
    ("mldv2-unspecified-elsewhere", "a", icmp6("::", "ff02::1", 143)),
    ("other-ethertype", "a", dict(dst=BCAST, eth_type=0x88B5)),
]


def send(h: Harness, vm: str, frame: dict[str, Any], **tag: Any) -> Trace:
    fields = dict(frame)
    src, dst = fields.pop("src", MAC[vm]), fields.pop("dst")
    return h.send(*AT[vm], src, dst, learn=False, **fields, **tag)


def expected(vm: str, frame: dict[str, Any]) -> set[tuple[int, int]]:
    dst = frame["dst"]
    if int(dst[:2], 16) & 1:  # broadcast or multicast
        return RED - {AT[vm]}
    return {AT[next(v for v, m in MAC.items() if m == dst)]}


TAGS = {"untagged": {}, "priority-tagged": {"vlan_vid": 0x1000, "vlan_pcp": 5}}


@pytest.mark.parametrize("tag", sorted(TAGS))
@pytest.mark.parametrize("vm, frame", [(v, f) for _, v, f in ADMITTED], ids=[n for n, _, _ in ADMITTED])
def test_what_a_host_sends_to_take_and_use_its_addresses_is_delivered(vm: str, frame: dict[str, Any], tag: str) -> None:
    trace = send(harness(), vm, frame, **TAGS[tag])
    assert trace.delivered() == expected(vm, frame) and not trace.loop
    for _, _, pkt in trace.outputs:  # untagged at the receivers, the sender's priority gone
        assert pkt["vlan_vid"] == 0 and "vlan_pcp" not in pkt


@pytest.mark.parametrize("tag", sorted(TAGS))
@pytest.mark.parametrize("vm, frame", [(v, f) for _, v, f in REFUSED], ids=[n for n, _, _ in REFUSED])
def test_what_would_claim_another_address_reaches_nobody(vm: str, frame: dict[str, Any], tag: str) -> None:
    trace = send(harness(), vm, frame, **TAGS[tag])
    assert trace.outputs == [] and trace.to_controller == []


OTHER_TAGS = {
    "own-vlan": {"vlan_vid": 0x1000 | 100},
    "other-vlan": {"vlan_vid": 0x1000 | 200},
    "vid-1-pcp-0": {"vlan_vid": 0x1001, "vlan_pcp": 0},
    "priority-then-802.1q": {"vlan_vid": 0x1000, "vlan_pcp": 3, "eth_type": VLAN},
    "priority-then-802.1ad": {"vlan_vid": 0x1000, "eth_type": QINQ},
}


@pytest.mark.parametrize("tag", sorted(OTHER_TAGS))
@pytest.mark.parametrize("vm", sorted(AT))
def test_other_tags_and_double_tags_still_drop(vm: str, tag: str) -> None:
    h = harness()
    for frame in (dict(dst=BCAST, **legit_broadcast(vm)), dict(dst=BCAST, eth_type=0x88B5)):
        trace = send(h, vm, {**frame, **OTHER_TAGS[tag]})
        assert trace.outputs == [] and trace.to_controller == []


def test_a_priority_tagged_frame_is_learned_and_answered_like_an_untagged_one() -> None:
    h = Harness(model_from(NET), {1: [1, 2, 6, 10], 2: [3, 4, 5, 10]}, [LinkKey.of(1, 10, 2, 10)])
    h.send(*AT["d"], MAC["d"], BCAST, vlan_vid=0x1000, vlan_pcp=7, eth_type=0x88B5)
    h.send(*AT["e"], MAC["e"], BCAST, eth_type=0x88B5)
    assert {(host.dpid, host.port) for host in h.hosts.values()} == {AT["d"], AT["e"]}
    trace = h.send(*AT["e"], MAC["e"], MAC["d"], learn=False, eth_type=0x88B5)
    assert trace.delivered() == {AT["d"]} and trace.to_controller == []
    trace = h.send(*AT["d"], MAC["d"], MAC["e"], learn=False, vlan_vid=0x1000, vlan_pcp=1, eth_type=0x88B5)
    assert trace.delivered() == {AT["e"]} and trace.outputs[0][2]["vlan_vid"] == 0


def test_the_other_network_hears_nothing_of_address_acquisition() -> None:
    h = harness()
    for _, vm, frame in ADMITTED:
        for tag in TAGS.values():
            assert AT["x"] not in send(h, vm, frame, **tag).delivered()


def test_edge_port_rules_make_no_trunk_in_a_flow_dump() -> None:
    """A restarted controller reads trunks from the dump: a priority tag (VLAN id 0) is not a network's tag."""
    h = harness()
    dump = [
        DumpedFlow(r.cookie, r.table, r.priority, dict(r.match)) for r in h.flows[1].values() if r.table == T_INGRESS
    ]
    assert any(dict(f.match).get("vlan_vid") == 0x1000 for f in dump)
    assert trunk_ports_in_dump(dump) == frozenset({10})
