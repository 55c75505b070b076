"""The Mininet check's expectations, derived from ``vmn trace`` (controller/tools/expect.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from controller.config import load_model, loads_model
from controller.tools import expect

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # mininet_scripts is not an installed package
    sys.path.insert(0, str(ROOT))

from mininet_scripts import reachability  # noqa: E402  (after the sys.path entry)

DEFAULT = ROOT / "topologies" / "default.yaml"


@pytest.fixture(scope="module")
def default_plan() -> tuple[tuple[expect.Case, ...], tuple[expect.Listener, ...]]:
    return expect.plan(load_model(DEFAULT))


def _kinds(cases: tuple[expect.Case, ...]) -> dict[tuple[str, str], tuple[str, bool]]:
    return {(c.src, c.target): (c.kind, c.reach) for c in cases}


def test_default_topology_shows_every_kind(
    default_plan: tuple[tuple[expect.Case, ...], tuple[expect.Listener, ...]],
) -> None:
    cases, listeners = default_plan
    kinds = _kinds(cases)

    assert kinds[("a1", "a2")] == ("l2", True)
    assert kinds[("a1", "b2")] == ("routed", True)  # across the trunk
    assert kinds[("b2", "web1")] == ("routed", True)
    assert kinds[("a1", "lab1")] == ("isolated", False)
    assert kinds[("lab1", "b1")] == ("isolated", False)
    assert kinds[("b1", "db1")] == ("l2", True)  # db1's own network is allowed
    assert kinds[("a1", "db1")] == ("denied", False)  # the ping, at delivery
    assert kinds[("db1", "a1")] == ("denied", False)  # the reply of db1's ping
    assert kinds[("a1", "vip:web")] == ("vip", True)
    assert kinds[("lab1", "vip:web")] == ("vip", False)
    assert ("web1", "vip:web") not in kinds  # a backend does not probe its own VIP
    assert listeners == (expect.Listener("web1", "tcp", 80), expect.Listener("web2", "tcp", 80))
    assert len(cases) == 8 * 7 + 6
    assert [(c.src, c.target) for c in cases] == sorted((c.src, c.target) for c in cases)


def test_why_names_the_router_and_the_acl_rule(
    default_plan: tuple[tuple[expect.Case, ...], tuple[expect.Listener, ...]],
) -> None:
    cases = {(c.src, c.target): c for c in default_plan[0]}

    assert any(line.startswith("routed by r1 at s1: tenant-a") for line in cases[("a1", "b1")].why)
    assert "vm acl_out db-in rule 2 (deny)" in cases[("a1", "db1")].why


def test_json_is_what_the_mininet_check_reads(
    default_plan: tuple[tuple[expect.Case, ...], tuple[expect.Listener, ...]],
) -> None:
    cases, listeners = default_plan

    plan, servers = reachability.plan_from_json(expect.to_json(cases, listeners))

    assert plan[("a1", "db1")].kind == "denied"
    assert plan[("a1", "vip:web")] == reachability.Case("vip", True, "10.0.1.100", "tcp", 80, cases[5].why)
    assert servers == (("web1", "tcp", 80), ("web2", "tcp", 80))
    assert {pair: c.reach for pair, c in plan.items()} == {(c.src, c.target): c.reach for c in cases}


SUBNETS = """
switches: {s1: {dpid: 1}}
networks:
  n: {vlan: 10}
  m: {vlan: 20}
vms:
  x: {switch: s1, port: 1, network: n, ip: 10.0.0.1/24}
  y: {switch: s1, port: 2, network: n, ip: 10.0.1.1/24}
  z: {switch: s1, port: 3, network: n, ip: 10.0.0.2/24}
  w: {switch: s1, port: 4, network: m, ip: 10.0.0.3/24}
"""


def test_without_gateways_only_the_same_network_and_subnet_reaches() -> None:
    cases, listeners = expect.plan(loads_model(SUBNETS))
    kinds = _kinds(cases)

    assert kinds[("x", "z")] == ("l2", True)
    assert kinds[("x", "y")] == ("isolated", False)  # the same network, but no route between the subnets
    assert kinds[("x", "w")] == ("isolated", False)  # the same subnet, another network
    assert listeners == ()


def test_main_prints_json_and_rejects_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "net.yaml"
    good.write_text(SUBNETS)
    assert expect.main([str(good)]) == 0
    plan, _ = reachability.plan_from_json(capsys.readouterr().out)
    assert len(plan) == 12

    bad = tmp_path / "bad.yaml"
    bad.write_text(SUBNETS.replace("network: m", "network: q"))
    assert expect.main([str(bad)]) == 2
    assert "vms.w.network: unknown network 'q'" in capsys.readouterr().err
    assert expect.main([]) == 2
