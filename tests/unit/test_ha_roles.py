"""The OpenFlow role state machine of one instance (controller.ha.roles), and the ``coordination`` key."""

from __future__ import annotations

import pytest

from controller.config import ConfigError, loads_model
from controller.ha.elector import redacted
from controller.ha.roles import MASK64, MASTER, NOCHANGE, SLAVE, RoleRequest, Roles, Verdict, newer

T0 = 1_700_000_000_000  # an election's wall clock, ms


def test_without_coordination_every_connected_switch_is_equal_and_writable() -> None:
    roles = Roles(coordinated=False)
    assert roles.connected(1) == Verdict()
    assert roles.role(1) == "equal" and roles.writable(1)
    assert not roles.writable(2)
    roles.disconnected(1)
    assert not roles.writable(1) and roles.role(1) is None


def test_follower_asks_the_generation_then_becomes_slave_and_never_writes() -> None:
    roles = Roles(coordinated=True)
    assert roles.connected(1).requests == (RoleRequest(1, NOCHANGE),)
    assert roles.replied(1, "equal", 41).requests == (RoleRequest(1, SLAVE, 41),)
    assert roles.replied(1, SLAVE, 41) == Verdict()
    assert roles.role(1) == SLAVE and not roles.writable(1)
    assert roles.seen == 41


def test_leader_claims_every_switch_with_a_growing_generation_and_programs_on_confirmation() -> None:
    roles = Roles(coordinated=True)
    roles.connected(2)
    roles.connected(1)
    roles.replied(1, SLAVE, T0 + 5000)  # a previous term, 5 s in the "future" (clock skew)
    verdict = roles.elected(T0)
    assert roles.generation == T0 + 5001
    assert verdict.requests == (RoleRequest(1, MASTER, T0 + 5001), RoleRequest(2, MASTER, T0 + 5001))
    assert not roles.writable(1), "not before the switch confirmed"
    assert roles.replied(1, MASTER, T0 + 5001) == Verdict(program=(1,))
    assert roles.writable(1) and not roles.writable(2)
    # the next term of the same instance is newer even if the clock went back
    roles.deposed()
    roles.elected(T0 - 1000)
    assert roles.generation == T0 + 5002
    assert not roles.writable(1), "the confirmation of the previous term does not count"


def test_switch_connecting_to_a_leader_is_claimed_at_once() -> None:
    roles = Roles(coordinated=True)
    roles.elected(T0)
    assert roles.connected(7).requests == (RoleRequest(7, MASTER, T0),)


def test_a_claim_refused_as_stale_demotes_at_once_and_sends_no_change() -> None:
    roles = Roles(coordinated=True)
    for dpid in (1, 2):
        roles.connected(dpid)
    roles.elected(T0)
    roles.replied(1, MASTER, T0)
    assert roles.writable(1)
    verdict = roles.refused(2, MASTER, T0)
    assert verdict.step_down
    assert all(r.role == NOCHANGE for r in verdict.requests), "only questions, no claim, no change"
    assert not roles.leader and not roles.writable(1) and not roles.writable(2)


def test_a_stale_slave_request_is_asked_again_and_a_stale_old_claim_changes_nothing() -> None:
    roles = Roles(coordinated=True)
    roles.connected(1)
    assert roles.refused(1, SLAVE, 3) == Verdict((RoleRequest(1, NOCHANGE),))
    roles.elected(T0)
    assert roles.refused(1, MASTER, T0 - 1) == Verdict((RoleRequest(1, NOCHANGE),)), "a claim of another term"
    assert roles.leader


def test_deposed_leader_hands_switches_back_as_slave_with_the_newest_generation() -> None:
    roles = Roles(coordinated=True)
    roles.connected(1)
    roles.elected(T0)
    roles.replied(1, MASTER, T0)
    verdict = roles.deposed()
    assert verdict.step_down and verdict.requests == (RoleRequest(1, SLAVE, T0),)
    assert not roles.writable(1)
    assert roles.deposed() == Verdict(), "deposing twice does nothing"


def test_a_late_master_reply_after_the_term_ended_is_handed_back() -> None:
    roles = Roles(coordinated=True)
    roles.connected(1)
    roles.elected(T0)
    roles.deposed()
    assert roles.replied(1, MASTER, T0).requests == (RoleRequest(1, SLAVE, T0),)
    assert not roles.writable(1)


def test_a_reply_of_an_older_term_while_leader_does_not_confirm_this_term() -> None:
    roles = Roles(coordinated=True)
    roles.connected(1)
    roles.elected(T0)
    roles.deposed()
    roles.elected(T0 + 10)
    assert roles.replied(1, MASTER, T0) == Verdict()
    assert not roles.writable(1)
    assert roles.replied(1, MASTER, T0 + 10) == Verdict(program=(1,))


def test_generation_ids_compare_as_the_switch_does() -> None:
    assert newer(5, 5) and newer(6, 5) and not newer(4, 5)
    assert newer(0, MASK64), "wraps around"
    roles = Roles(coordinated=True)
    roles.seen = MASK64
    roles.elected(0)
    assert roles.generation == 0 and newer(roles.generation, MASK64)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("etcd3+http://h:2379", "controller.coordination: backend 'etcd3+http' cannot elect a leader; use one of"),
        ("zookeeper", "controller.coordination: expected a tooz backend URL such as zookeeper://10.0.0.9:2181"),
        ("''", "controller.coordination: must not be empty"),
    ],
)
def test_coordination_key_is_checked(value: str, error: str) -> None:
    with pytest.raises(ConfigError) as err:
        loads_model(f"controller: {{coordination: {value}}}\nswitches: {{s1: {{dpid: 1}}}}\n", "net.yaml")
    assert any(line.startswith(error) for line in err.value.errors), err.value.errors


def test_coordination_key_is_optional() -> None:
    assert loads_model("switches: {s1: {dpid: 1}}\n", "n").controller.coordination is None
    text = "controller: {coordination: 'redis://127.0.0.1:6379?lock_timeout=2'}\nswitches: {s1: {dpid: 1}}\n"
    assert loads_model(text, "n").controller.coordination == "redis://127.0.0.1:6379?lock_timeout=2"


def test_passwords_are_not_logged() -> None:
    assert redacted("redis://:s3cret@10.0.0.9:6379?lock_timeout=5") == "redis://***@10.0.0.9:6379?lock_timeout=5"
    assert redacted("zookeeper://10.0.0.9:2181") == "zookeeper://10.0.0.9:2181"


def test_a_switch_without_a_generation_id_yet_is_not_taken_for_the_largest() -> None:
    roles = Roles(coordinated=True)
    roles.connected(1)
    assert roles.replied(1, "equal", MASK64).requests == (RoleRequest(1, SLAVE, 0),)
    assert roles.seen == 0
    roles.elected(T0)
    assert roles.generation == T0
