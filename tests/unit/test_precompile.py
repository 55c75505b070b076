"""Rules compiled ahead (at load) are exactly those a switch's connect would compile, and are used then."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path

import pytest

from apps.base import Segments
from controller.compose import build_core
from controller.config import load_model, model, parse_model
from controller.config.model import Model
from controller.core import Core
from controller.fabric.topology import PortInfo
from controller.fabric.view import FabricView, port_names
from controller.flows.pipeline import APP_INGRESS, T_INGRESS
from controller.flows.rules import Rule, make_match
from controller.tools.fakefabric import FakeFabric
from controller.tools.portplan import placeholder_name, port_numbers

TOPOLOGIES = sorted((Path(__file__).parents[2] / "topologies").glob("*.yaml"))


def make_model(vms: Mapping[str, Mapping[str, object]]) -> Model:
    """One switch (dpid 1), one network, ``vms`` on ports 1, 2, ... unless they say otherwise."""
    return parse_model(
        {
            "switches": {"s1": {"dpid": 1, "bridge": "br1"}},
            "networks": {"n1": {"vlan": 10}},
            "vms": {
                name: {"switch": "s1", "port": i, "network": "n1", **extra}
                for i, (name, extra) in enumerate(sorted(vms.items()), 1)
            },
        }
    )


def ports_of(m: Model, switch: str) -> list[PortInfo]:
    """The ports a simulated switch reports: every port the file names (by its name, or a placeholder)."""
    return [
        PortInfo(no, ref if isinstance(ref, str) else placeholder_name(no))
        for (name, ref), (_, no) in sorted(port_numbers(m).items(), key=repr)
        if name == switch
    ]


def connect(core: Core, dpid: int, ports: list[PortInfo]) -> frozenset[Rule]:
    core.switch_up(dpid, ports)
    core.reconcile(dpid, [])
    return core.flows.rules(dpid)


@pytest.mark.parametrize("path", TOPOLOGIES, ids=[p.stem for p in TOPOLOGIES])
def test_each_switch_connecting_first_gets_what_a_compile_on_connect_makes(path: Path) -> None:
    m = load_model(path)
    for switch in m.switches:
        ports = ports_of(m, switch.name)
        ahead = build_core(m)
        assert ahead.prepare() > 0
        cold = build_core(m)
        assert connect(ahead, switch.dpid, ports) == connect(cold, switch.dpid, ports), switch.name
        named = any(isinstance(ref, str) for (name, ref) in port_numbers(m) if name == switch.name)
        # a switch whose ports the file names by interface name differs from the guess (no ports)
        assert (ahead.precompiled.hits > 0) is not named, switch.name
        assert cold.precompiled.hits == 0


def test_prepared_rules_are_the_ones_sent_with_their_bytes_made() -> None:
    m = make_model(vms={"a": {"mac": "02:00:00:00:00:01", "ip": "10.0.0.1/24"}})
    core = build_core(m)
    core.prepare()
    ahead = core.precompiled.cached(_ahead_view(core, 1))
    assert ahead is not None
    prepared = {id(r) for seg in ahead.values() for rs in seg.values() for r in rs}
    core.switch_up(1, [])
    batch = core.reconcile(1, []).batch(1)
    assert batch is not None
    static = [r for r in batch.adds if id(r) in prepared]
    assert static, "no prepared rule was sent"
    assert all(hasattr(r, "_encoded") for r in static)  # cookie and bytes made ahead (the slot is set)
    assert all(core.precompiled.checked(r) for r in static)


def _ahead_view(core: Core, dpid: int) -> FabricView:
    topo = core.topology.copy()
    topo.add_switch(dpid, ())
    return FabricView(core.model, topo)


def test_reload_prepares_under_the_new_model_only() -> None:
    old = make_model(vms={"a": {"mac": "02:00:00:00:00:01"}})
    new = make_model(vms={"a": {"mac": "02:00:00:00:00:02"}})
    core = build_core(old)
    core.prepare()
    core.reload(new)
    core.prepare()
    cold = build_core(new)
    assert connect(core, 1, []) == connect(cold, 1, [])
    assert core.precompiled.hits > 0


def test_a_port_down_or_renamed_unreferenced_port_keeps_the_view_key() -> None:
    m = make_model(vms={"a": {}})
    core = build_core(m)
    core.switch_up(1, [PortInfo(1, "p1"), PortInfo(2, "p2")])
    before = core.view().key
    core.port_changed(1, PortInfo(2, "p2", up=False))
    assert core.view().key == before


def test_a_port_named_in_the_file_is_part_of_the_view_key() -> None:
    m = make_model(vms={"a": {"port": "eth1"}})
    core = build_core(m)
    core.switch_up(1, [PortInfo(1, "eth1")])
    before = core.view().key
    core.switch_up(1, [PortInfo(2, "eth1")])
    assert core.view().key != before


def test_port_names_covers_every_port_reference_of_the_model() -> None:
    """Every dataclass field typed ``PortRef`` in the model is one :func:`port_names` reads."""
    holders = set()
    for obj in vars(model).values():
        if isinstance(obj, type) and dataclasses.is_dataclass(obj):
            hints = typing.get_type_hints(obj, vars(model))
            if any(hints[f.name] == model.PortRef for f in dataclasses.fields(obj)):
                holders.add(obj.__name__)
    assert holders == {"LinkEnd", "Vm", "Mirror", "Uplink"}
    m = make_model(vms={"a": {"port": "eth7"}})
    assert port_names(m) == {"eth7"}


class _Liar:
    """An app marked static whose rules follow a counter (runtime state): verify must catch it."""

    name = "liar"
    app_id = 200
    static_compile = True

    def __init__(self) -> None:
        self.state = 0

    def compile(self, view: FabricView) -> Segments:
        rule = Rule(APP_INGRESS, T_INGRESS, 100 + self.state, make_match(in_port=999))
        rules: Mapping[int, frozenset[Rule]] = {d: frozenset([rule]) for d in view.dpids}
        return {("liar",): rules}


def test_verify_catches_an_app_marked_static_that_reads_state() -> None:
    m = make_model(vms={"a": {}})
    core = build_core(m, verify=True)
    liar = _Liar()
    core.apps.append(liar)
    core.precompiled.apps.append(liar)
    core.switch_up(1, [])
    liar.state = 1
    with pytest.raises(AssertionError, match="precompiled segments differ"):
        core.recompute()


@pytest.mark.parametrize("path", TOPOLOGIES, ids=[p.stem for p in TOPOLOGIES])
def test_a_whole_fabric_comes_up_as_without_precompiling(path: Path) -> None:
    """Every switch connected, then every link found: the switches hold what a core that never prepared installs."""
    m = load_model(path)
    ahead = FakeFabric.from_model(m)
    cold_core = build_core(m)
    setattr(cold_core, "prepare", lambda: 0)  # noqa: B010  (this core compiles only on connect)
    cold = FakeFabric.from_model(m, core=cold_core)
    assert ahead.core.precompiled.hits > 0
    assert ahead.flows == cold.flows
    assert ahead.groups == cold.groups
