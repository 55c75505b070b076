"""A router's uplink on simulated tables: SNAT out, floating IPs in, ARP on the uplink, the hostile outside."""

from __future__ import annotations

from typing import Any

from os_ken.lib.packet import arp, ethernet, packet

from controller.config.routing import gateway_mac
from controller.config.uplinks import uplink_mac
from controller.fabric.topology import LinkKey
from controller.flows.pipeline import T_UPLINK_IN
from controller.tools.sim import Trace, conntracks_of_hosts
from tests.unit.fabric_helpers import Harness, model_from

NET = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks:
  red: {vlan: 100, gateway: 10.0.1.1/24}
  blue: {vlan: 200, gateway: 10.0.2.1/24, acl_out: [web-only]}
vms:
  r1: {switch: s1, port: 1, network: red, ip: 10.0.1.11/24, mac: "02:00:00:00:01:11"}
  b1: {switch: s2, port: 3, network: blue, ip: 10.0.2.11/24, mac: "02:00:00:00:02:11"}
acls:
  web-only:
    - {action: allow, match: {ip_proto: tcp, tcp_dst: 80}, stateful: true}
routers:
  r: {networks: [red, blue], uplink: wan}
uplinks:
  wan: {switch: s2, port: 9, ip: 192.0.2.10/24, gateway: 192.0.2.1}
floating_ips:
  192.0.2.50: b1
"""
PORTS = {1: [1, 10], 2: [3, 9, 10]}
LINKS = [LinkKey.of(1, 10, 2, 10)]
UPLINK = (2, 9)
UPSTREAM_MAC = "02:aa:00:00:00:01"
OUTSIDE = "198.51.100.7"
MAC = {"r1": "02:00:00:00:01:11", "b1": "02:00:00:00:02:11"}
AT = {"r1": (1, 1), "b1": (2, 3)}
IP = {"r1": "10.0.1.11", "b1": "10.0.2.11"}
VLAN = {"r1": 100, "b1": 200}


def arp_reply(src_mac: str, src_ip: str, dst_mac: str, dst_ip: str) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst_mac, src_mac, 0x0806))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REPLY, src_mac=src_mac, src_ip=src_ip, dst_mac=dst_mac, dst_ip=dst_ip))
    pkt.serialize()
    return bytes(pkt.data)


def harness(text: str = NET, resolved: bool = True) -> Harness:
    h = Harness(model_from(text), PORTS, LINKS)
    if resolved:
        h.packet_in(
            *UPLINK[:1], T_UPLINK_IN, UPLINK[1], arp_reply(UPSTREAM_MAC, "192.0.2.1", uplink_mac("wan"), "192.0.2.10")
        )
    return h


def tcp_out(
    h: Harness,
    vm: str,
    dst: str = OUTSIDE,
    dport: int = 80,
    sport: int = 40000,
    at: tuple[int, int] | None = None,
    **extra: Any,
) -> Trace:
    """TCP from ``vm`` (on its port, or ``at``) to ``dst``, sent to its gateway."""
    fields: dict[str, Any] = dict(
        learn=False, ipv4_src=IP[vm], ipv4_dst=dst, ip_proto=6, tcp_src=sport, tcp_dst=dport, nw_ttl=64
    )
    fields.update(extra)
    return h.send(*(at or AT[vm]), MAC[vm], gateway_mac(VLAN[vm]), **fields)


def tcp_in(h: Harness, dst: str, dport: int, sport: int = 80, src: str = OUTSIDE, **extra: Any) -> Trace:
    fields: dict[str, Any] = dict(
        learn=False, ipv4_src=src, ipv4_dst=dst, ip_proto=6, tcp_src=sport, tcp_dst=dport, nw_ttl=64
    )
    fields.update(extra)
    return h.send(*UPLINK, UPSTREAM_MAC, uplink_mac("wan"), **fields)


def outputs(trace: Trace) -> dict[tuple[int, int], dict[str, object]]:
    return {(d, p): pkt for d, p, pkt in trace.outputs}


def arp_request(h: Harness, target: str) -> Trace:
    return h.send(
        *UPLINK,
        UPSTREAM_MAC,
        "ff:ff:ff:ff:ff:ff",
        learn=False,
        eth_type=0x0806,
        arp_op=1,
        arp_sha=UPSTREAM_MAC,
        arp_spa="192.0.2.1",
        arp_tpa=target,
    )


def test_the_controller_asks_for_the_upstream_gateway_on_the_uplink() -> None:
    h = harness(resolved=False)
    h.tick()
    assert any((d, p) == UPLINK for d, p, _ in h.frames)
    assert not outputs(tcp_out(h, "r1"))  # nothing leaves before the gateway's MAC is known


def test_a_vm_without_floating_ip_leaves_as_the_uplink_address_across_switches() -> None:
    h = harness()
    out = outputs(tcp_out(h, "r1"))
    assert set(out) == {UPLINK}
    pkt = out[UPLINK]
    assert pkt["ipv4_src"] == "192.0.2.10" and pkt["ipv4_dst"] == OUTSIDE
    assert pkt["eth_src"] == uplink_mac("wan") and pkt["eth_dst"] == UPSTREAM_MAC
    assert pkt["nw_ttl"] == 63 and pkt["vlan_vid"] == 0
    back = outputs(tcp_in(h, "192.0.2.10", 40000))
    assert set(back) == {AT["r1"]}
    reply = back[AT["r1"]]
    assert reply["ipv4_dst"] == IP["r1"] and reply["ipv4_src"] == OUTSIDE
    assert reply["eth_src"] == gateway_mac(100) and reply["eth_dst"] == MAC["r1"] and reply["nw_ttl"] == 63


def test_only_replies_come_back_to_the_uplink_address() -> None:
    h = harness()
    assert not outputs(tcp_in(h, "192.0.2.10", 22))  # a new connection to the uplink address


def test_a_vm_with_a_floating_ip_leaves_as_it_and_is_reached_through_it() -> None:
    h = harness()
    out = outputs(tcp_out(h, "b1", dport=443))
    assert out[UPLINK]["ipv4_src"] == "192.0.2.50"
    inbound = outputs(tcp_in(h, "192.0.2.50", 80, sport=51000))
    assert set(inbound) == {AT["b1"]}
    assert inbound[AT["b1"]]["ipv4_dst"] == IP["b1"] and inbound[AT["b1"]]["eth_dst"] == MAC["b1"]
    reply = outputs(tcp_out(h, "b1", dport=51000, sport=80))
    assert reply[UPLINK]["ipv4_src"] == "192.0.2.50"


def test_acl_out_of_the_floating_ip_vm_limits_what_the_outside_reaches() -> None:
    h = harness()
    assert not outputs(tcp_in(h, "192.0.2.50", 22, sport=51001))


def test_the_outside_reaches_no_inside_address() -> None:
    h = harness()
    for dst in (IP["r1"], IP["b1"], "10.0.1.1"):
        assert not outputs(tcp_in(h, dst, 80))


def test_spoofed_inside_sources_drop() -> None:
    h = harness()
    tcp_out(h, "r1")
    assert not outputs(tcp_in(h, "192.0.2.10", 40000, src=IP["b1"]))


def test_arp_on_the_uplink_answers_only_the_uplink_address_and_floating_ips() -> None:
    h = harness()
    for target in ("192.0.2.10", "192.0.2.50"):
        (out,) = arp_request(h, target).outputs
        assert out[:2] == UPLINK
        assert out[2]["arp_op"] == 2 and out[2]["arp_spa"] == target and out[2]["arp_sha"] == uplink_mac("wan")
    for target in ("10.0.1.1", IP["r1"], "192.0.2.51", "192.0.2.1"):
        t = arp_request(h, target)
        assert not t.outputs and not t.to_controller


def test_a_reload_without_the_floating_ip_cuts_it_and_keeps_the_rest() -> None:
    h = harness()
    tcp_out(h, "r1")
    assert outputs(tcp_in(h, "192.0.2.50", 80, sport=51000))
    h.reload(model_from(NET.replace("floating_ips:\n  192.0.2.50: b1\n", "")))
    assert not outputs(tcp_in(h, "192.0.2.50", 80, sport=51000))
    assert not arp_request(h, "192.0.2.50").outputs
    assert set(outputs(tcp_in(h, "192.0.2.10", 40000))) == {AT["r1"]}
    assert outputs(tcp_out(h, "b1", dport=443))[UPLINK]["ipv4_src"] == "192.0.2.10"


def test_static_routes_win_over_the_default_route() -> None:
    text = NET.replace(
        "r: {networks: [red, blue], uplink: wan}",
        "r: {networks: [red, blue], uplink: wan, routes: [{prefix: 198.51.100.0/24, next_hop: 10.0.2.11}]}",
    )
    h = harness(text)
    out = outputs(tcp_out(h, "r1"))
    assert set(out) == {AT["b1"]}


def test_nat_on_another_host_than_the_vm_keeps_conntrack_at_both_ends_consistent() -> None:
    text = NET.replace("  b1: {switch: s2, port: 3,", "  b1: {switch: s1, port: 3,")
    h = Harness(model_from(text), {1: [1, 3, 10], 2: [9, 10]}, LINKS)
    h.packet_in(2, T_UPLINK_IN, 9, arp_reply(UPSTREAM_MAC, "192.0.2.1", uplink_mac("wan"), "192.0.2.10"))
    h.host_conntracks = conntracks_of_hosts({1: "hv1", 2: "hv2"})
    inbound = outputs(tcp_in(h, "192.0.2.50", 80, sport=51000))
    assert set(inbound) == {(1, 3)}  # DNAT on hv2, acl_out (stateful) on hv1
    reply = tcp_out(h, "b1", dport=51000, sport=80, at=(1, 3))
    assert outputs(reply)[UPLINK]["ipv4_src"] == "192.0.2.50"
    assert not outputs(tcp_in(h, "192.0.2.50", 22, sport=51001))
    out = outputs(tcp_out(h, "r1"))
    assert out[UPLINK]["ipv4_src"] == "192.0.2.10"
    assert set(outputs(tcp_in(h, "192.0.2.10", 40000))) == {AT["r1"]}
