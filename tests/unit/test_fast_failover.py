"""Fast failover on simulated tables: a cut link is bypassed before the controller recomputes.

The cut is simulated by leaving the link out of the simulated network and
marking both its ends dead (fast-failover groups see them down); the core
is not told, so what is tested is the state installed before the cut. An
output to a dead port shows up as an output on that trunk port, so
"delivered exactly once" also means "nothing sent into the cut".
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.config import parse_model
from controller.fabric.labels import switch_match
from controller.fabric.topology import LinkKey, PortInfo
from controller.flows.rules import Group, Output, Resubmit
from controller.tools import topo
from controller.tools.sim import SimNetwork, Trace, ethernet
from controller.tools.topo import NetworkSpec
from tests.unit.fabric_helpers import BCAST, Harness, harness_of, mac
from tests.unit.test_multi_switch import leaf_spine, ring

RED = 1  # the red VM's port on every switch


def cut_network(h: Harness, cut: set[LinkKey]) -> SimNetwork:
    """The installed rules and groups with the ``cut`` links gone (their ends dead)."""
    dead = {(l.a_dpid, l.a_port) for l in cut} | {(l.b_dpid, l.b_port) for l in cut}
    return SimNetwork(
        {d: frozenset(r.values()) for d, r in h.flows.items()},
        [l for l in h.core.topology.links if l not in cut],
        conntrack=h.conntrack,
        groups={d: list(g.values()) for d, g in h.groups.items()},
        down=dead,
    )


def unicast(net: SimNetwork, src: tuple[int, int], dst: tuple[int, int], net_id: int = 1) -> Trace:
    return net.send(src[0], src[1], ethernet(mac(src[0], net_id), mac(dst[0], net_id)))


def red_vms(h: Harness) -> list[tuple[int, int]]:
    return sorted(
        (d, p) for d in h.core.view().dpids for p, (net, _) in h.core.view().edge_ports(d).items() if net.vlan == 100
    )


def learn_all(h: Harness, vms: list[tuple[int, int]]) -> None:
    for dpid, port in vms:
        h.send(dpid, port, mac(dpid), BCAST)
    assert len(h.hosts) == len(vms)


def path_links(h: Harness, src: tuple[int, int], dst: tuple[int, int]) -> set[LinkKey]:
    return set(unicast(cut_network(h, set()), src, dst).link_crossings)


def reached(trace: Trace, cut: set[LinkKey]) -> list[tuple[int, int]]:
    """Where the frame left the fabric; outputs into a cut link are drops, left out."""
    dead = {(l.a_dpid, l.a_port) for l in cut} | {(l.b_dpid, l.b_port) for l in cut}
    return [(d, p) for d, p, _ in trace.outputs if (d, p) not in dead]


def assert_delivered_once(trace: Trace, dst: tuple[int, int]) -> None:
    assert not trace.loop
    assert [(d, p) for d, p, _ in trace.outputs] == [dst], trace.outputs
    assert trace.outputs[0][2]["vlan_vid"] == 0  # untagged at the VM


def cut(h: Harness, link: LinkKey) -> None:
    """Tell the core both ends of ``link`` went down (it recomputes)."""
    h.port_changed(link.a_dpid, PortInfo(link.a_port, f"p{link.a_port}", up=False))
    h.port_changed(link.b_dpid, PortInfo(link.b_port, f"p{link.b_port}", up=False))


TOPOLOGIES: dict[str, Callable[[], Harness]] = {
    "ring3": lambda: ring(3),
    "ring4": lambda: ring(4),
    "ring5": lambda: ring(5),
    "leaf-spine": leaf_spine,
}


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_cut_link_in_use_is_bypassed_before_and_after_recompute(name: str) -> None:
    """Every pair of red VMs, every link their path uses: still exactly one delivery, no loop."""
    make = TOPOLOGIES[name]
    vms = red_vms(make())
    for src, dst in combinations(vms, 2):
        for link in sorted(path_links(_learned(make, vms), src, dst)):
            h = _learned(make, vms)
            before = cut_network(h, {link})
            assert_delivered_once(unicast(before, src, dst), dst)
            assert_delivered_once(unicast(before, dst, src), src)
            cut(h, link)
            after = cut_network(h, {link})
            assert_delivered_once(unicast(after, src, dst), dst)
            assert_delivered_once(unicast(after, dst, src), src)


def _learned(make: Callable[[], Harness], vms: list[tuple[int, int]]) -> Harness:
    h = make()
    learn_all(h, vms)
    return h


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_two_links_cut_never_loop_and_never_duplicate(name: str) -> None:
    """With two links down the backups may not reach, but a frame never circles or doubles.

    (Unmarked detours would: in a ring of five with both links of s1 cut, a
    frame toward s1 went round s2-s3-s4-s5 for ever.)
    """
    h = TOPOLOGIES[name]()
    vms = red_vms(h)
    learn_all(h, vms)
    for pair in combinations(sorted(h.core.topology.links), 2):
        net = cut_network(h, set(pair))
        for src, dst in combinations(vms, 2):
            for a, b in ((src, dst), (dst, src)):
                trace = unicast(net, a, b)
                assert not trace.loop
                assert reached(trace, set(pair)) in ([], [b]), (pair, a, b, trace.outputs)


def _forward(h: Harness, dpid: int, dst: int) -> list[tuple[int, object, object, str]]:
    """(priority, in_port, vlan_pcp, first action's type) of ``dpid``'s forward rules for switch ``dst``'s labels."""
    label = switch_match(h.core.view().labels[dst])
    return sorted(
        (r.priority, r.match_dict.get("in_port"), r.match_dict.get("vlan_pcp"), type(r.actions[0]).__name__)
        for r in h.core.flows.rules(dpid)
        if r.match_dict.get("eth_dst") == label
    )


def test_ring_backups_are_fast_failover_groups_and_uturns_only_where_needed() -> None:
    h = ring(3)
    learn_all(h, red_vms(h))
    groups = h.core.groups[1]
    assert all(g.type == "ff" and len(g.buckets) == 2 for g in groups.values())
    # s1 toward s2: port 10 (direct), else port 11 (via s3, whose own path to s2 avoids s1).
    assert {(g.buckets[0][1], g.buckets[1][1]) for g in groups.values()} == {(10, 11), (11, 10)}
    # s1 labels frames to s2's hosts and sends them to the group, as it does frames labelled by others
    assert [
        (r.priority, type(r.actions[0]).__name__, type(r.actions[-1]).__name__)
        for r in h.core.flows.rules(1)
        if r.match_dict.get("eth_dst") == mac(2)
    ] == [(10, "SetField", "Group")]
    # the group, and a marked frame (already on a backup path) takes no second detour
    assert _forward(h, 1, 2) == [(5, None, None, "Group"), (7, None, 1, "Output")]
    h5 = ring(5)  # s1 toward s2 has no loop-free neighbour: a U-turn through s5, on to s4
    learn_all(h5, red_vms(h5))
    assert _forward(h5, 1, 2) == [(5, None, None, "Group"), (6, 11, None, "Group"), (7, None, 1, "Output")]
    # s5 bounces marked frames from s1 (its port 10) on to s4
    assert _forward(h5, 5, 2) == [(5, None, None, "Group"), (7, None, 1, "Output"), (8, 10, 1, "Output")]


def test_tree_has_no_backup_and_no_group() -> None:
    # s1 -10--11- s2 -10--11- s3, a red VM on s1 and s3 (port 1)
    h = harness_of(topo.linear(3, networks=(NetworkSpec("red", 100, "r", on=(1, 3)),)))
    learn_all(h, [(1, 1), (3, 1)])
    assert h.core.groups == {}
    forward = [r for d in (1, 2, 3) for r in h.core.flows.rules(d) if r.match_dict.get("eth_dst") in (mac(1), mac(3))]
    assert forward and all(not any(isinstance(a, Group) for a in r.actions) for r in forward)
    assert all(isinstance(r.actions[-1], (Output, Resubmit)) for r in forward)


def test_backup_links_carry_the_vlan_and_isolation_holds() -> None:
    h = leaf_spine()  # blue lives on leaves 1 and 3: its backups use spine 2 but never leaf 2
    view = h.core.view()
    assert view.trunk_vlans(1, 12) == [100, 200]  # leaf 1 -> spine 2: blue's backup
    assert view.trunk_vlans(2, 11) == [100] and view.trunk_vlans(2, 12) == [100]
    learn_all(h, red_vms(h))
    h.send(1, 2, mac(1, 2), BCAST)
    h.send(3, 2, mac(3, 2), BCAST)
    gone = {LinkKey.of(1, 11, 101, 1)}
    net = cut_network(h, gone)
    assert_delivered_once(unicast(net, (1, 2), (3, 2), net_id=2), (3, 2))
    # a blue frame to a red MAC still never leaves blue (it floods, and floods are not protected)
    assert set(reached(net.send(1, 2, ethernet(mac(1, 2), mac(3))), gone)) <= {(3, 2)}


# -- random meshes -------------------------------------------------------------------------


@st.composite
def meshes(draw: st.DrawFn) -> tuple[dict[str, object], list[LinkKey], dict[int, list[int]]]:
    """A connected random graph of 2-7 switches (parallel cables included), a red VM on each."""
    n = draw(st.integers(2, 7))
    pairs = [(draw(st.integers(0, i - 1)), i) for i in range(1, n)]
    extra = st.tuples(st.integers(0, n - 1), st.integers(1, n - 1)).map(lambda p: (p[0], (p[0] + p[1]) % n))
    pairs += draw(st.lists(extra, max_size=6))
    trunk = [10] * n
    links: list[LinkKey] = []
    declared: list[list[str]] = []
    for a, b in pairs:
        links.append(LinkKey.of(a + 1, trunk[a], b + 1, trunk[b]))
        declared.append([f"s{a + 1}:{trunk[a]}", f"s{b + 1}:{trunk[b]}"])
        trunk[a] += 1
        trunk[b] += 1
    data: dict[str, object] = {
        "controller": {"metrics_port": 0},
        "switches": {f"s{i + 1}": {"dpid": i + 1} for i in range(n)},
        "links": declared,
        "networks": {"red": {"vlan": 100}},
        "vms": {f"r{i + 1}": {"switch": f"s{i + 1}", "port": RED, "network": "red"} for i in range(n)},
    }
    return data, links, {i + 1: [RED, *range(10, trunk[i])] for i in range(n)}


def _connected(links: list[LinkKey], a: int, b: int) -> bool:
    seen, todo = {a}, [a]
    while todo:
        x = todo.pop()
        for l in links:
            for u, v in ((l.a_dpid, l.b_dpid), (l.b_dpid, l.a_dpid)):
                if u == x and v not in seen:
                    seen.add(v)
                    todo.append(v)
    return b in seen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meshes())
def test_any_single_cut_in_a_mesh_is_bypassed_and_two_never_loop(
    mesh: tuple[dict[str, object], list[LinkKey], dict[int, list[int]]],
) -> None:
    data, links, ports = mesh
    h = Harness(parse_model(data), ports, links)
    vms = [(d, RED) for d in sorted(ports)]
    learn_all(h, vms)
    live = sorted(h.core.topology.links)
    for one in live:
        net = cut_network(h, {one})
        rest = [l for l in live if l != one]
        for src, dst in combinations(vms, 2):
            for a, b in ((src, dst), (dst, src)):
                trace = unicast(net, a, b)
                if _connected(rest, a[0], b[0]):
                    assert_delivered_once(trace, b)
                else:
                    assert not trace.loop and not reached(trace, {one})
    for pair in combinations(live, 2):
        net = cut_network(h, set(pair))
        for src, dst in combinations(vms, 2):
            for a, b in ((src, dst), (dst, src)):
                trace = unicast(net, a, b)
                assert not trace.loop, (pair, a, b)
                assert reached(trace, set(pair)) in ([], [b]), (pair, a, b, trace.outputs)


@pytest.mark.parametrize("name", ["ring3", "ring5", "leaf-spine"])
@pytest.mark.parametrize("pcp", [0, 1, 7])
def test_a_priority_tagged_frame_takes_the_backup_like_an_untagged_one(name: str, pcp: int) -> None:
    """A VM cannot mark its frames as already on a backup path (VLAN priority 1): ingress resets the priority."""
    make = TOPOLOGIES[name]
    vms = red_vms(make())
    h = _learned(make, vms)
    for src, dst in combinations(vms, 2):
        for link in sorted(path_links(h, src, dst)):
            net = cut_network(h, {link})
            for a, b in ((src, dst), (dst, src)):
                frame = ethernet(mac(a[0]), mac(b[0]), vlan_vid=0x1000, vlan_pcp=pcp)
                assert_delivered_once(net.send(a[0], a[1], frame), b)
