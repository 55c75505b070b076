"""Expected reachability, probing schedule and matrix output of the Mininet check."""

from __future__ import annotations

import doctest
import json
import sys
from collections.abc import Mapping
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # mininet_scripts is not an installed package
    sys.path.insert(0, str(ROOT))

from controller.config.model import Model, Network, Vm
from mininet_scripts import reachability
from mininet_scripts.reachability import Case, Pair, Schedule


def vm(name: str, network: str, ip: str | None, switch: str = "s1", port: int = 1) -> Vm:
    return Vm(name, switch, port, network, IPv4Interface(ip) if ip else None)


def model(*vms: Vm) -> Model:
    networks = tuple(Network(name, vlan) for vlan, name in enumerate(sorted({v.network for v in vms}), start=10))
    return Model(networks=networks, vms=tuple(sorted(vms, key=lambda v: v.name)))


TWO_TENANTS = model(
    vm("a1", "tenant-a", "10.0.0.1/24"),
    vm("a2", "tenant-a", "10.0.0.3/24", switch="s2"),
    vm("b1", "tenant-b", "10.0.0.2/24"),
    vm("b2", "tenant-b", "10.0.0.4/24", switch="s2"),
)


class FakeProbe:
    """Answers from a fixed matrix; pairs in ``late`` answer only from their ``late[pair]``-th try."""

    def __init__(self, truth: Mapping[Pair, bool], late: Mapping[Pair, int] | None = None) -> None:
        self.truth = truth
        self.late = late or {}
        self.rounds: list[tuple[Pair, ...]] = []
        self.tries: dict[Pair, int] = {}

    def __call__(self, pairs: tuple[Pair, ...]) -> dict[Pair, bool]:
        self.rounds.append(pairs)
        for pair in pairs:
            self.tries[pair] = self.tries.get(pair, 0) + 1
        return {p: self.truth[p] and self.tries[p] >= self.late.get(p, 1) for p in pairs}


class FakeClock:
    """Advances one second per reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


# --- expected matrix -----------------------------------------------------------


def test_same_network_reaches_and_other_networks_do_not() -> None:
    expected = reachability.expected_matrix(TWO_TENANTS)

    assert expected == {
        ("a1", "a2"): True,
        ("a1", "b1"): False,
        ("a1", "b2"): False,
        ("a2", "a1"): True,
        ("a2", "b1"): False,
        ("a2", "b2"): False,
        ("b1", "a1"): False,
        ("b1", "a2"): False,
        ("b1", "b2"): True,
        ("b2", "a1"): False,
        ("b2", "a2"): False,
        ("b2", "b1"): True,
    }


def test_vms_without_ip_take_no_part() -> None:
    expected = reachability.expected_matrix(model(vm("a1", "n", "10.0.0.1/24"), vm("a2", "n", None)))

    assert expected == {}
    assert [v.name for v in reachability.probed_vms(TWO_TENANTS)] == ["a1", "a2", "b1", "b2"]


def test_same_network_but_other_subnet_is_unreachable() -> None:
    expected = reachability.expected_matrix(
        model(vm("a1", "n", "10.0.0.1/24"), vm("a2", "n", "10.0.1.1/24"), vm("a3", "n", "10.0.2.3/16"))
    )

    assert expected[("a1", "a2")] is False
    # a3's /16 covers a1, but a1's /24 has no route back to a3.
    assert expected[("a1", "a3")] is False
    assert expected[("a3", "a1")] is False
    assert expected[("a2", "a3")] is False


# --- measuring -----------------------------------------------------------------


def test_measure_reports_what_the_probe_sees() -> None:
    truth = {pair: pair in {("a1", "a2"), ("a1", "b1")} for pair in reachability.expected_matrix(TWO_TENANTS)}

    measured = reachability.measure(
        reachability.expected_matrix(TWO_TENANTS),
        FakeProbe(truth),
        FakeClock(),
        Schedule(deadline=10),
    )

    assert measured == truth


def test_reachable_pairs_are_retried_until_they_answer() -> None:
    expected = reachability.expected_matrix(TWO_TENANTS)
    probe = FakeProbe(expected, late={("a1", "a2"): 4})

    measured = reachability.measure(expected, probe, FakeClock(), Schedule(deadline=100))

    assert measured == expected
    assert probe.tries[("a1", "a2")] == 4
    assert probe.tries[("a2", "a1")] == 1


def test_reachable_pairs_give_up_at_the_deadline_but_are_tried_once() -> None:
    expected = reachability.expected_matrix(TWO_TENANTS)
    never = {pair: False for pair in expected}
    probe = FakeProbe(never)

    measured = reachability.measure(expected, probe, FakeClock(), Schedule(deadline=0))

    assert measured == never
    assert probe.tries[("a1", "a2")] == 1

    probe = FakeProbe(never)
    reachability.measure(expected, probe, FakeClock(), Schedule(deadline=5.5))
    assert probe.tries[("a1", "a2")] == 5  # clock reads 1..5 before the deadline, 6 after


def test_unreachable_pairs_are_tried_after_the_reachable_ones_settle() -> None:
    expected = reachability.expected_matrix(TWO_TENANTS)
    probe = FakeProbe(expected, late={("b1", "b2"): 3})

    reachability.measure(expected, probe, FakeClock(), Schedule(deadline=100, negative_tries=3))

    negatives = {pair for pair, value in expected.items() if not value}
    first_negative_round = next(i for i, pairs in enumerate(probe.rounds) if set(pairs) & negatives)
    assert first_negative_round == 3  # rounds 0-2 wait for b1 -> b2
    assert all(probe.tries[pair] == 3 for pair in negatives)
    assert all(pair not in negatives for pairs in probe.rounds[:3] for pair in pairs)


def test_one_answer_makes_an_unreachable_pair_a_mismatch() -> None:
    expected = reachability.expected_matrix(TWO_TENANTS)
    truth = dict(expected)
    truth[("b2", "a1")] = True

    measured = reachability.measure(expected, FakeProbe(truth), FakeClock(), Schedule(deadline=100))

    assert reachability.mismatches(expected, measured) == (("b2", "a1"),)


def test_no_pairs_means_no_probing() -> None:
    probe = FakeProbe({})

    assert reachability.measure({}, probe, FakeClock(), Schedule(deadline=100)) == {}
    assert probe.rounds == []


# --- comparing and printing ------------------------------------------------------


def test_mismatches_are_sorted_and_count_missing_measurements() -> None:
    expected = {("b", "a"): True, ("a", "b"): False, ("a", "c"): True}
    measured = {("b", "a"): False, ("a", "b"): True}

    assert reachability.mismatches(expected, measured) == (("a", "b"), ("a", "c"), ("b", "a"))
    assert reachability.mismatches(expected, dict(expected)) == ()


def test_model_plan_pings_same_network_pairs_only() -> None:
    plan = reachability.model_plan(TWO_TENANTS)

    assert reachability.reaches(plan) == reachability.expected_matrix(TWO_TENANTS)
    assert plan[("a1", "a2")] == Case("l2", True, "10.0.0.3")
    assert plan[("a1", "b1")] == Case("isolated", False, "10.0.0.2")


def test_plan_from_json_reads_the_expect_tool_output() -> None:
    text = json.dumps(
        {
            "cases": [
                {"src": "a1", "target": "b1", "ip": "10.0.2.11", "proto": "icmp", "port": None}
                | {"kind": "routed", "reach": True, "why": ["routed by r1"]},
                {"src": "a1", "target": "vip:web", "ip": "10.0.1.100", "proto": "tcp", "port": 80}
                | {"kind": "vip", "reach": True, "why": []},
            ],
            "listeners": [{"vm": "web1", "proto": "tcp", "port": 80}],
        }
    )

    plan, servers = reachability.plan_from_json(text)

    assert plan == {
        ("a1", "b1"): Case("routed", True, "10.0.2.11", "icmp", None, ("routed by r1",)),
        ("a1", "vip:web"): Case("vip", True, "10.0.1.100", "tcp", 80, ()),
    }
    assert servers == (("web1", "tcp", 80),)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{}",
        '{"cases": [{"src": "a", "target": "b"}], "listeners": []}',
        '{"cases": [{"src": "a", "target": "b", "ip": "1.2.3.4", "proto": "icmp", "port": null,'
        ' "kind": "routd", "reach": true, "why": []}], "listeners": []}',
    ],
)
def test_plan_from_json_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        reachability.plan_from_json(text)


MIXED = {
    ("a1", "a2"): Case("l2", True, "10.0.1.12"),
    ("a1", "b1"): Case("routed", True, "10.0.2.11", why=("routed by r1 at s1",)),
    ("a1", "db"): Case("denied", False, "10.0.2.21", why=("routed by r1 at s1", "vm acl_out db-in rule 2 (deny)")),
    ("a1", "lab"): Case("isolated", False, "10.0.3.11"),
    ("a1", "vip:web"): Case("vip", True, "10.0.1.100", "tcp", 80),
    ("b1", "vip:web"): Case("vip", False, "10.0.1.100", "tcp", 80, ("dropped by router r1",)),
}


def test_format_matrix_labels_each_case_with_expected_and_observed() -> None:
    measured = reachability.reaches(MIXED) | {("a1", "lab"): True}

    assert reachability.format_matrix(MIXED, measured).splitlines() == [
        "from\\to  a1        a2        b1        db        lab       vip:web",
        "a1       .         l2 y/y    rt y/y    acl n/n   iso n/y!  vip y/y",
        "b1                           .                             vip n/n",
    ]


def test_format_matrix_is_deterministic_and_widens_for_long_names() -> None:
    plan = {
        ("web-frontend", "db"): Case("l2", True, "10.0.0.2"),
        ("db", "web-frontend"): Case("isolated", False, "10.0.0.1"),
    }
    text = reachability.format_matrix(plan, {})

    assert text == reachability.format_matrix(dict(reversed(list(plan.items()))), {})
    assert text.splitlines() == [
        "from\\to       db            web-frontend",
        "db            .             iso n/?!",
        "web-frontend  l2 y/?!       .",
    ]


def test_summary_counts_kinds_and_spells_out_mismatches_with_why() -> None:
    measured = reachability.reaches(MIXED) | {("a1", "db"): True}

    assert reachability.summary(MIXED, reachability.reaches(MIXED)) == (
        "reachability OK: 6 cases: 1 l2, 1 routed, 1 isolated, 1 denied, 2 vip (1 reach); 0 mismatches"
    )
    assert reachability.summary(MIXED, measured).splitlines() == [
        "reachability MISMATCH: 6 cases: 1 l2, 1 routed, 1 isolated, 1 denied, 2 vip (1 reach); 1 mismatches",
        "  a1 -> db (10.0.2.21), denied: expected unreachable, measured reachable",
        "      routed by r1 at s1",
        "      vm acl_out db-in rule 2 (deny)",
    ]


def test_examples_show_one_case_per_kind_and_a_reaching_vip() -> None:
    assert reachability.examples(MIXED).splitlines() == [
        "l2        a1 -> a2 (10.0.1.12)",
        "            no router or ACL involved",
        "routed    a1 -> b1 (10.0.2.11)",
        "            routed by r1 at s1",
        "isolated  a1 -> lab (10.0.3.11)",
        "            no router or ACL involved",
        "denied    a1 -> db (10.0.2.21)",
        "            routed by r1 at s1",
        "            vm acl_out db-in rule 2 (deny)",
        "vip       a1 -> vip:web (10.0.1.100:80/tcp)",
        "            no router or ACL involved",
    ]


def test_docstring_examples() -> None:
    assert doctest.testmod(reachability).failed == 0
