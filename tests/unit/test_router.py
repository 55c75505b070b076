"""The router on simulated tables: gateway ARP and ping, routed delivery, TTL, MACs, LPM, isolation."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from typing import Any

import pytest

from apps.acl.plan import plan_of
from apps.router.app import RouterApp
from apps.router.resolve import MAX_MISSES, REFRESH, RETRY
from controller.config.routing import gateway_mac
from controller.fabric.topology import LinkKey
from controller.flows.pipeline import T_LEARN, T_ROUTE
from controller.flows.rules import DecTtl
from controller.ofmsg import flow_add_bytes
from controller.tools.sim import Trace, conntracks_of_hosts
from tests.unit.fabric_helpers import BCAST, Harness, model_from

NET = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks:
  red: {vlan: 100, gateway: 10.0.1.1/24}
  blue: {vlan: 200, gateway: 10.0.2.1/24}
  green: {vlan: 300, gateway: 10.0.3.1/24}
  other: {vlan: 400, gateway: 10.0.1.1/24}
vms:
  r1: {switch: s1, port: 1, network: red, ip: 10.0.1.11/24, mac: "02:00:00:00:01:11"}
  b1: {switch: s1, port: 2, network: blue, ip: 10.0.2.11/24, mac: "02:00:00:00:02:11"}
  b2: {switch: s2, port: 3, network: blue, ip: 10.0.2.12/24, mac: "02:00:00:00:02:12"}
  bx: {switch: s2, port: 5, network: blue, ip: 10.0.2.13/24}
  g1: {switch: s2, port: 4, network: green, ip: 10.0.3.11/24, mac: "02:00:00:00:03:11"}
  o1: {switch: s2, port: 6, network: other, ip: 10.0.1.11/24, mac: "02:00:00:00:04:11"}
  gw: {switch: s1, port: 7, network: blue, ip: 10.0.2.254/24, mac: "02:00:00:00:02:fe"}
routers:
  r: {networks: [red, blue], routes: [{prefix: 192.168.0.0/16, next_hop: 10.0.2.254}, {prefix: 192.168.7.0/24, next_hop: 10.0.2.12}]}
  s: {networks: [green, other]}
"""
PORTS = {1: [1, 2, 7, 10], 2: [3, 4, 5, 6, 10]}
LINKS = [LinkKey.of(1, 10, 2, 10)]
MAC = {
    "r1": "02:00:00:00:01:11",
    "b1": "02:00:00:00:02:11",
    "b2": "02:00:00:00:02:12",
    "g1": "02:00:00:00:03:11",
    "o1": "02:00:00:00:04:11",
    "gw": "02:00:00:00:02:fe",
}
AT = {"r1": (1, 1), "b1": (1, 2), "b2": (2, 3), "g1": (2, 4), "o1": (2, 6), "gw": (1, 7), "bx": (2, 5)}
IP = {
    "r1": "10.0.1.11",
    "b1": "10.0.2.11",
    "b2": "10.0.2.12",
    "g1": "10.0.3.11",
    "o1": "10.0.1.11",
    "gw": "10.0.2.254",
}
OFPAT_DEC_NW_TTL = 24
GW = {100: "10.0.1.1", 200: "10.0.2.1", 300: "10.0.3.1", 400: "10.0.1.1"}


def harness(text: str = NET) -> Harness:
    h = Harness(model_from(text), PORTS, LINKS)
    for vm, mac in MAC.items():  # every VM learned
        h.send(*AT[vm], mac, BCAST, eth_type=0x0806, arp_op=1, arp_sha=mac, arp_spa=IP[vm], arp_tpa="10.9.9.8")
    return h


def ping(h: Harness, src: str, dst_ip: str, ttl: int = 64, **extra: Any) -> Trace:
    vlan = h.core.model.network_by_name[h.core.model.vm_by_name[src].network].vlan
    fields: dict[str, Any] = dict(
        learn=False,
        ipv4_src=IP[src],
        ipv4_dst=dst_ip,
        ip_proto=1,
        icmpv4_type=8,
        icmpv4_code=0,
        nw_ttl=ttl,
    )
    fields.update(extra)
    return h.send(*AT[src], MAC[src], gateway_mac(vlan), **fields)


def delivered(trace: Trace) -> dict[tuple[int, int], dict[str, object]]:
    return {(d, p): pkt for d, p, pkt in trace.outputs}


def test_gateway_mac_is_derived_from_the_vlan() -> None:
    assert gateway_mac(100) == "0a:56:4d:4e:00:64"
    assert gateway_mac(4094) == "0a:56:4d:4e:0f:fe"


def test_gateway_answers_arp_in_the_datapath() -> None:
    h = harness()
    t = h.send(
        1,
        1,
        MAC["r1"],
        BCAST,
        learn=False,
        eth_type=0x0806,
        arp_op=1,
        arp_sha=MAC["r1"],
        arp_spa=IP["r1"],
        arp_tpa="10.0.1.1",
    )
    assert not t.to_controller
    (out,) = t.outputs
    assert out[:2] == (1, 1)
    reply = out[2]
    assert reply["arp_op"] == 2 and reply["arp_spa"] == "10.0.1.1" and reply["arp_sha"] == gateway_mac(100)
    assert reply["arp_tpa"] == IP["r1"] and reply["eth_dst"] == MAC["r1"] and reply["vlan_vid"] == 0


def test_gateway_answers_ping_in_the_datapath() -> None:
    h = harness()
    t = ping(h, "r1", "10.0.1.1")
    assert not t.to_controller
    (out,) = t.outputs
    assert out[:2] == (1, 1)
    reply = out[2]
    assert reply["icmpv4_type"] == 0 and reply["ipv4_src"] == "10.0.1.1" and reply["ipv4_dst"] == IP["r1"]
    assert reply["eth_src"] == gateway_mac(100) and reply["eth_dst"] == MAC["r1"]


def test_routed_on_one_switch_ttl_and_macs() -> None:
    h = harness()
    out = delivered(ping(h, "r1", IP["b1"]))
    assert set(out) == {AT["b1"]}
    pkt = out[AT["b1"]]
    assert pkt["nw_ttl"] == 63 and pkt["vlan_vid"] == 0
    assert pkt["eth_src"] == gateway_mac(200) and pkt["eth_dst"] == MAC["b1"]


def test_routed_across_switches_and_back() -> None:
    h = harness()
    t = ping(h, "r1", IP["b2"])
    out = delivered(t)
    assert set(out) == {AT["b2"]} and out[AT["b2"]]["nw_ttl"] == 63
    assert out[AT["b2"]]["eth_src"] == gateway_mac(200)
    back = h.send(
        *AT["b2"],
        MAC["b2"],
        gateway_mac(200),
        learn=False,
        ipv4_src=IP["b2"],
        ipv4_dst=IP["r1"],
        ip_proto=1,
        icmpv4_type=0,
        nw_ttl=64,
    )
    out = delivered(back)
    assert set(out) == {AT["r1"]}
    assert out[AT["r1"]]["eth_src"] == gateway_mac(100) and out[AT["r1"]]["nw_ttl"] == 63


def test_routed_frames_are_not_learned() -> None:
    h = harness()
    t = ping(h, "r1", IP["b2"])
    assert not any(rule.table == T_LEARN for dpid, rule in t.matched if dpid == 1)  # past learn where routed
    assert not t.to_controller  # and never copied for learning anywhere


@pytest.mark.parametrize("ttl", [0, 1])
def test_ttl_expiry_drops(ttl: int) -> None:
    h = harness()
    t = ping(h, "r1", IP["b2"], ttl=ttl)
    assert not t.outputs and t.ttl_expired == [1]


def test_ttl_two_still_delivers_with_one() -> None:
    out = delivered(ping(harness(), "r1", IP["b1"], ttl=2))
    assert out[AT["b1"]]["nw_ttl"] == 1


def test_static_routes_longest_prefix_first() -> None:
    h = harness()
    out = delivered(ping(h, "r1", "192.168.1.5"))
    assert set(out) == {AT["gw"]} and out[AT["gw"]]["eth_dst"] == MAC["gw"]
    assert out[AT["gw"]]["ipv4_dst"] == "192.168.1.5"
    out = delivered(ping(h, "r1", "192.168.7.5"))
    assert set(out) == {AT["b2"]} and out[AT["b2"]]["eth_dst"] == MAC["b2"]


def test_unrouted_and_unknown_addresses_drop() -> None:
    h = harness()
    assert not ping(h, "r1", "172.16.0.1").outputs  # no route
    assert not ping(h, "r1", "10.0.2.77").outputs  # in blue's subnet, no such VM
    assert not ping(h, "r1", "10.0.2.13").outputs  # bx: no mac declared, not resolved yet


def test_networks_on_different_routers_stay_isolated() -> None:
    h = harness()
    assert not ping(h, "r1", IP["g1"]).outputs  # green is on router s
    assert not ping(h, "g1", IP["b2"]).outputs
    out = delivered(ping(h, "g1", "10.0.1.11"))
    assert set(out) == {AT["o1"]}  # red's r1 has that address too: router s reaches its own o1 only


def test_a_network_without_router_answers_for_its_gateway_only() -> None:
    text = NET.replace("  s: {networks: [green, other]}\n", "")
    h = harness(text)
    assert ping(h, "g1", "10.0.3.1").outputs
    assert not ping(h, "g1", "10.0.1.11").outputs


def _router(h: Harness) -> RouterApp:
    app = h.core.app("router")
    assert isinstance(app, RouterApp)
    return app


def _arp_reply(src_mac: str, src_ip: str, vlan: int) -> bytes:
    body = struct.pack(
        "!HHBBH6s4s6s4s",
        1,
        0x0800,
        6,
        4,
        2,
        bytes.fromhex(src_mac.replace(":", "")),
        IPv4Address(src_ip).packed,
        bytes.fromhex(gateway_mac(vlan).replace(":", "")),
        IPv4Address(GW[vlan]).packed,
    )
    return (
        bytes.fromhex(gateway_mac(vlan).replace(":", ""))
        + bytes.fromhex(src_mac.replace(":", ""))
        + struct.pack("!HHH", 0x8100, vlan, 0x0806)
        + body
    )


def test_a_vm_without_mac_is_resolved_by_arp_from_the_gateway() -> None:
    h = harness()
    effects = h.tick()
    requests = [(d, p) for d, p, _ in effects.frames if p != 10]  # not the LLDP probes
    assert requests == [AT["bx"]]
    h.clock.now += RETRY / 2
    assert not h.tick().frames  # rate-limited
    # the switch traps the answer; the core learns the MAC and routes to it
    answer = dict(
        eth_type=0x0806,
        arp_op=2,
        arp_sha="02:00:00:00:02:13",
        arp_spa="10.0.2.13",
        arp_tpa="10.0.2.1",
        arp_tha=gateway_mac(200),
    )
    t = h.send(*AT["bx"], "02:00:00:00:02:13", gateway_mac(200), **answer)
    assert any(rule.table == T_ROUTE and rule.actions for _, rule in t.matched)  # trapped (and learned by l2)
    h.packet_in(2, T_ROUTE, 5, _arp_reply("02:00:00:00:02:13", "10.0.2.13", 200))
    assert _router(h).resolver.found == {("blue", IPv4Address("10.0.2.13")): "02:00:00:00:02:13"}
    out = delivered(ping(h, "r1", "10.0.2.13"))
    assert set(out) == {AT["bx"]} and out[AT["bx"]]["eth_dst"] == "02:00:00:00:02:13"


def test_an_answer_from_another_port_is_ignored() -> None:
    h = harness()
    h.packet_in(2, T_ROUTE, 3, _arp_reply("02:00:00:00:02:99", "10.0.2.13", 200))
    assert not _router(h).resolver.found


def test_a_silent_vm_is_forgotten_after_unanswered_refreshes() -> None:
    h = harness()
    h.tick()
    h.packet_in(2, T_ROUTE, 5, _arp_reply("02:00:00:00:02:13", "10.0.2.13", 200))
    for _ in range(MAX_MISSES + 1):
        h.clock.now += REFRESH
        h.tick()
    assert not _router(h).resolver.found
    assert not ping(h, "r1", "10.0.2.13").outputs


def test_a_restarted_controller_adopts_found_macs() -> None:
    h = harness()
    h.tick()
    h.packet_in(2, T_ROUTE, 5, _arp_reply("02:00:00:00:02:13", "10.0.2.13", 200))
    held = list(h.flows[2].values())
    fresh = Harness(model_from(NET), PORTS, LINKS)
    fresh.reconcile(2, held)
    assert _router(fresh).resolver.found == {("blue", IPv4Address("10.0.2.13")): "02:00:00:00:02:13"}


def test_routed_replies_are_replies_when_only_one_network_is_tracked() -> None:
    text = NET.replace(
        "  b1: {switch: s1, port: 2, network: blue,", "  b1: {switch: s1, port: 2, network: blue, acl_in: [track],"
    )
    text += "acls:\n  track:\n    - {action: allow, stateful: true}\n"
    plan = plan_of(model_from(text))
    assert 200 in plan.tracked_vlans and 100 not in plan.tracked_vlans  # blue is tracked, red is not
    for hosts in (None, {dpid: f"hv{dpid}" for dpid in PORTS}):
        h = harness(text)
        if hosts is not None:
            h.host_conntracks = conntracks_of_hosts(hosts)
        t = ping(h, "r1", IP["b2"])
        assert {(d, p) for d, p, _ in t.outputs} == {AT["b2"]}
        reply = h.send(
            *AT["b2"],
            MAC["b2"],
            gateway_mac(200),
            learn=False,
            ipv4_src=IP["b2"],
            ipv4_dst=IP["r1"],
            ip_proto=1,
            icmpv4_type=0,
            icmpv4_code=0,
        )
        assert {(d, p) for d, p, _ in reply.outputs} == {AT["r1"]}, hosts  # tracked where delivered: a reply


def test_routed_rules_serialise_with_dec_nw_ttl() -> None:
    h = harness()
    rule = next(r for r in h.flows[1].values() if r.table == T_ROUTE and any(isinstance(a, DecTtl) for a in r.actions))
    wire = flow_add_bytes(rule)
    assert struct.pack("!HH", OFPAT_DEC_NW_TTL, 8) in wire  # the action header (type 24, length 8)
