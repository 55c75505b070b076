"""Flow-state diffs and the pipeline check."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle

import pytest

from controller.flows.flowstate import Diff, FlowState
from controller.flows.pipeline import APP_ACL, APP_FLOOD, APP_L2, PIPELINE, T_ACL_PORT, T_FORWARD, PipelineError
from controller.flows.rules import (
    OFPP_CONTROLLER,
    Clone,
    Ct,
    CtClear,
    DecTtl,
    Group,
    Move,
    Nat,
    Output,
    PopVlan,
    PushVlan,
    Resubmit,
    Rule,
    SetField,
    make_match,
)

A = Rule(APP_L2, T_FORWARD, 10, make_match(eth_dst="02:00:00:00:00:01"), (Output(1),))
B = Rule(APP_L2, T_FORWARD, 10, make_match(eth_dst="02:00:00:00:00:02"), (Output(2),))


def test_shared_rule_is_added_once_and_deleted_with_the_last_owner() -> None:
    state = FlowState()
    assert state.replace(("x",), {1: frozenset({A})})[1].adds == {A}
    assert state.replace(("y",), {1: frozenset({A, B})})[1].adds == {B}
    assert state.replace(("x",), {}) == {}
    diff = state.replace(("y",), {})
    assert diff[1].deletes == {A, B}
    assert state.rules(1) == frozenset()


def test_replace_all_sends_only_the_difference() -> None:
    state = FlowState()
    state.replace_all({("x",): {1: frozenset({A})}})
    diff = state.replace_all({("x",): {1: frozenset({B})}})
    assert diff[1].adds == {B} and diff[1].deletes == {A}
    assert state.replace_all({("x",): {1: frozenset({B})}}) == {}


def test_cookie_is_stable_and_content_derived() -> None:
    same = Rule(APP_L2, T_FORWARD, 10, make_match(eth_dst="02:00:00:00:00:01"), (Output(1),))
    assert A.cookie == same.cookie and A.cookie != B.cookie
    assert A.cookie >> 56 == APP_L2
    assert A.cookie == 0x4_0000_0000_0000_00 | (A.cookie & ((1 << 56) - 1))


def test_cookies_keep_their_values() -> None:
    """Cookies name rules on switches across restarts and upgrades: these values must never change.

    (They changed once, on 2026-12-01, when the cookie became a digest of the
    rule's OpenFlow encoding (:attr:`Rule.encoded`): a controller of that
    version replaces every flow of an older one once, a bundle per switch.)
    """
    rules = [
        Rule(
            4,
            10,
            10,
            make_match(in_port=1, vlan_vid=0x1064, eth_src="02:00:00:00:00:01"),
            goto=20,
            idle_timeout=300,
            flags=1,
        ),
        Rule(
            4,
            20,
            10,
            make_match(vlan_vid=0x1064, eth_dst="02:00:00:00:00:01"),
            (Clone((SetField("reg7", 2), Resubmit(40))), SetField("reg7", 1), Resubmit(40)),
        ),
        Rule(4, 10, 0, (), (Output(OFPP_CONTROLLER, 128),), goto=20, meter=1),
        Rule(
            5,
            30,
            100,
            make_match(eth_type=0x0800, ipv4_dst=("10.0.0.0", "255.255.255.0")),
            (Ct(zone=3, commit=True, recirc_table=31, nat=Nat(dst="10.0.0.5", port=80), mark=7),),
            write_metadata=(5, 0xFF),
        ),
        Rule(
            6,
            40,
            5,
            make_match(in_port=3),
            (
                PushVlan(),
                SetField("vlan_vid", 0x1064),
                Group(0x4000001),
                PopVlan(),
                Move("eth_src", "eth_dst"),
                CtClear(),
                DecTtl(),
            ),
        ),
    ]
    for _ in range(2):  # computed, then cached
        assert [r.cookie for r in rules] == [
            0x407CDC8EFC9D4DA,
            0x40124BB1F4E57DF,
            0x4B952B58B9B7CED,
            0x50B326B8B16E7D2,
            0x6311F9A9BD5A5D3,
        ]


def test_rule_init_sets_every_field_and_hash_follows_equality() -> None:
    rule = Rule(APP_L2, T_FORWARD, 10, make_match(eth_dst="02:00:00:00:00:01"), (Output(1),), goto=3, meter=2)
    assert dataclasses.asdict(rule) == {
        "app": APP_L2,
        "table": T_FORWARD,
        "priority": 10,
        "match": (("eth_dst", "02:00:00:00:00:01"),),
        "actions": ({"port": 1, "max_len": 0},),
        "goto": 3,
        "meter": 2,
        "idle_timeout": 0,
        "flags": 0,
        "write_metadata": None,
    }
    assert dataclasses.replace(rule, meter=None) == Rule(APP_L2, T_FORWARD, 10, rule.match, rule.actions, goto=3)
    assert inspect.signature(Rule).parameters.keys() == {f.name for f in dataclasses.fields(Rule)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.priority = 11  # type: ignore[misc]
    twin = Rule(APP_L2, T_FORWARD, 10, make_match(eth_dst="02:00:00:00:00:01"), (Output(1),), goto=3, meter=2)
    assert hash(rule) == hash(twin) and len({rule, twin, A}) == 2


def test_pipeline_rejects_foreign_owner_bad_field_and_bad_goto() -> None:
    with pytest.raises(PipelineError, match="may not write table forward"):
        PIPELINE.check_rule(Rule(APP_FLOOD, T_FORWARD, 1))
    with pytest.raises(PipelineError, match="does not match on tcp_dst"):
        PIPELINE.check_rule(Rule(APP_L2, T_FORWARD, 1, make_match(tcp_dst=80)))
    with pytest.raises(PipelineError, match="may not go to table 1"):
        PIPELINE.check_rule(Rule(APP_L2, T_FORWARD, 1, goto=1))
    with pytest.raises(PipelineError, match="may not go to table 6"):
        PIPELINE.check_rule(Rule(APP_ACL, T_ACL_PORT, 1, (), (Ct(1, recirc_table=T_FORWARD),)))
    with pytest.raises(PipelineError, match="unknown table 9"):
        PIPELINE.check_rule(Rule(APP_L2, 9, 1))


def test_conflicting_rules_for_one_match_are_rejected() -> None:
    other = Rule(APP_L2, T_FORWARD, 10, make_match(eth_dst="02:00:00:00:00:01"), (Output(3),))
    with pytest.raises(PipelineError, match="conflicting"):
        PIPELINE.check_rules([A, other])


def test_check_each_rejects_what_check_rule_rejects_also_for_a_known_shape() -> None:
    """A rule whose shape an earlier rule made known is still checked for where its actions go."""
    fine = Rule(APP_ACL, T_ACL_PORT, 1, make_match(in_port=1), (Ct(1, recirc_table=T_ACL_PORT),))
    bad = Rule(APP_ACL, T_ACL_PORT, 1, make_match(in_port=2), (Ct(1, recirc_table=T_FORWARD),))
    PIPELINE.check_each([fine])
    with pytest.raises(PipelineError, match="may not go to table 6"):
        PIPELINE.check_each([fine, bad])
    with pytest.raises(PipelineError, match="does not match on tcp_dst"):
        PIPELINE.check_each([A, Rule(APP_L2, T_FORWARD, 1, make_match(tcp_dst=80))])


def test_a_rule_two_segments_want_on_a_switch_stays_until_both_let_go() -> None:
    """One-rule segments (a host's rule on a switch) and larger ones count the same rule together."""
    state = FlowState()
    merged: dict[int, Diff] = {}
    state.replace_into(("x",), {1: frozenset({A}), 2: frozenset({A})}, merged)
    state.replace_into(("y",), {1: frozenset({A})}, merged)
    state.replace_into(("z",), {1: frozenset({A, B})}, merged)
    assert merged[1].adds == {A, B} and merged[2].adds == {A}
    assert state.replace(("x",), {}) == {2: Diff(set(), {A})}
    assert state.replace(("y",), {}) == {}
    assert state.rules(1) == {A, B} and dict(state.app_counts(1)) == {APP_L2: 2}
    assert state.replace(("z",), {1: frozenset({B})}) == {1: Diff(set(), {A})}
    assert state.rules(1) == {B}


def test_a_rule_deleted_then_added_back_in_one_merge_cancels() -> None:
    state = FlowState()
    state.replace(("x",), {1: frozenset({A})})
    merged: dict[int, Diff] = {}
    state.replace_into(("x",), {}, merged)
    state.replace_into(("y",), {1: frozenset({A})}, merged)
    state.replace_into(("z",), {1: frozenset({A, B})}, merged)
    state.replace_into(("z",), {}, merged)
    assert merged[1] == Diff(set(), set()) and state.rules(1) == {A}


def test_a_rule_copied_or_pickled_is_equal_with_its_hash_and_cookie() -> None:
    """Rules are built by ``Rule.__new__``; copies and pickles come back through it (``__getnewargs__``)."""
    rule = Rule(APP_L2, T_FORWARD, 10, A.match, (Output(1),), goto=3, meter=2, write_metadata=(1, 3))
    for twin in (copy.copy(rule), copy.deepcopy(rule), pickle.loads(pickle.dumps(rule))):
        assert twin == rule and twin is not rule and type(twin) is Rule
        assert hash(twin) == hash(rule) and twin.cookie == rule.cookie
    assert not hasattr(rule, "__dict__")
