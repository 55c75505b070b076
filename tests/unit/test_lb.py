"""The load balancer on simulated tables: VIP ARP, DNAT to healthy backends, un-NAT of replies."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address

from apps.lb.health import BackendHealth
from apps.lb.probe import vip_mac
from controller.fabric.topology import LinkKey
from controller.tools.sim import Trace, conntracks_of_hosts
from tests.unit.fabric_helpers import Harness, model_from

NET = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks: {red: {vlan: 100}}
vms:
  client: {switch: s1, port: 1, network: red, ip: 10.0.0.1/24, mac: "02:00:00:00:00:01"}
  web1: {switch: s1, port: 2, network: red, ip: 10.0.0.11/24, mac: "02:00:00:00:00:11"}
  web2: {switch: s2, port: 3, network: red, ip: 10.0.0.12/24, mac: "02:00:00:00:00:12"}
load_balancers:
  web:
    vip: 10.0.0.100
    network: red
    protocol: tcp
    port: 80
    backends: [web1, {vm: web2, weight: 3}]
"""
VIP = "10.0.0.100"
CLIENT = "02:00:00:00:00:01"
WHERE = {"10.0.0.11": (1, 2), "10.0.0.12": (2, 3)}
MACS = {"10.0.0.11": "02:00:00:00:00:11", "10.0.0.12": "02:00:00:00:00:12"}


def harness() -> Harness:
    h = Harness(model_from(NET), {1: [1, 2, 10], 2: [3, 10]}, [LinkKey.of(1, 10, 2, 10)])
    for mac, (dpid, port) in [(CLIENT, (1, 1))] + [(MACS[ip], WHERE[ip]) for ip in MACS]:
        h.send(
            dpid,
            port,
            mac,
            "ff:ff:ff:ff:ff:ff",
            eth_type=0x0806,
            arp_op=1,
            arp_sha=mac,
            arp_spa="10.0.0.%d" % int(mac[-2:]),
            arp_tpa="10.0.0.254",
        )
    return h


def syn(h: Harness, sport: int) -> Trace:
    return h.send(
        1,
        1,
        CLIENT,
        vip_mac(VIP),
        learn=False,
        ipv4_src="10.0.0.1",
        ipv4_dst=VIP,
        ip_proto=6,
        tcp_src=sport,
        tcp_dst=80,
    )


def test_vip_arp_is_answered_by_the_switch() -> None:
    h = harness()
    t = h.send(
        1,
        1,
        CLIENT,
        "ff:ff:ff:ff:ff:ff",
        learn=False,
        eth_type=0x0806,
        arp_op=1,
        arp_sha=CLIENT,
        arp_spa="10.0.0.1",
        arp_tpa=VIP,
    )
    assert [(d, p) for d, p, _ in t.outputs] == [(1, 1)] and not t.to_controller
    reply = t.outputs[0][2]
    assert (
        reply["arp_op"],
        reply["arp_spa"],
        reply["arp_sha"],
        reply["arp_tpa"],
        reply["arp_tha"],
        reply["eth_dst"],
        reply["eth_src"],
    ) == (2, VIP, vip_mac(VIP), "10.0.0.1", CLIENT, CLIENT, vip_mac(VIP))


def test_connections_go_to_backends_by_weight_and_replies_come_from_the_vip() -> None:
    h = harness()
    landed: Counter[str] = Counter()
    for sport in range(30000, 30200):
        t = syn(h, sport)
        ((d, p, pkt),) = t.outputs
        ip = str(pkt["ipv4_dst"])
        assert (d, p) == WHERE[ip] and pkt["eth_dst"] == MACS[ip] and pkt["tcp_dst"] == 80
        landed[ip] += 1
        back = h.send(
            d, p, MACS[ip], CLIENT, learn=False, ipv4_src=ip, ipv4_dst="10.0.0.1", ip_proto=6, tcp_src=80, tcp_dst=sport
        )
        ((bd, bp, bpkt),) = back.outputs
        assert (bd, bp) == (1, 1) and bpkt["ipv4_src"] == VIP and bpkt["tcp_src"] == 80
    assert 0.6 < landed["10.0.0.12"] / 200 < 0.9, landed


def test_a_down_backend_gets_no_new_connections_and_keeps_old_ones() -> None:
    h = harness()
    first = {sport: str(syn(h, sport).outputs[0][2]["ipv4_dst"]) for sport in range(31000, 31040)}
    slot = h.core.app("lb").runtime.checker._slots  # type: ignore[attr-defined]
    slot = slot[("web", IPv4Address("10.0.0.12"))]  # as after `fall` failed checks
    slot.health = BackendHealth(up=False)
    h.recompute()
    for sport in range(32000, 32040):
        assert syn(h, sport).outputs[0][2]["ipv4_dst"] == "10.0.0.11"
    for sport, ip in first.items():  # established: conntrack keeps each on its backend
        assert syn(h, sport).outputs[0][2]["ipv4_dst"] == ip


def to_vip_from_web2(h: Harness, sport: int, dport: int) -> Trace:
    """A TCP segment from backend web2 (10.0.0.12) to the VIP, ports ``sport`` -> ``dport``."""
    dpid, port = WHERE["10.0.0.12"]
    return h.send(
        dpid,
        port,
        MACS["10.0.0.12"],
        vip_mac(VIP),
        learn=False,
        ipv4_src="10.0.0.12",
        ipv4_dst=VIP,
        ip_proto=6,
        tcp_src=sport,
        tcp_dst=dport,
    )


def test_a_backend_reaches_its_own_vip_and_gets_the_reply_from_the_vip() -> None:
    h = harness()
    me, (dpid, port) = MACS["10.0.0.12"], WHERE["10.0.0.12"]
    for sport in range(33000, 33100):  # a connection the group sends back to the backend itself
        request = to_vip_from_web2(h, sport, 80)
        assert len(request.outputs) == 1, request.outputs
        ((d, p, pkt),) = request.outputs
        if pkt["ipv4_dst"] == "10.0.0.12":
            break
    else:
        raise AssertionError("the group never chose the connecting backend")
    assert (d, p) == (dpid, port)  # hairpin: back out of the port it came in on
    assert (pkt["ipv4_src"], pkt["tcp_src"], pkt["tcp_dst"], pkt["eth_src"], pkt["eth_dst"], pkt["vlan_vid"]) == (
        VIP,
        sport,
        80,
        vip_mac(VIP),
        me,
        0,
    )
    reply = to_vip_from_web2(h, 80, sport)
    ((d, p, back),) = reply.outputs
    assert (d, p) == (dpid, port)
    assert (back["ipv4_src"], back["tcp_src"], back["ipv4_dst"], back["tcp_dst"]) == (VIP, 80, "10.0.0.12", sport)
    again = to_vip_from_web2(h, sport, 80)
    assert [(o[0], o[1], o[2]["ipv4_src"], o[2]["ipv4_dst"]) for o in again.outputs] == [
        (dpid, port, VIP, "10.0.0.12")
    ]  # later packets of the connection take the same way


TWIN = """
switches: {s1: {dpid: 1}}
networks: {red: {vlan: 100}, blue: {vlan: 200}}
vms:
  rc: {switch: s1, port: 1, network: red, ip: 10.0.0.1/24, mac: "02:00:00:00:01:01"}
  rb: {switch: s1, port: 2, network: red, ip: 10.0.0.12/24, mac: "02:00:00:00:01:12"}
  bc: {switch: s1, port: 3, network: blue, ip: 10.0.0.1/24, mac: "02:00:00:00:02:01"}
  bb: {switch: s1, port: 4, network: blue, ip: 10.0.0.12/24, mac: "02:00:00:00:02:12"}
load_balancers:
  red-web: {vip: 10.0.0.100, network: red, protocol: tcp, port: 80, backends: [rb]}
  blue-web: {vip: 10.0.0.100, network: blue, protocol: tcp, port: 80, backends: [bb]}
"""


def test_same_backend_address_in_two_networks_goes_to_each_networks_own_backend() -> None:
    h = Harness(model_from(TWIN), {1: [1, 2, 3, 4]})
    for port, mac, ip in (
        (1, "02:00:00:00:01:01", "10.0.0.1"),
        (2, "02:00:00:00:01:12", "10.0.0.12"),
        (3, "02:00:00:00:02:01", "10.0.0.1"),
        (4, "02:00:00:00:02:12", "10.0.0.12"),
    ):
        h.send(
            1, port, mac, "ff:ff:ff:ff:ff:ff", eth_type=0x0806, arp_op=1, arp_sha=mac, arp_spa=ip, arp_tpa="10.0.0.254"
        )
    for client_port, client_mac, backend_port, backend_mac in (
        (1, "02:00:00:00:01:01", 2, "02:00:00:00:01:12"),
        (3, "02:00:00:00:02:01", 4, "02:00:00:00:02:12"),
    ):
        t = h.send(
            1,
            client_port,
            client_mac,
            vip_mac(VIP),
            learn=False,
            ipv4_src="10.0.0.1",
            ipv4_dst=VIP,
            ip_proto=6,
            tcp_src=34000,
            tcp_dst=80,
        )
        assert [(d, p, pkt["eth_dst"]) for d, p, pkt in t.outputs] == [(1, backend_port, backend_mac)]


def test_balanced_connections_work_when_client_and_backend_are_on_different_hosts() -> None:
    h = harness()
    h.host_conntracks = conntracks_of_hosts({1: "hv1", 2: "hv2"})
    served: Counter[str] = Counter()
    for sport in range(31000, 31040):
        ((d, p, pkt),) = syn(h, sport).outputs
        ip = str(pkt["ipv4_dst"])
        served[ip] += 1
        for _ in range(2):  # the reply, and the reply to the client's next segment
            back = h.send(
                d,
                p,
                MACS[ip],
                CLIENT,
                learn=False,
                ipv4_src=ip,
                ipv4_dst="10.0.0.1",
                ip_proto=6,
                tcp_src=80,
                tcp_dst=sport,
            )
            ((bd, bp, bpkt),) = back.outputs
            assert (bd, bp) == (1, 1) and bpkt["ipv4_src"] == VIP and bpkt["tcp_src"] == 80  # un-NATed on hv1
            ((d2, p2, again),) = syn(h, sport).outputs
            assert (d2, p2) == (d, p) and again["ipv4_dst"] == ip  # pinned to its backend
    assert served["10.0.0.12"] > 0  # some crossed to the other host


def test_replies_of_balanced_connections_skip_the_lists_on_one_host_and_across_hosts() -> None:
    text = (
        NET.replace('mac: "02:00:00:00:00:01"}', 'mac: "02:00:00:00:00:01", acl_out: [deny-all]}')
        .replace('mac: "02:00:00:00:00:12"}', 'mac: "02:00:00:00:00:12", acl_in: [deny-all]}')
        .replace("    backends: [web1, {vm: web2, weight: 3}]", "    backends: [web2]")
        + "acls: {deny-all: [{action: deny}]}\n"
    )
    for hosts in (None, {1: "hv1", 2: "hv2"}):
        h = Harness(model_from(text), {1: [1, 2, 10], 2: [3, 10]}, [LinkKey.of(1, 10, 2, 10)])
        if hosts:
            h.host_conntracks = conntracks_of_hosts(hosts)
        for mac, ip, (dpid, port) in ((CLIENT, "10.0.0.1", (1, 1)), (MACS["10.0.0.12"], "10.0.0.12", (2, 3))):
            h.send(dpid, port, mac, "ff:ff:ff:ff:ff:ff", eth_type=0x0806, arp_op=1, arp_sha=mac, arp_spa=ip,
                   arp_tpa="10.0.0.254")  # fmt: skip
        ((d, p, pkt),) = syn(h, 32000).outputs
        assert (d, p) == (2, 3) and pkt["ipv4_dst"] == "10.0.0.12"
        back = h.send(
            2, 3, MACS["10.0.0.12"], CLIENT, learn=False, ipv4_src="10.0.0.12", ipv4_dst="10.0.0.1", ip_proto=6,
            tcp_src=80, tcp_dst=32000,
        )  # fmt: skip
        assert [(bd, bp, bpkt["ipv4_src"]) for bd, bp, bpkt in back.outputs] == [(1, 1, VIP)], hosts
        alone = h.send(
            2, 3, MACS["10.0.0.12"], CLIENT, learn=False, ipv4_src="10.0.0.12", ipv4_dst="10.0.0.1", ip_proto=6,
            tcp_src=80, tcp_dst=32001,
        )  # fmt: skip
        assert alone.outputs == [], hosts  # not a reply: the lists deny it
