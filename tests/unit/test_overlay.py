"""Hosts joined by tunnels, on simulated tables: where packets go between hypervisors.

Three hosts (``hv1``..``hv3``) each end their tunnels on ``br-int``
(s1..s3); hv1 also has s4, patched to s1. Every tunnel crosses as a
tunnel in the simulator (the VNI as ``tunnel_id``) and every host has its
own conntrack.
"""

from __future__ import annotations

from typing import Any

import pytest

from controller.config import ConfigError
from controller.flows.rules import SetField
from controller.tools.fakefabric import FakeFabric
from controller.tools.sim import Trace
from controller.tools.trace import build_fabric, trace
from tests.unit.fabric_helpers import BCAST, model_from

NET = """
hosts:
  hv1: {tunnel_ip: 172.31.0.1, switch: s1}
  hv2: {tunnel_ip: 172.31.0.2, switch: s2}
  hv3: {tunnel_ip: 172.31.0.3, switch: s3}
overlay: {type: %(kind)s}
switches:
  s1: {dpid: 1, bridge: br-int}
  s2: {dpid: 2, bridge: br-int}
  s3: {dpid: 3, bridge: br-int}
  s4: {dpid: 4, bridge: br-vm, host: hv1}
links: [[s1:20, s4:20]]
networks:
  red: {vlan: 100, vni: 5100%(red)s}
  blue: {vlan: 200}
vms:
  a1: {switch: s4, port: 1, network: red, ip: 10.0.0.1/24, mac: "02:00:00:00:00:01"}
  a2: {switch: s2, port: 1, network: red, ip: 10.0.0.2/24, mac: "02:00:00:00:00:02"%(a2)s}
  a3: {switch: s3, port: 1, network: red, ip: 10.0.0.3/24, mac: "02:00:00:00:00:03"}
  b1: {switch: s1, port: 2, network: blue, ip: 10.0.1.1/24, mac: "02:00:00:00:01:01"}
  b2: {switch: s2, port: 2, network: blue, ip: 10.0.1.2/24, mac: "02:00:00:00:01:02"}
  b3: {switch: s3, port: 2, network: blue, ip: 10.0.1.3/24, mac: "02:00:00:00:01:03"}
acls:
  web:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow, stateful: true}
    - {match: {ip_proto: icmp}, action: allow}
    - {action: deny}
load_balancers:
  lb:
    vip: 10.0.0.100
    network: red
    protocol: tcp
    port: 80
    backends: [a2, a3]
"""
RED = ("a1", "a2", "a3")
BLUE = ("b1", "b2", "b3")


def fabric(kind: str = "vxlan", red: str = "", a2: str = "") -> FakeFabric:
    """Every switch up with its declared and tunnel ports, every link and tunnel up, every VM learned."""
    return build_fabric(model_from(NET % {"kind": kind, "red": red, "a2": a2})).fake


def where(f: FakeFabric, vm: str) -> tuple[int, int]:
    model = f.core.model
    v = model.vm_by_name[vm]
    port = v.port
    assert isinstance(port, int)
    return model.switch_by_name[v.switch].dpid, port


def ip_of(f: FakeFabric, vm: str) -> str:
    addr = f.core.model.vm_by_name[vm].ip
    assert addr is not None
    return str(addr.ip)


def mac_of(f: FakeFabric, vm: str) -> str:
    mac = f.core.model.vm_by_name[vm].mac
    assert mac is not None
    return mac


def send(f: FakeFabric, src: str, dst_mac: str, **fields: Any) -> Trace:
    dpid, port = where(f, src)
    pkt: dict[str, Any] = {"eth_src": mac_of(f, src), "eth_dst": dst_mac, "vlan_vid": 0, **fields}
    return f.network().send(dpid, port, pkt)


def arp(f: FakeFabric, src: str) -> Trace:
    """A broadcast ARP request from ``src``."""
    return send(
        f, src, BCAST, eth_type=0x0806, arp_op=1, arp_sha=mac_of(f, src), arp_spa=ip_of(f, src), arp_tpa="10.9.9.9"
    )


def ping(f: FakeFabric, src: str, dst: str) -> Trace:
    return send(
        f,
        src,
        mac_of(f, dst),
        eth_type=0x0800,
        ipv4_src=ip_of(f, src),
        ipv4_dst=ip_of(f, dst),
        ip_proto=1,
        icmpv4_type=8,
    )


def test_tunnels_are_links_between_the_hosts_tunnel_switches() -> None:
    f = fabric()
    view = f.core.view()
    assert len(view.tunnels) == 3
    assert {(link.a_dpid, link.b_dpid) for link in view.tunnels} == {(1, 2), (1, 3), (2, 3)}
    assert view.crossing(1).tunnels and not view.crossing(4).tunnels
    assert view.crossing(2).key(100) == 5100 and view.crossing(2).key(200) == 200


def test_same_network_pairs_reach_each_other_across_hosts_and_no_cross_network_pair_does() -> None:
    f = fabric()
    for group in (RED, BLUE):
        for a in group:
            for b in group:
                if a != b:
                    assert where(f, b) in ping(f, a, b).delivered(), (a, b)
    for a in RED:
        for b in BLUE:
            assert where(f, b) not in send(f, a, mac_of(f, b), eth_type=0x0800).delivered()
            assert where(f, a) not in send(f, b, mac_of(f, a), eth_type=0x0800).delivered()


def test_unicast_goes_straight_to_the_destination_host_keyed_by_the_vni() -> None:
    f = fabric()
    t = ping(f, "a2", "a3")
    assert [d for d, _ in t.arrivals] == [2, 3], "one tunnel hop, no transit host"
    sets = [a for d, r in t.matched if d == 2 for a in r.actions if isinstance(a, SetField)]
    assert SetField("tunnel_id", 5100) in sets


def test_a_broadcast_reaches_its_network_on_every_host_once_by_head_end_replication() -> None:
    f = fabric()
    t = arp(f, "b2")
    assert t.delivered() == {where(f, "b1"), where(f, "b3")}
    assert sorted(d for d, _ in t.arrivals) == [1, 2, 3], "s2 sends one copy to each other host"
    crossed = {(link.a_dpid, link.b_dpid) for link in t.link_crossings}
    assert crossed == {(1, 2), (2, 3)}, "no host relays another's flood"
    assert not t.loop
    t = arp(f, "a3")
    assert t.delivered() == {where(f, "a1"), where(f, "a2")}
    assert sorted(d for d, _ in t.arrivals) == [1, 2, 3, 4]


def test_a_network_floods_only_to_hosts_with_members() -> None:
    text = NET % {"kind": "vxlan", "red": "", "a2": ""}
    text = text.replace("a3: {switch: s3, port: 1, network: red", "a3: {switch: s2, port: 3, network: red")
    f = build_fabric(model_from(text)).fake
    t = arp(f, "a2")
    assert 3 not in {d for d, _ in t.arrivals}, "hv3 has no red VM"
    assert t.delivered() == {where(f, "a1"), where(f, "a3")}


def test_a_frame_with_another_networks_vni_is_dropped_at_the_tunnel() -> None:
    f = fabric()
    view = f.core.view()
    tunnel = next(link for link in view.tunnels if {link.a_dpid, link.b_dpid} == {1, 2})
    port = tunnel.port_on(2)
    frame = {"eth_src": "02:00:00:00:00:99", "eth_dst": mac_of(f, "a2"), "eth_type": 0x0800}
    good = (
        f.network()
        .switches[2]
        .process({**frame, "in_port": port, "vlan_vid": 0x1000 | 100, "tunnel_id": 5100}, Trace())
    )
    bad = (
        f.network().switches[2].process({**frame, "in_port": port, "vlan_vid": 0x1000 | 100, "tunnel_id": 200}, Trace())
    )
    assert good and not bad


def test_geneve_works_the_same_way() -> None:
    f = fabric("geneve")
    assert len(f.core.view().tunnels) == 3
    assert where(f, "a3") in ping(f, "a1", "a3").delivered()


def test_stateful_policy_and_the_load_balancer_hold_across_hosts() -> None:
    f = build_fabric(model_from(NET % {"kind": "vxlan", "red": "", "a2": ", acl_out: [web]"}))
    result = trace(f, "a1", "10.0.0.2", "tcp", 80)
    assert result.forward.delivered and result.reply is not None and result.reply.delivered
    assert not trace(f, "a1", "10.0.0.2", "tcp", 22).forward.delivered
    assert trace(f, "a1", "10.0.0.2", "icmp", None).forward.delivered
    lb = trace(f, "a1", "10.0.0.100", "tcp", 80)
    assert lb.forward.delivered and lb.reply is not None and lb.reply.delivered


def test_a_dead_tunnel_moves_unicast_to_the_backup_through_the_third_host() -> None:
    f = fabric()
    tunnel = next(link for link in f.core.view().tunnels if {link.a_dpid, link.b_dpid} == {2, 3})
    down = {(tunnel.a_dpid, tunnel.a_port), (tunnel.b_dpid, tunnel.b_port)}
    dpid, port = where(f, "a2")
    pkt = {"eth_src": mac_of(f, "a2"), "eth_dst": mac_of(f, "a3"), "vlan_vid": 0, "eth_type": 0x0800}
    t = f.network(down=down).send(dpid, port, {**pkt, "ipv4_src": "10.0.0.2", "ipv4_dst": "10.0.0.3", "ip_proto": 17})
    assert where(f, "a3") in t.delivered()
    assert [d for d, _ in t.arrivals] == [2, 1, 3]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            ("tunnel_ip: 172.31.0.2", "tunnel_ip: 172.31.0.1"),
            "hosts.hv2.tunnel_ip: 172.31.0.1 is already used by host 'hv1'",
        ),
        (("host: hv1}", "host: hv9}"), "switches.s4.host: unknown host 'hv9'"),
        (
            ("s2: {dpid: 2, bridge: br-int}", "s2: {dpid: 2, bridge: br-int, host: hv1}"),
            "switches.s2.host: switch 's2' ends the tunnels of host 'hv2'",
        ),
        (
            ("blue: {vlan: 200}", "blue: {vlan: 200, vni: 5100}"),
            "networks.red.vni: VNI 5100 is already used by network 'blue'",
        ),
        (
            ("s4: {dpid: 4, bridge: br-vm, host: hv1}", "s4: {dpid: 4, bridge: br-int, host: hv1}"),
            "switches.s4.bridge: bridge 'br-int' is already used by switch 's1'",
        ),
        (
            ("s4: {dpid: 4, bridge: br-vm, host: hv1}", "s4: {dpid: 4, bridge: br-vm}"),
            "switches.s4.host: required when hosts are declared",
        ),
    ],
)
def test_bad_overlay_input_is_rejected_with_its_path(change: tuple[str, str], error: str) -> None:
    text = NET % {"kind": "vxlan", "red": "", "a2": ""}
    assert change[0] in text
    with pytest.raises(ConfigError) as exc:
        model_from(text.replace(change[0], change[1]))
    assert any(line.startswith(error) for line in exc.value.errors), exc.value.errors


def test_overlay_without_hosts_is_rejected() -> None:
    with pytest.raises(ConfigError) as exc:
        model_from("switches: {s1: {dpid: 1}}\noverlay: {type: vxlan}\n")
    assert exc.value.errors == ("overlay: requires hosts (the hypervisors the overlay joins)",)


def test_the_same_bridge_name_on_every_host_is_accepted() -> None:
    model = model_from(NET % {"kind": "vxlan", "red": "", "a2": ""})
    assert {s.bridge for s in model.switches if s.name != "s4"} == {"br-int"}
    assert [s.host for s in model.switches] == ["hv1", "hv2", "hv3", "hv1"]
    assert model.network_by_name["red"].key == 5100 and model.network_by_name["blue"].key == 200


def test_migrate_pre_installs_the_destination_and_the_first_frame_there_moves_the_vm_everywhere_at_once() -> None:
    from controller.fabric.topology import PortInfo
    from controller.flows.pipeline import T_LEARN
    from tests.unit.fabric_helpers import tagged_frame

    f = fabric()
    f.port_changed(2, PortInfo(9, "p9"))
    a3 = where(f, "a3")
    assert a3 in ping(f, "a1", "a3").delivered()
    arp_at_dest = {"eth_src": mac_of(f, "a3"), "eth_dst": BCAST, "vlan_vid": 0, "eth_type": 0x0806, "arp_op": 2}
    arp_at_dest.update(arp_sha=mac_of(f, "a3"), arp_spa="10.0.0.3", arp_tpa="10.0.0.3")
    assert not f.network().send(2, 9, arp_at_dest).to_controller, "not the VM's port yet: dropped at ingress"
    f.apply(f.core.migrate("a3", "s2", 9))
    assert a3 in ping(f, "a1", "a3").delivered(), "still forwarded to where it was learned"
    t = f.network().send(2, 9, arp_at_dest)
    assert [(d, p["in_port"]) for d, p in t.to_controller] == [(2, 9)], "the gratuitous ARP is learned"
    moved = f.packet_in(2, T_LEARN, 9, tagged_frame(mac_of(f, "a3"), BCAST, 100, 0x0806))
    dpids = [b.dpid for b in moved.batches]
    assert len(dpids) == len(set(dpids)) and {2, 3, 4} <= set(dpids), "one batch per switch, at once"
    # s4 (a1's switch) labels frames to a3 for s2 now; s1 carries red only in transit, by label: unchanged
    assert 1 not in dpids
    assert ping(f, "a1", "a3").delivered() == {(2, 9)}
    with pytest.raises(ValueError, match="unknown VM 'zz'"):
        f.core.migrate("zz", "s2", 9)
