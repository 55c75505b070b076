"""Load-balancer VIPs reached from routed networks, on simulated tables: routed DNAT, spread, replies from the VIP."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from apps.acl.plan import plan_of
from apps.lb.routed import routed_vips
from apps.lb.rules import group_id
from controller.config.routing import gateway_mac
from controller.fabric.topology import LinkKey
from controller.flows.rules import Ct
from controller.tools.sim import Trace, conntracks_of_hosts
from controller.tools.trace import build_fabric, trace
from tests.unit.fabric_helpers import BCAST, Harness, model_from

NET = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks:
  red: {vlan: 100, gateway: 10.0.1.1/24}
  blue: {vlan: 200, gateway: 10.0.2.1/24}
  green: {vlan: 300, gateway: 10.0.3.1/24}
vms:
  client: {switch: s1, port: 1, network: red, ip: 10.0.1.11/24, mac: "02:00:00:00:01:11"}
  web1: {switch: s1, port: 2, network: blue, ip: 10.0.2.11/24, mac: "02:00:00:00:02:11"}
  web2: {switch: s2, port: 3, network: blue, ip: 10.0.2.12/24, mac: "02:00:00:00:02:12"}
  outsider: {switch: s1, port: 4, network: green, ip: 10.0.3.11/24, mac: "02:00:00:00:03:11"}
routers:
  r: {networks: [red, blue]}
load_balancers:
  web: {vip: 10.0.2.100, network: blue, protocol: tcp, port: 80, backends: [web1, web2]}
"""
VIP = "10.0.2.100"
CLIENT = ("02:00:00:00:01:11", "10.0.1.11", (1, 1))
OUTSIDER = ("02:00:00:00:03:11", "10.0.3.11", (1, 4))
BACKENDS = {"10.0.2.11": ("02:00:00:00:02:11", (1, 2)), "10.0.2.12": ("02:00:00:00:02:12", (2, 3))}
PORTS = {1: [1, 2, 4, 10], 2: [3, 10]}


def harness(text: str = NET) -> Harness:
    h = Harness(model_from(text), PORTS, [LinkKey.of(1, 10, 2, 10)])
    hosts = [CLIENT, OUTSIDER] + [(mac, ip, at) for ip, (mac, at) in BACKENDS.items()]
    for mac, ip, (dpid, port) in hosts:  # every VM learned
        h.send(dpid, port, mac, BCAST, eth_type=0x0806, arp_op=1, arp_sha=mac, arp_spa=ip, arp_tpa="10.9.9.9")
    return h


def syn(h: Harness, sport: int, sender: tuple[str, str, tuple[int, int]] = CLIENT, vlan: int = 100) -> Trace:
    mac, ip, at = sender
    fields: dict[str, Any] = dict(ipv4_src=ip, ipv4_dst=VIP, ip_proto=6, tcp_src=sport, tcp_dst=80, nw_ttl=64)
    return h.send(*at, mac, gateway_mac(vlan), learn=False, **fields)


def answer(h: Harness, backend: str, sport: int) -> Trace:
    mac, at = BACKENDS[backend]
    fields: dict[str, Any] = dict(
        ipv4_src=backend, ipv4_dst=CLIENT[1], ip_proto=6, tcp_src=80, tcp_dst=sport, nw_ttl=64
    )
    return h.send(*at, mac, gateway_mac(200), learn=False, **fields)


@pytest.mark.parametrize("hosts", [None, {1: "hv1", 2: "hv2"}])
def test_a_routed_client_reaches_the_vip_spread_over_backends_and_replies_come_from_the_vip(
    hosts: dict[int, str] | None,
) -> None:
    h = harness()
    if hosts is not None:
        h.host_conntracks = conntracks_of_hosts(hosts)
    landed: Counter[str] = Counter()
    for sport in range(30000, 30060):
        ((d, p, pkt),) = syn(h, sport).outputs
        backend = str(pkt["ipv4_dst"])
        mac, at = BACKENDS[backend]
        assert (d, p) == at and pkt["tcp_dst"] == 80 and pkt["ipv4_src"] == CLIENT[1]
        assert (pkt["eth_src"], pkt["eth_dst"], pkt["nw_ttl"], pkt["vlan_vid"]) == (gateway_mac(200), mac, 63, 0)
        landed[backend] += 1
        for _ in range(2):  # the reply, then the client's next segment and its reply
            ((bd, bp, back),) = answer(h, backend, sport).outputs
            assert (bd, bp) == CLIENT[2], hosts
            assert (back["ipv4_src"], back["tcp_src"], back["ipv4_dst"], back["tcp_dst"]) == (
                VIP,
                80,
                CLIENT[1],
                sport,
            )
            assert (back["eth_src"], back["eth_dst"], back["nw_ttl"]) == (gateway_mac(100), CLIENT[0], 63)
            ((again_d, again_p, again),) = syn(h, sport).outputs
            assert (again_d, again_p) == at and again["ipv4_dst"] == backend  # pinned to its backend
    assert set(landed) == set(BACKENDS), landed


def test_a_network_not_on_the_router_does_not_reach_the_vip() -> None:
    h = harness()
    for sport in range(31000, 31010):
        assert syn(h, sport, OUTSIDER, vlan=300).outputs == []


def test_a_reply_that_answers_no_balanced_connection_is_not_un_nated() -> None:
    h = harness()
    ((_, _, back),) = answer(h, "10.0.2.11", 31500).outputs  # no connection: plainly routed
    assert back["ipv4_src"] == "10.0.2.11"


def test_routed_clients_networks_are_balanced_and_groups_are_unique() -> None:
    model = model_from(NET)
    plan = plan_of(model)
    assert {100, 200} <= plan.balanced_vlans and 300 not in plan.balanced_vlans
    assert {100, 200} <= plan.tracked_vlans
    (vip,) = routed_vips(model)
    assert (vip.lb.name, vip.client.name, [str(b.ip) for b in vip.backends]) == (
        "web",
        "red",
        ["10.0.2.11", "10.0.2.12"],
    )
    assert vip.group != group_id(vip.lb) and vip.group >> 24 == group_id(vip.lb) >> 24
    assert routed_vips(model_from(NET)) == (vip,)  # stable


def test_an_ip_backend_that_is_no_vm_is_left_out_of_the_routed_group() -> None:
    text = NET.replace("backends: [web1, web2]", "backends: [web1, {ip: 10.0.2.50}]")
    (vip,) = routed_vips(model_from(text))
    assert [str(b.ip) for b in vip.backends] == ["10.0.2.11"]


def test_vmn_trace_follows_a_routed_client_to_the_vip_and_back() -> None:
    fabric = build_fabric(model_from(NET))
    result = trace(fabric, "client", VIP, "tcp", 80)
    assert result.connects, result.render()
    assert any(line.startswith("routed by r at s1: red") for line in result.forward.routed), result.render()
    assert any(line.startswith("routed by r") and "blue" in line for line in result.reply.routed)  # type: ignore[union-attr]
    assert not trace(fabric, "outsider", VIP, "tcp", 80).forward.delivered


def test_connection_counts_add_up_over_a_balancers_groups_on_a_switch() -> None:
    text = NET.replace(
        "  outsider:",
        '  neighbour: {switch: s1, port: 5, network: blue, ip: 10.0.2.21/24, mac: "02:00:00:00:02:21"}\n  outsider:',
    )
    h = Harness(model_from(text), {1: [1, 2, 4, 5, 10], 2: [3, 10]}, [LinkKey.of(1, 10, 2, 10)])
    groups = h.groups[1]
    (routed,) = routed_vips(h.core.model)
    own = group_id(routed.lb)
    assert {own, routed.group} <= set(groups)  # s1 serves blue's own clients and red's
    for gid in (own, routed.group):
        nats = [a.nat for _, _, actions in groups[gid].buckets for a in actions if isinstance(a, Ct)]
        assert [n.dst for n in nats if n is not None] == ["10.0.2.11", "10.0.2.12"]
    h.core.app("lb").group_stats(1, groups, {own: [3, 4], routed.group: [5, 6]})  # type: ignore[attr-defined]
    got = {s.labels["backend"]: s.value for m in h.core.metrics.registry.collect() for s in m.samples
           if s.name == "vmn_lb_backend_connections_total"}  # fmt: skip
    assert got == {"10.0.2.11": 8, "10.0.2.12": 10}
