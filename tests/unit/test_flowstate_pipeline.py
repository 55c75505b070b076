"""Flow-state diffs and the pipeline check."""

from __future__ import annotations

import pytest

from controller.flows.flowstate import FlowState
from controller.flows.pipeline import APP_ACL, APP_FLOOD, APP_L2, PIPELINE, T_ACL_PORT, T_FORWARD, PipelineError
from controller.flows.rules import Ct, Output, Rule, make_match

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
