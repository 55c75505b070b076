"""Paths, flood trees and recomputation across switches, on simulated tables."""

from __future__ import annotations

import pytest

from controller.fabric.topology import LinkKey, PortInfo
from controller.tools import topo
from controller.tools.topo import NetworkSpec
from tests.unit.fabric_helpers import BCAST, Harness, harness_of, mac, outputs

TRUNK = 10


RED = NetworkSpec("red", 100, "r")
BLUE = NetworkSpec("blue", 200, "b")


def ring(n: int) -> Harness:
    """n switches in a ring (port 10 to the next, 11 to the previous); red+blue VM on each."""
    return harness_of(topo.ring(n, networks=(RED, BLUE)))


def leaf_spine() -> Harness:
    """2 spines (dpid 101, 102), 3 leaves (1-3); leaf port 10+s to spine s, spine port l to leaf l.

    Red VMs on every leaf (port 1), blue on leaves 1 and 3 (port 2); leaf 2
    has a port 2 too, with no VM.
    """
    net = topo.leaf_spine(2, 3, networks=(RED, NetworkSpec("blue", 200, "b", on=(1, 3))))
    return harness_of(net, extra_ports={2: [2]})


@pytest.mark.parametrize("n", [3, 4, 5])
def test_ring_broadcast_reaches_network_once_and_never_loops(n: int) -> None:
    h = ring(n)
    trace = h.send(1, 1, mac(1), BCAST)
    assert not trace.loop
    assert outputs(trace) == {(i, 1) for i in range(2, n + 1)}
    assert all(count == 1 for count in trace.link_crossings.values())
    assert len(trace.link_crossings) == n - 1  # a tree: one link of the ring unused


def test_ring_unicast_follows_shortest_path_after_learning() -> None:
    h = ring(5)
    h.send(3, 1, mac(3), BCAST)
    trace = h.send(1, 1, mac(1), mac(3))
    assert outputs(trace) == {(3, 1)}
    assert len(trace.link_crossings) == 2  # 1 -> 2 -> 3
    trace = h.send(4, 1, mac(4), mac(3))
    assert outputs(trace) == {(3, 1)} and len(trace.link_crossings) == 1


def test_ring_isolation_across_switches() -> None:
    h = ring(4)
    h.send(2, 1, mac(2), BCAST)
    trace = h.send(1, 2, mac(9, 2), mac(2))  # blue frame to a red MAC
    assert outputs(trace) <= {(i, 2) for i in range(1, 5)}
    assert outputs(h.send(1, 2, mac(9, 2), BCAST)) == {(i, 2) for i in range(2, 5)}


def test_link_failure_reroutes_and_link_return_is_used_again() -> None:
    h = ring(4)
    h.send(2, 1, mac(2), BCAST)
    h.send(1, 1, mac(1), BCAST)
    direct = LinkKey.of(1, 10, 2, 11)
    assert set(h.send(1, 1, mac(1), mac(2)).link_crossings) == {direct}
    h.port_changed(1, PortInfo(10, "p10", up=False))
    trace = h.send(1, 1, mac(1), mac(2))
    assert outputs(trace) == {(2, 1)} and direct not in trace.link_crossings
    assert outputs(h.send(1, 1, mac(1), BCAST)) == {(2, 1), (3, 1), (4, 1)}
    h.port_changed(1, PortInfo(10, "p10", up=True))
    h.link_up(direct)
    assert set(h.send(1, 1, mac(1), mac(2)).link_crossings) == {direct}


def test_switch_leaves_and_returns() -> None:
    h = ring(4)
    h.disconnect(2)
    trace = h.send(1, 1, mac(1), BCAST)
    assert outputs(trace) == {(3, 1), (4, 1)} and not trace.loop
    h.connect(2, [PortInfo(p, f"p{p}") for p in (1, 2, 10, 11)])
    for link in (LinkKey.of(1, 10, 2, 11), LinkKey.of(2, 10, 3, 11)):
        h.link_up(link)
    assert outputs(h.send(1, 1, mac(1), BCAST)) == {(2, 1), (3, 1), (4, 1)}


def test_leaf_spine_transit_and_pruned_trunks() -> None:
    h = leaf_spine()
    trace = h.send(1, 2, mac(1, 2), BCAST)  # blue lives on leaves 1 and 3 only
    assert outputs(trace) == {(3, 2)} and not trace.loop
    assert all(count == 1 for count in trace.link_crossings.values())
    trace = h.send(1, 1, mac(1), BCAST)
    assert outputs(trace) == {(2, 1), (3, 1)}
    h.send(3, 1, mac(3), BCAST)
    trace = h.send(1, 1, mac(1), mac(3))
    assert outputs(trace) == {(3, 1)} and len(trace.link_crossings) == 2


def test_trunk_carries_only_networks_that_use_it() -> None:
    h = leaf_spine()
    view = h.core.view()
    assert view.trunk_vlans(2, 11) == [100]  # leaf 2 hosts only red
    assert view.trunk_vlans(1, 11) == [100, 200]


def test_learning_is_never_on_a_trunk() -> None:
    h = ring(3)
    h.send(1, 1, mac(1), BCAST)
    assert {(x.dpid, x.port) for x in h.hosts.values()} == {(1, 1)}


def test_lldp_discovers_links_and_declared_mismatch_is_counted() -> None:
    from controller.fabric.lldp import build_probe

    h = ring(3)
    h.core.topology.links.clear()
    h.recompute()
    h.lldp_in(2, 11, build_probe(1, 10))
    assert LinkKey.of(1, 10, 2, 11) in h.core.topology.links
    assert h.core.metrics.link_mismatches._value.get() == 2  # two declared links still missing
    h.clock.now = 100.0
    h.tick()
    assert not h.core.topology.links


def test_zero_config_ring_never_storms_while_links_are_discovered() -> None:
    from controller.config.model import Model
    from controller.fabric.lldp import build_probe

    h = Harness(Model.zero(), {i: [1, 10, 11] for i in (1, 2, 3)})
    trace = h.send(1, 1, mac(1), BCAST)
    assert not trace.loop and outputs(trace) == set()
    h.clock.now = 1.0
    for i in (1, 2, 3):
        h.lldp_in(i % 3 + 1, 11, build_probe(i, 10))
    h.clock.now = 2.5  # probation (two LLDP intervals) over, links still fresh
    h.tick()
    trace = h.send(1, 1, mac(1), BCAST)
    assert not trace.loop and outputs(trace) == {(2, 1), (3, 1)}
    assert all(n == 1 for n in trace.link_crossings.values())


def test_restarted_zero_config_controller_keeps_flooding_where_it_did() -> None:
    from controller.config.model import Model

    h = Harness(Model.zero(), {1: [1, 2]})
    h.clock.now = 10.0
    h.tick()
    fresh = Harness(Model.zero(), {})
    batch = fresh.connect(1, [PortInfo(1, "p1"), PortInfo(2, "p2")], held=h.core.flows.rules(1)).batch(1)
    assert batch is not None
    assert batch.deletes == () and batch.adds == ()


def test_forged_probe_without_the_controller_secret_makes_no_link() -> None:
    from controller.fabric.lldp import build_probe, parse_probe

    h = ring(3)
    h.core.topology.links.clear()
    h.recompute()
    assert not h.lldp_in(2, 11, build_probe(1, 10, secret=b"not ours"))
    assert not h.core.topology.links
    assert parse_probe(build_probe(5, 7, b"k"), b"k") == (5, 7, 0.0)
    assert parse_probe(build_probe(5, 7, b"k"), b"other") is None


def test_a_controller_stall_does_not_expire_links_but_silence_does() -> None:
    h = ring(3)
    links = set(h.core.topology.links)
    h.tick()
    h.clock.now = 60.0  # the controller was stopped for a minute: nobody heard the probes
    h.tick()
    assert h.core.topology.links == links
    for step in range(1, 10):  # ticking again, probes still silent: the links go
        h.clock.now = 60.0 + step * 0.5
        h.tick()
    assert not h.core.topology.links
