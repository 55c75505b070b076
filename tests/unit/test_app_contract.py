"""The app contract: pluggable apps, the pipeline as the registry, the core naming no app."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import apps
from apps.base import AppContext, Segments
from controller.compose import build_core
from controller.config.model import Model
from controller.core import Core
from controller.fabric.view import FabricView
from controller.flows.pipeline import BUILTIN_TABLES, T_FORWARD, T_LEARN, T_MIRROR, Pipeline, PipelineError, TableSpec
from controller.flows.rules import Rule
from controller.metrics import Metrics
from controller.tools.fakefabric import FakeFabric
from tests.unit.fabric_helpers import BCAST, Harness, mac, model_from, outputs

ROOT = Path(__file__).resolve().parents[2]

TWO = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks: {red: {vlan: 100, acl_in: [web]}, blue: {vlan: 200}}
vms:
  r1: {switch: s1, port: 1, network: red, mac: "02:00:00:00:01:01", ip: 10.0.0.1/24}
  r2: {switch: s2, port: 1, network: red, mac: "02:00:00:00:01:02", ip: 10.0.0.2/24}
  b1: {switch: s1, port: 2, network: blue}
acls:
  web: [{action: allow}]
load_balancers:
  lb1: {vip: 10.0.0.100, network: red, protocol: tcp, port: 80, backends: [r2]}
mirrors:
  tap: {switch: s2, port: 20, vms: [r1]}
"""


class Probe:
    """A third-party app with a table of its own between mirror and forward."""

    name = "probe"
    app_id = 64
    tables = (TableSpec(57, "probe", {"probe": (0, 0)}, frozenset()),)

    def __init__(self, ctx: AppContext) -> None:
        self.after = ctx.pipeline.next_table(57)

    def compile(self, view: FabricView) -> Segments:
        return {("probe", d): {d: frozenset({Rule(self.app_id, 57, 0, goto=self.after)})} for d in view.dpids}


def _core(model: Model, classes: list[type]) -> Core:
    metrics = Metrics()
    enabled = apps.instantiate(classes, lambda p: AppContext(p, metrics, model, 0.0))
    pipeline = Pipeline.of({a.name: a.app_id for a in enabled}, [t for c in classes for t in getattr(c, "tables", ())])
    return Core(model, enabled, pipeline, metrics, verify=True)


def test_inserting_a_table_renumbers_nothing_and_changes_no_unrelated_cookie() -> None:
    model = model_from(TWO)
    builtin = [apps._load(target) for target in apps.BUILTIN.values()]
    before = FakeFabric.from_model(model)
    after = FakeFabric.from_model(model, core=_core(model, builtin + [Probe]))
    assert [t.table_id for t in after.core.pipeline.tables] == sorted([t.table_id for t in BUILTIN_TABLES] + [57])
    for dpid in (1, 2):
        old = {r.cookie: r for r in before.core.flows.rules(dpid)}
        new = {r.cookie: r for r in after.core.flows.rules(dpid)}
        changed = {r for c, r in old.items() if c not in new}
        # Only rules that went on to the next table (mirror's) now go to the inserted one.
        assert changed and all(r.table == T_MIRROR and r.goto == T_FORWARD for r in changed)
        assert all(r.goto == 57 for c, r in new.items() if c not in old and r.table == T_MIRROR)


def test_pipeline_rejects_clashing_tables_and_out_of_band_rules() -> None:
    with pytest.raises(PipelineError, match="tables clash"):
        Pipeline.of({"l2": 4, "probe": 64}, [TableSpec(T_LEARN, "probe", {"probe": (0, 0)}, frozenset())])
    pipeline = Pipeline.of(apps_ids())
    with pytest.raises(PipelineError, match="priority 70000"):
        pipeline.check_rule(Rule(4, T_LEARN, 70000))
    with pytest.raises(PipelineError, match="may not write table learn"):
        pipeline.check_rule(Rule(2, T_LEARN, 1))


def apps_ids() -> dict[str, int]:
    return {name: int(apps._load(target).app_id) for name, target in apps.BUILTIN.items()}


def test_apps_are_enabled_by_name_and_unknown_names_are_clear_errors() -> None:
    text = TWO.split("mirrors:")[0].replace("networks: {red: {vlan: 100, acl_in: [web]}", "networks: {red: {vlan: 100}")
    text = text.split("acls:")[0]
    core = build_core(model_from("controller: {apps: [ingress, l2, flood]}\n" + text))
    assert [a.name for a in core.apps] == ["ingress", "l2", "flood"]
    assert [t.name for t in core.pipeline.tables] == ["ingress", "learn", "forward", "flood", "egress", "output"]
    with pytest.raises(
        apps.AppError, match="unknown app 'nat' \\(available: acl, dhcp, flood, ingress, l2, lb, mirror, router\\)"
    ):
        build_core(model_from("controller: {apps: [ingress, l2, flood, nat]}\n" + text))
    with pytest.raises(apps.AppError, match="app 'l2' is required"):
        build_core(model_from("controller: {apps: [ingress, flood]}\n" + text))


def test_a_switch_with_only_the_required_apps_still_switches() -> None:
    model = model_from(
        "controller: {apps: [ingress, l2, flood]}\n"
        "switches: {s1: {dpid: 1}}\nnetworks: {red: {vlan: 100}}\n"
        "vms: {a: {switch: s1, port: 1, network: red}, b: {switch: s1, port: 2, network: red}}\n"
    )
    h = Harness(model, {1: [1, 2]})
    h.send(1, 2, mac(2), BCAST)
    assert outputs(h.send(1, 1, mac(1), mac(2))) == {(1, 2)}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_core_and_shim_import_no_app_module_but_the_contract() -> None:
    for name in ("controller/core.py", "controller/app.py"):
        app_imports = {m for m in _imports(ROOT / name) if m == "apps" or m.startswith("apps.")}
        assert app_imports <= {"apps.base"}, (name, app_imports)


def test_no_module_of_controller_or_apps_is_over_500_lines() -> None:
    sizes = {
        p.relative_to(ROOT): len(p.read_text().splitlines())
        for top in ("controller", "apps")
        for p in (ROOT / top).rglob("*.py")
    }
    assert {p: n for p, n in sizes.items() if n > 500} == {}


def test_vmn_check_names_an_unknown_app(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from controller.cli import main

    path = tmp_path / "net.yaml"
    path.write_text("controller: {apps: [ingress, l2, flood, nat]}\nswitches: {s1: {dpid: 1}}\n")
    assert main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == (
        "controller.apps: unknown app 'nat' (available: acl, dhcp, flood, ingress, l2, lb, mirror, router)\n"
    )
