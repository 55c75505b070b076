"""Which discovered links carry tenant traffic: relays, crossed cables, stale probes, restarts, reloads.

Field report: a host on two undeclared ports (s1:5, s2:5) copied the
controller's own signed probes from one to the other; the controller took
s1:5-s2:5 for a link, preferred it (lower ports) and sent tenant traffic,
tagged, through the host. Here the relay is a fake: a probe the core sent
out of one port is heard on the other (``h.lldp_in``), and the simulated
network wires the two ports together (``cables``), as the host does.
"""

from __future__ import annotations

import logging

import pytest

from controller.config.model import Model
from controller.fabric.lldp import build_probe
from controller.fabric.topology import LinkKey, PortInfo
from controller.flows.pipeline import T_INGRESS
from controller.flows.rules import OFPVID_PRESENT, Rule
from controller.tools.sim import Trace
from tests.unit.fabric_helpers import BCAST, Harness, mac, model_from

RED, BLUE = 100, 200
TRUNK = LinkKey.of(1, 10, 2, 10)
RELAY = LinkKey.of(1, 5, 2, 5)

SWITCHES = """
controller: {{metrics_port: 0}}
switches: {{s1: {{dpid: 1}}, s2: {{dpid: 2}}}}
{links}
networks: {{red: {{vlan: 100}}, blue: {{vlan: 200}}}}
vms:
  r1: {{switch: s1, port: 1, network: red}}
  b1: {{switch: s1, port: 2, network: blue}}
  r2: {{switch: s2, port: 1, network: red}}
  b2: {{switch: s2, port: 2, network: blue}}
{extra}
"""
DECLARED = "links: [[s1:10, s2:10]]"


def two_switches(links: str = DECLARED, extra: str = "", ports: tuple[int, ...] = (1, 2, 5, 10)) -> Harness:
    """s1 and s2, a VM of red and blue on each; the cable s1:10-s2:10 up (heard both ways)."""
    h = Harness(model_from(SWITCHES.format(links=links, extra=extra)), {1: ports, 2: ports})
    h.link_up(TRUNK)
    h.lldp_in(1, 10, h.probe(2, 10))
    return h


def relay(h: Harness, a: tuple[int, int], b: tuple[int, int]) -> None:
    """A host on ``a`` and ``b`` copies the core's probes between them, both ways."""
    h.lldp_in(*b, h.probe(*a))
    h.lldp_in(*a, h.probe(*b))


def mismatches(h: Harness) -> float:
    value: float = h.core.metrics.link_mismatches._value.get()
    return value


def ends_of(trace: Trace) -> set[tuple[int, int]]:
    return trace.delivered()


def assert_relay_carries_nothing(h: Harness, cables: tuple[LinkKey, ...] = (RELAY,)) -> None:
    """Broadcasts and unicast between the VMs take the declared cable only, never the relay."""
    for src, port, vlan in ((1, 1, RED), (1, 2, BLUE), (2, 1, RED), (2, 2, BLUE)):
        h.send(src, port, mac(src, vlan // 100), BCAST, cables=cables)
    for src, port, vlan in ((1, 1, RED), (1, 2, BLUE), (2, 1, RED), (2, 2, BLUE)):
        peer = 3 - src
        for dst in (BCAST, mac(peer, vlan // 100)):
            trace = h.send(src, port, mac(src, vlan // 100), dst, cables=cables)
            assert not trace.loop
            assert ends_of(trace) == {(peer, port)}, f"{src}:{port} -> {dst}: {ends_of(trace)}"
            assert set(trace.link_crossings) == {TRUNK}, f"{src}:{port} -> {dst}: {trace.link_crossings}"


# --- the field report --------------------------------------------------------------


def test_a_relay_between_undeclared_ports_never_carries_tenant_traffic(caplog: pytest.LogCaptureFixture) -> None:
    h = two_switches()
    caplog.set_level(logging.WARNING, logger="vmn.links")
    for _ in range(3):
        relay(h, (1, 5), (2, 5))
    assert h.core.topology.links == {TRUNK}
    assert h.core.links.refused == {RELAY: "not declared in links"}
    assert mismatches(h) == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["discovered link not used (not declared in links): s1:5 <-> s2:5"]  # once
    view = h.core.view()
    assert view.trunk_ports(1) == {10} and view.trunk_ports(2) == {10}
    assert_relay_carries_nothing(h)
    for vlan in (RED, BLUE):  # tagged frames the relay sends in go nowhere
        trace = h.send(1, 5, mac(9), BCAST, learn=False, vlan_vid=OFPVID_PRESENT | vlan)
        assert trace.outputs == [] and trace.link_crossings == {}


TAP = "mirrors: {tap: {switch: s1, port: 20, vms: [r1], direction: out}}"


def test_probes_go_out_only_of_ports_that_may_be_trunks() -> None:
    h = two_switches(extra=TAP, ports=(1, 2, 5, 10, 20))
    h.clock.now = 1.0
    probes = {(d, p) for d, p, _ in h.tick().frames}
    assert probes == {(1, 10), (2, 10)}  # the declared cable's ends only
    h = two_switches(links="", extra=TAP, ports=(1, 2, 5, 10, 20))
    h.clock.now = 1.0
    probes = {(d, p) for d, p, _ in h.tick().frames}
    assert probes == {(1, 5), (1, 10), (2, 5), (2, 10), (2, 20)}  # not VMs' ports, not s1:20 (the tap)


def test_refused_link_is_forgotten_when_its_probes_stop() -> None:
    h = two_switches()
    relay(h, (1, 5), (2, 5))
    assert mismatches(h) == 1
    for step in range(1, 9):  # the declared cable keeps talking, the relay is gone
        h.clock.now = step * 0.5
        h.tick()
        h.link_up(TRUNK)
    assert h.core.links.refused == {} and mismatches(h) == 0
    assert h.core.topology.links == {TRUNK}


# --- siblings ------------------------------------------------------------------------


def test_a_relay_from_a_declared_port_does_not_displace_the_declared_link() -> None:
    h = two_switches()
    relay(h, (1, 10), (2, 5))  # the host sits on s2:5 and taps the cable at s1:10's side
    assert h.core.topology.links == {TRUNK}
    assert h.core.links.refused == {LinkKey.of(1, 10, 2, 5): "not declared in links"}
    assert_relay_carries_nothing(h, cables=())


def test_crossed_declared_links_are_not_used() -> None:
    h = two_switches(links="links: [[s1:10, s2:10], [s1:11, s2:11]]", ports=(1, 2, 10, 11))
    second = LinkKey.of(1, 11, 2, 11)
    h.link_up(second)
    h.lldp_in(2, 11, h.probe(1, 10))  # s1:10's probe heard on s2:11: crossed, or relayed
    h.lldp_in(1, 11, h.probe(2, 10))
    assert h.core.topology.links == {TRUNK, second}
    assert set(h.core.links.refused) == {LinkKey.of(1, 10, 2, 11), LinkKey.of(1, 11, 2, 10)}
    assert mismatches(h) == 2
    trace = h.send(1, 1, mac(1), BCAST)
    assert ends_of(trace) == {(2, 1)} and not trace.loop


def test_a_cabling_mismatch_is_reported_and_not_used() -> None:
    """The file says s1:10-s2:10, the cable is s1:10-s2:11: nothing crosses, both facts are logged."""
    h = Harness(model_from(SWITCHES.format(links=DECLARED, extra="")), {1: (1, 2, 10), 2: (1, 2, 10, 11)})
    h.lldp_in(2, 11, h.probe(1, 10))
    assert h.core.topology.links == set()
    assert mismatches(h) == 2  # declared link not discovered + discovered link not used
    assert ends_of(h.send(1, 1, mac(1), BCAST, cables=(LinkKey.of(1, 10, 2, 11),))) == set()


def test_links_on_vm_or_mirror_ports_are_refused_even_without_declared_links() -> None:
    h = two_switches(links="", extra=TAP.replace("s1", "s2"), ports=(1, 2, 5, 10, 20))
    h.lldp_in(2, 1, h.probe(1, 5))  # as if LLDP from a VM's port reached the controller
    h.lldp_in(2, 20, h.probe(1, 5))
    assert h.core.links.refused == {
        LinkKey.of(1, 5, 2, 1): "s2:1 is VM r2's port",
        LinkKey.of(1, 5, 2, 20): "s2:20 is mirror tap's port",
    }
    assert h.core.topology.links == {TRUNK}
    for port in (1, 20):  # and the switch never sends them LLDP from there anyway
        trace = h.send(2, port, mac(9), "01:80:c2:00:00:0e", learn=False, eth_type=0x88CC)
        assert trace.to_controller == [] and trace.outputs == []


def test_without_declared_links_any_other_port_may_be_a_trunk() -> None:
    """Documented: a file without ``links`` trusts LLDP on non-VM ports; declaring links locks it down."""
    h = two_switches(links="")
    relay(h, (1, 5), (2, 5))
    assert RELAY in h.core.topology.links
    h.reload(model_from(SWITCHES.format(links=DECLARED, extra="")))
    assert h.core.topology.links == {TRUNK}
    assert h.core.links.refused == {RELAY: "not declared in links"} and mismatches(h) == 1
    assert_relay_carries_nothing(h)
    h.reload(model_from(SWITCHES.format(links="", extra="")))
    assert h.core.topology.links == {TRUNK, RELAY} and mismatches(h) == 0


def test_a_link_from_a_switch_to_itself() -> None:
    hairpin = LinkKey.of(1, 5, 1, 6)
    h = two_switches(links="", ports=(1, 2, 5, 6, 10))
    h.lldp_in(1, 6, h.probe(1, 5))
    assert h.core.links.refused == {hairpin: "both ends on switch s1"}
    assert_relay_carries_nothing(h, cables=(hairpin,))
    # Zero-config keeps it: its ports then carry nothing, so the hairpin cannot storm.
    z = Harness(Model.zero(), {1: [1, 2, 5, 6]})
    z.clock.now = 5.0
    z.lldp_in(1, 6, z.probe(1, 5))
    z.tick()
    assert z.core.topology.links == {hairpin}
    trace = z.send(1, 1, mac(1), BCAST, cables=(hairpin,))
    assert not trace.loop and ends_of(trace) == {(1, 2)}


def test_links_to_switches_not_in_the_file_are_refused() -> None:
    h = two_switches(links="")
    h.connect(9, [PortInfo(1, "p1")])
    h.lldp_in(9, 1, h.probe(1, 5))
    assert h.core.links.refused == {LinkKey.of(1, 5, 9, 1): "switch 0000000000000009 is not in the network file"}


def test_a_replayed_probe_is_stale_and_a_forged_one_is_nothing() -> None:
    h = two_switches(links="")
    old = h.probe(1, 5)  # captured on s1:5 at t=0
    h.clock.now = 60.0  # replayed on s2:5 a minute later, with no path to s1:5 any more
    h.lldp_in(2, 5, old)
    assert RELAY not in h.core.topology.links and RELAY not in h.core.links.refused
    h.lldp_in(2, 5, build_probe(1, 5, h.core.links.secret, sent_at=61.0))  # from the future: forged
    h.lldp_in(2, 5, build_probe(1, 5, b"guess", sent_at=60.0))
    assert RELAY not in h.core.topology.links
    h.lldp_in(2, 5, h.probe(1, 5))  # a live relay is fresh: only the file's rule can stop it
    assert RELAY in h.core.topology.links


# --- restart -------------------------------------------------------------------------


def held(h: Harness, dpid: int) -> list[Rule]:
    return list(h.core.flows.rules(dpid))


def test_restart_waits_for_declared_links_and_not_for_relays() -> None:
    old = two_switches()
    relay(old, (1, 5), (2, 5))
    old.send(1, 1, mac(1), BCAST)
    old.send(2, 1, mac(2), BCAST)
    fresh = Harness(old.core.model, {})
    for dpid in (1, 2):
        batch = fresh.connect(dpid, [PortInfo(p, f"p{p}") for p in (1, 2, 5, 10)], held=held(old, dpid)).batch(dpid)
        assert batch is None, "the reconcile waits for the declared link"
    relay(fresh, (1, 5), (2, 5))
    assert fresh.core.ready == set(), "a relay does not end the wait"
    effects = fresh.link_up(TRUNK)
    assert fresh.core.ready == {1, 2}
    for dpid in (1, 2):  # every flow kept as it was (learned hosts adopted), nothing sent
        batch = effects.batch(dpid)
        assert batch is not None and batch.deletes == () and batch.adds == ()
    assert_relay_carries_nothing(fresh)


def test_restart_does_not_keep_trunks_the_file_no_longer_allows() -> None:
    """A predecessor used the relay (its file had no links); the file now declares them."""
    old = two_switches(links="")
    relay(old, (1, 5), (2, 5))
    assert RELAY in old.core.topology.links
    fresh = Harness(model_from(SWITCHES.format(links=DECLARED, extra="")), {})
    effects = fresh.connect(1, [PortInfo(p, f"p{p}") for p in (1, 2, 5, 10)], held=held(old, 1))
    batch = effects.batch(1)
    assert batch is not None, "reconciled at once, not after waiting"
    assert 1 in fresh.core.ready
    assert [r for r in held(old, 1) if is_trunk_rule(r, 5)], "the predecessor had made s1:5 a trunk"
    assert not [r for r in fresh.flows[1].values() if is_trunk_rule(r, 5)]
    assert {r.cookie for r in held(old, 1) if is_trunk_rule(r, 5)} <= set(batch.deletes)


def is_trunk_rule(rule: Rule, port: int) -> bool:
    match = dict(rule.match)
    vid = match.get("vlan_vid")
    return (
        rule.table == T_INGRESS and match.get("in_port") == port and isinstance(vid, int) and bool(vid & OFPVID_PRESENT)
    )
