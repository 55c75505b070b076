"""Destination labels (controller/fabric/labels.py): spines forward by destination switch, not by host."""

from __future__ import annotations

from apps.l2.app import L2Switch
from controller.config import parse_model
from controller.fabric.labels import in_label_space, label_mac, switch_match
from controller.fabric.view import Host
from controller.flows.rules import Rule
from controller.tools import topo
from controller.tools.fakefabric import FakeFabric
from controller.tools.portplan import port_numbers
from controller.tools.sim import Trace, ethernet
from controller.tools.trace import Fabric, build_fabric

SPINE = 101


def _fabric(vms_per_leaf: int, leaves: int = 3) -> Fabric:
    net = topo.leaf_spine_tenants(2, leaves, networks=2, vms_per_leaf=vms_per_leaf)
    return build_fabric(parse_model(net))


def _vm(f: Fabric, name: str) -> tuple[int, int, str, str]:
    """(dpid, port, mac, ip) of VM ``name``."""
    vm = f.model.vm_by_name[name]
    dpid, port = f.at(vm)
    assert vm.mac is not None and vm.ip is not None
    return dpid, port, vm.mac, str(vm.ip.ip)


def _send(f: Fabric, src: tuple[int, int, str, str], dst_mac: str) -> Trace:
    return f.fake.network().send(src[0], src[1], ethernet(src[2], dst_mac, ipv4_src=src[3], ipv4_dst="10.0.0.99"))


def _spine_flows(vms_per_leaf: int) -> tuple[int, int, frozenset[Rule]]:
    """(VMs, hosts learned, the first spine's flows) of a 2-spine, 3-leaf fabric with every VM learned."""
    model = parse_model(topo.leaf_spine_tenants(2, 3, networks=2, vms_per_leaf=vms_per_leaf))
    fake = FakeFabric.from_model(model)
    numbers = port_numbers(model)
    l2 = fake.core.app("l2")
    assert isinstance(l2, L2Switch)
    for vm in model.vms:
        assert vm.mac is not None
        l2.hosts.put(Host(model.network_by_name[vm.network].vlan, vm.mac, *numbers[(vm.switch, vm.port)]))
    fake.recompute()
    return len(model.vms), len(l2.hosts), fake.core.flows.rules(SPINE)


def test_a_spine_holds_fewer_flows_than_vms_and_as_many_whatever_their_number() -> None:
    vms, learned, few = _spine_flows(2)
    more_vms, more_learned, many = _spine_flows(20)
    assert (learned, more_learned) == (vms, more_vms) == (6, 60)
    assert len(few) == len(many) < more_vms
    macs = {r.match_dict.get("eth_dst") for r in many}
    assert not any(isinstance(m, str) and not in_label_space(m) for m in macs)


def test_unicast_crosses_the_spine_labelled_and_arrives_with_its_own_mac() -> None:
    f = _fabric(4)
    src, dst = _vm(f, "v1-0"), _vm(f, "v3-0")  # both in net0, on leaves 1 and 3
    trace = _send(f, src, dst[2])
    assert trace.delivered() == {(dst[0], dst[1])}
    (_, _, pkt), *_ = trace.outputs
    assert pkt["eth_dst"] == dst[2]
    spines = [r for d, r in trace.matched if d > 100 and r.table == 60]
    assert spines and all(r.match_dict["eth_dst"] == switch_match(f.fake.core.view().labels[dst[0]]) for r in spines)


def test_a_host_whose_mac_is_in_the_label_space_is_learned_and_forwarded_by_it() -> None:
    """One kernel-drawn MAC in 64 starts with ``aa``: such hosts must work like any other."""
    net = topo.leaf_spine_tenants(2, 3, networks=1, vms_per_leaf=2)
    net["vms"]["v3-0"]["mac"] = "aa:3f:12:34:56:78"
    net["vms"]["v1-1"]["mac"] = "aa:00:00:00:00:07"
    f = build_fabric(parse_model(net))
    odd, other, plain = _vm(f, "v3-0"), _vm(f, "v1-1"), _vm(f, "v1-0")
    for src, dst in ((plain, odd), (odd, plain), (other, odd), (odd, other)):
        trace = _send(f, src, dst[2])
        assert trace.delivered() == {(dst[0], dst[1])}, (src, dst)
        (_, _, pkt), *_ = trace.outputs
        assert pkt["eth_dst"] == dst[2]
    spine_macs = {r.match_dict.get("eth_dst") for d, r in _send(f, plain, odd[2]).matched if d > 100 and r.table == 60}
    assert spine_macs == {odd[2]}  # by its own MAC, not a label


def test_a_label_mac_no_host_claims_drops_at_its_switch_and_never_loops() -> None:
    f = _fabric(4)
    src, dst = _vm(f, "v1-0"), _vm(f, "v3-0")
    label = f.fake.core.view().labels[dst[0]]
    for mac in (label_mac(label, "02:00:00:ab:cd:ef"), label_mac(label, dst[2])):
        trace = _send(f, src, mac)
        hops = [d for d, _ in trace.matched]
        assert len(hops) < 40, hops  # no loop through the fabric
        assert trace.delivered() <= {(dst[0], dst[1])}
    assert trace.delivered() == {(dst[0], dst[1])}  # a label MAC in use reaches only its own host
    assert _send(f, src, label_mac(label, "02:00:00:ab:cd:ef")).delivered() == set()


def test_hosts_sharing_a_label_mac_are_forwarded_by_their_own_macs() -> None:
    net = topo.leaf_spine_tenants(2, 3, networks=1, vms_per_leaf=3)
    twins = ("v3-0", "v3-1")
    net["vms"]["v3-0"]["mac"] = "02:00:01:23:45:67"
    net["vms"]["v3-1"]["mac"] = "06:00:01:23:45:67"  # the same low 28 bits, same switch and network
    f = build_fabric(parse_model(net))
    src = _vm(f, "v1-0")
    for name in twins:
        dst = _vm(f, name)
        trace = _send(f, src, dst[2])
        assert trace.delivered() == {(dst[0], dst[1])}
        assert any(r.match_dict.get("eth_dst") == dst[2] for d, r in trace.matched if d == SPINE or d == SPINE + 1)
    other = _vm(f, "v3-2")
    trace = _send(f, src, other[2])
    assert trace.delivered() == {(other[0], other[1])}
    assert not any(r.match_dict.get("eth_dst") == other[2] for d, r in trace.matched if d > 100)


def test_on_a_ring_a_label_mac_no_host_claims_reaches_no_vm_and_stops() -> None:
    """Arriving on any trunk of a ring, such a frame reaches no VM port and stops."""
    f = build_fabric(parse_model(topo.ring(5)))
    labels = f.fake.core.view().labels
    vlan = f.model.network_by_name["tenant-a"].vlan
    network = f.fake.network()
    for dpid, label in sorted(labels.items()):
        for entry in sorted(labels):
            for port in (10, 11):
                frame = ethernet("02:00:00:00:0e:01", label_mac(label, "02:00:00:ab:cd:ef"), vlan_vid=0x1000 | vlan)
                trace = network.send(entry, port, frame)
                assert not trace.loop and trace.delivered() == set(), (entry, port, dpid)
