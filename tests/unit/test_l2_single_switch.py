"""L2 switching on one switch, asserted on the simulated flow table."""

from __future__ import annotations

from controller.config.model import Model
from controller.flows.pipeline import T_LEARN
from tests.unit.fabric_helpers import BCAST, Harness, mac, model_from, outputs

ONE_SWITCH = """
controller: {host_timeout: 30, max_hosts_per_port: 3}
switches: {s1: {dpid: 0x1}}
networks:
  red: {vlan: 100}
  blue: {vlan: 200}
vms:
  r1: {switch: s1, port: 1, network: red}
  r2: {switch: s1, port: 2, network: red}
  r3: {switch: s1, port: 3, network: red, mac: "02:00:00:00:01:03"}
  b1: {switch: s1, port: 4, network: blue}
  b2: {switch: s1, port: "tap-b2", network: blue}
"""


def harness() -> Harness:
    return Harness(model_from(ONE_SWITCH), {1: [1, 2, 3, 4, (5, "tap-b2"), 6]})


def test_broadcast_floods_only_within_the_network() -> None:
    h = harness()
    assert outputs(h.send(1, 1, mac(1), BCAST)) == {(1, 2), (1, 3)}
    assert outputs(h.send(1, 4, mac(4), BCAST)) == {(1, 5)}


def test_interface_name_port_is_resolved() -> None:
    h = harness()
    assert outputs(h.send(1, 5, mac(5), BCAST)) == {(1, 4)}


def test_undeclared_port_is_dropped() -> None:
    h = harness()
    trace = h.send(1, 6, mac(6), BCAST)
    assert outputs(trace) == set() and trace.to_controller == []


def test_tagged_frame_from_vm_is_dropped() -> None:
    h = harness()
    trace = h.send(1, 1, mac(1), BCAST, vlan_vid=0x1000 | 200)
    assert outputs(trace) == set()


def test_declared_mac_is_the_only_source_allowed() -> None:
    h = harness()
    assert outputs(h.send(1, 3, "02:00:00:00:01:03", BCAST)) == {(1, 1), (1, 2)}
    assert outputs(h.send(1, 3, "02:00:00:00:09:09", BCAST)) == set()


def test_learned_unicast_goes_to_one_port_without_packet_in() -> None:
    h = harness()
    h.send(1, 1, mac(1), BCAST)
    h.send(1, 2, mac(2), mac(1))
    before = h.packet_ins
    trace = h.send(1, 1, mac(1), mac(2))
    assert outputs(trace) == {(1, 2)}
    assert trace.to_controller == [] and h.packet_ins == before
    assert trace.outputs[0][2]["vlan_vid"] == 0  # delivered untagged


def test_unknown_unicast_floods_in_network_and_is_learned() -> None:
    h = harness()
    trace = h.send(1, 1, mac(1), mac(9))
    assert outputs(trace) == {(1, 2), (1, 3)}
    assert (100, mac(1)) in h.hosts


def test_same_mac_in_other_network_does_not_leak() -> None:
    h = harness()
    h.send(1, 1, mac(1), BCAST)  # red learns mac(1) on port 1
    trace = h.send(1, 4, mac(4), mac(1))  # blue sends to that MAC
    assert outputs(trace) == {(1, 5)}


def test_host_move_replaces_old_location_at_once() -> None:
    h = harness()
    h.send(1, 1, mac(7), BCAST)
    h.send(1, 2, mac(7), BCAST)  # the host moved to port 2
    assert h.hosts[(100, mac(7))].port == 2
    assert outputs(h.send(1, 3, "02:00:00:00:01:03", mac(7))) == {(1, 2)}


def test_host_expiry_removes_its_rules_everywhere() -> None:
    h = harness()
    h.send(1, 1, mac(1), BCAST)
    rule = next(r for r in h.core.flows.rules(1) if r.table == T_LEARN and r.idle_timeout)
    assert rule.idle_timeout == 30
    h.flow_removed(1, rule, idle=True)
    assert (100, mac(1)) not in h.hosts
    assert outputs(h.send(1, 2, mac(2), mac(1), learn=False)) == {(1, 1), (1, 3)}  # flooded again


def test_deleted_flow_that_is_not_idle_does_not_expire_host() -> None:
    h = harness()
    h.send(1, 1, mac(1), BCAST)
    rule = next(r for r in h.core.flows.rules(1) if r.table == T_LEARN and r.idle_timeout)
    h.flow_removed(1, rule, idle=False)
    assert (100, mac(1)) in h.hosts


def test_host_cap_per_port_stops_mac_flood() -> None:
    h = harness()
    for i in range(10):
        h.send(1, 1, f"02:aa:00:00:00:{i:02x}", BCAST)
    assert h.hosts.on_port(1, 1) == 3
    trace = h.send(1, 1, "02:aa:00:00:00:99", BCAST)
    assert trace.to_controller == [] and outputs(trace) == {(1, 2), (1, 3)}  # locked, still forwarded
    h.send(1, 2, mac(2), BCAST)
    assert (100, mac(2)) in h.hosts
    # Hosts on the full port expire: learning there resumes.
    for rule in [r for r in h.core.flows.rules(1) if r.idle_timeout and ("in_port", 1) in r.match]:
        h.flow_removed(1, rule, idle=True)
    assert h.send(1, 1, "02:aa:00:00:00:99", BCAST).to_controller


def test_multicast_source_is_never_learned() -> None:
    h = harness()
    h.send(1, 1, "03:00:00:00:00:01", BCAST)
    assert len(h.hosts) == 0


def test_zero_config_puts_every_port_in_one_network() -> None:
    h = Harness(Model.zero(), {1: [1, 2, 3]})
    assert outputs(h.send(1, 1, mac(1), BCAST)) == set()  # new ports: not flooded to yet
    h.clock.now = 10.0
    h.tick()
    assert outputs(h.send(1, 1, mac(1), BCAST)) == {(1, 2), (1, 3)}
    h.send(1, 3, mac(3), mac(1))
    assert outputs(h.send(1, 1, mac(1), mac(3))) == {(1, 3)}


def test_reconcile_keeps_right_flows_and_removes_wrong_ones() -> None:
    h = harness()
    wanted = h.core.flows.rules(1)
    keep = sorted(wanted, key=lambda r: r.cookie)[:3]
    batch = h.reconcile(1, keep, foreign=[0xDEAD]).batch(1)
    assert batch is not None
    assert batch.deletes == (0xDEAD,)
    assert {r.cookie for r in batch.adds} == {r.cookie for r in wanted} - {r.cookie for r in keep}


def test_reconcile_adopts_hosts_from_the_dump() -> None:
    h = harness()
    h.send(1, 1, mac(1), BCAST)
    dump = [r for r in h.core.flows.rules(1)]
    fresh = harness()
    batch = fresh.reconcile(1, dump).batch(1)
    assert batch is not None
    assert batch.deletes == () and batch.adds == ()
    assert (100, mac(1)) in fresh.hosts


def test_reload_changes_only_what_differs() -> None:
    h = harness()
    h.send(1, 1, mac(1), BCAST)
    before = h.core.flows.rules(1)
    moved = ONE_SWITCH.replace("b1: {switch: s1, port: 4, network: blue}", "b1: {switch: s1, port: 4, network: red}")
    batches = h.reload(model_from(moved)).batches
    (batch,) = batches
    assert 0 < len(batch.adds) <= 5 and 0 < len(batch.deletes) <= 5
    assert len(before & h.core.flows.rules(1)) >= len(before) - 5
    assert outputs(h.send(1, 4, mac(4), BCAST)) == {(1, 1), (1, 2), (1, 3)}


def test_declared_mac_cannot_be_hijacked_from_another_port() -> None:
    h = harness()
    h.send(1, 3, "02:00:00:00:01:03", BCAST)
    h.send(1, 1, "02:00:00:00:01:03", BCAST)  # r1 (no declared mac) claims r3's MAC
    assert h.hosts[(100, "02:00:00:00:01:03")].port == 3
    assert outputs(h.send(1, 2, mac(2), "02:00:00:00:01:03")) == {(1, 3)}
