"""Switches that connect together adopt together: no reconcile drops a rule another switch's dump will justify.

A new HA leader (or a restarted controller) gets the flow dumps of its
switches in any order, milliseconds apart. The forward rule toward a host
learned on ``s2`` sits on ``s1`` too; reconciling ``s1`` before ``s2``'s dump
was read used to delete it, and ``s2``'s adoption added it back: the rule lost
its age and the host's traffic flooded meanwhile (seen as a flake in
``tests/ovs/test_ha_ovs.py``).
"""

from __future__ import annotations

from collections.abc import Collection

from controller.effects import Effects
from controller.fabric.topology import LinkKey, PortInfo
from controller.flows.rules import Rule
from controller.pending import GATHER_SECONDS
from controller.tools.fakefabric import FakeFabric
from tests.unit.fabric_helpers import BCAST, FakeClock, Harness, mac, model_from, outputs
from tests.unit.test_host_state import TWO

PORTS = {1: [1, 10], 2: [1, 2, 10]}
LINK = LinkKey.of(1, 10, 2, 10)


def learned() -> Harness:
    """The old leader: both switches programmed, a host learned on each."""
    h = Harness(model_from(TWO), PORTS, [LINK])
    h.send(1, 1, mac(1), BCAST)
    h.send(2, 1, mac(2), BCAST)
    assert outputs(h.send(1, 1, mac(1), mac(2))) == {(2, 1)}
    return h


def new_leader(links_known: bool) -> tuple[FakeFabric, FakeClock]:
    """A fresh core with both switches connected (ports known), none reconciled yet."""
    clock = FakeClock()
    fake = FakeFabric(model_from(TWO), clock=clock)
    for dpid, ports in sorted(PORTS.items()):
        fake.flows[dpid] = {}
        fake.apply(fake.core.switch_up(dpid, [PortInfo(p, f"p{p}") for p in ports]))
    if links_known:
        fake.link_up(LINK)
    return fake, clock


def changes(effects: Effects) -> dict[int, tuple[int, int]]:
    """Switch -> (flows deleted, flows added) in ``effects``."""
    out = {}
    for dpid in (1, 2):
        batch = effects.batch(dpid)
        if batch is not None:
            out[dpid] = (len(batch.deletes), len(batch.adds))
    return out


def held(h: Harness, dpid: int) -> Collection[Rule]:
    return list(h.flows[dpid].values())


def test_with_links_known_the_first_dump_waits_for_the_second_and_nothing_changes() -> None:
    old = learned()
    for first, second in ((1, 2), (2, 1)):
        fake, _ = new_leader(links_known=True)
        assert changes(fake.reconcile(first, held(old, first))) == {}
        assert first not in fake.core.ready
        assert changes(fake.reconcile(second, held(old, second))) == {1: (0, 0), 2: (0, 0)}
        assert fake.core.ready == {1, 2}


def test_links_found_between_the_dumps_do_not_release_the_first_alone() -> None:
    old = learned()
    fake, _ = new_leader(links_known=False)
    assert changes(fake.reconcile(1, held(old, 1))) == {}  # its trunk has no link yet
    assert changes(fake.link_up(LINK)) == {}  # the link is found, but s2's dump is still on its way
    assert 1 not in fake.core.ready
    assert changes(fake.reconcile(2, held(old, 2))) == {1: (0, 0), 2: (0, 0)}


def test_a_dump_that_never_comes_holds_the_others_for_the_gather_time_only() -> None:
    old = learned()
    fake, clock = new_leader(links_known=True)
    assert changes(fake.reconcile(1, held(old, 1))) == {}
    clock.now = GATHER_SECONDS - 0.01
    assert changes(fake.tick()) == {}
    clock.now = GATHER_SECONDS
    deleted, _ = changes(fake.tick())[1]
    assert deleted > 0  # alone, s1 cannot keep the rule toward the host on s2: nobody vouches for it
    assert fake.core.ready == {1}


def test_a_lone_switch_is_reconciled_at_once() -> None:
    old = learned()
    clock = FakeClock()
    fake = FakeFabric(model_from(TWO), clock=clock)
    fake.flows[2] = {}
    fake.apply(fake.core.switch_up(2, [PortInfo(p, f"p{p}") for p in PORTS[2]]))
    without_trunk = [r for r in held(old, 2) if ("in_port", 10) not in r.match]
    assert 2 in changes(fake.reconcile(2, without_trunk))
    assert fake.core.ready == {2}


LINE = """
controller: {host_timeout: 300}
switches: {s1: {dpid: 1}, s2: {dpid: 2}, s3: {dpid: 3}}
links: [[s1:10, s2:10], [s2:11, s3:11]]
networks: {red: {vlan: 100}}
vms:
  a: {switch: s1, port: 1, network: red}
  c: {switch: s3, port: 1, network: red}
"""
LINE_PORTS = {1: [1, 10], 2: [10, 11], 3: [1, 11]}
LINE_LINKS = [LinkKey.of(1, 10, 2, 10), LinkKey.of(2, 11, 3, 11)]


def test_a_switch_whose_links_are_all_found_waits_for_the_links_of_the_others() -> None:
    """s1's rule toward c on s3 needs the s2-s3 link: s1 is not reconciled when only its own link is found."""
    old = Harness(model_from(LINE), LINE_PORTS, LINE_LINKS)
    old.send(1, 1, mac(1), BCAST)
    old.send(3, 1, mac(3), BCAST)
    assert outputs(old.send(1, 1, mac(1), mac(3))) == {(3, 1)}
    fake = FakeFabric(model_from(LINE), clock=FakeClock())
    for dpid, ports in sorted(LINE_PORTS.items()):
        fake.flows[dpid] = {}
        fake.apply(fake.core.switch_up(dpid, [PortInfo(p, f"p{p}") for p in ports]))
    for dpid in sorted(LINE_PORTS):
        assert changes(fake.reconcile(dpid, held(old, dpid))) == {}
    assert changes(fake.link_up(LINE_LINKS[0])) == {}
    effects = fake.link_up(LINE_LINKS[1])
    assert {d: effects.batch(d) is not None for d in (1, 2, 3)} == {1: True, 2: True, 3: True}
    for dpid in (1, 2, 3):
        batch = effects.batch(dpid)
        assert batch is not None and (batch.deletes, batch.adds) == ((), ()), dpid
