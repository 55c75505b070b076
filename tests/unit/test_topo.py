"""The topology builders (controller/tools/topo.py): conventions, errors, and topologies/*.yaml."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from controller.config import load_model, loads_model, parse_model
from controller.tools import topo
from controller.tools.topo import NetworkFile, NetworkSpec

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
A = NetworkSpec("tenant-a", 100, "a")


def _with_lldp(net: NetworkFile) -> NetworkFile:
    net["controller"] = {"lldp_interval": 0.5}
    return net


BUILT: dict[str, Callable[[], NetworkFile]] = {
    "ring": lambda: _with_lldp(
        topo.ring(
            4,
            networks=(A, NetworkSpec("tenant-b", 200, "b", on=(1, 3))),
            dpid_base=0x100,
            subnet="10.1.0.0/24",
            mac_prefix="02:00:00:01",
        )
    ),
    "tree": lambda: _with_lldp(
        topo.tree(
            3,
            (2, 1),
            networks=(
                NetworkSpec("tenant-a", 100, "a", on=(1, 4, 5)),
                NetworkSpec("tenant-b", 200, "b", on=(4, 5)),
                NetworkSpec("tenant-c", 300, "c", on=(2, 4)),
            ),
            dpid_base=0x200,
            subnet="10.2.0.0/24",
        )
    ),
    "leaf-spine": lambda: _with_lldp(
        topo.leaf_spine(
            2,
            3,
            networks=(A, NetworkSpec("tenant-b", 200, "b", on=(1, 3))),
            dpid_base=0x310,
            spine_dpid_base=0x300,
            subnet="10.3.0.0/24",
        )
    ),
}
"""The builder call that makes each file of topologies/ (by stem)."""
HAND_WRITTEN = {"default", "routed"}
"""Files no builder makes: default.yaml and routed.yaml have gateways and routers (default.yaml also an ACL and a VIP)."""

BUILDERS: dict[str, Callable[[], NetworkFile]] = {
    "ring": lambda: topo.ring(5),
    "linear": lambda: topo.linear(4),
    "leaf-spine": lambda: topo.leaf_spine(3, 4),
    "tree": lambda: topo.tree(3, 2),
    "single": lambda: topo.single(3, subnet="10.0.0.0/24", mac_prefix="02:00:00:00"),
}


def test_every_topology_file_is_built_or_known_hand_written() -> None:
    assert {p.stem for p in TOPOLOGIES.glob("*.yaml")} == set(BUILT) | HAND_WRITTEN


@pytest.mark.parametrize("name", sorted(BUILT))
def test_topology_file_loads_to_the_builders_model(name: str) -> None:
    path = TOPOLOGIES / f"{name}.yaml"
    net = BUILT[name]()
    assert load_model(path) == parse_model(net)
    file_links = yaml.safe_load(path.read_text())["links"]
    assert file_links == net["links"]  # same cables, same order, same end first


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_yaml_text_round_trips_and_is_deterministic(name: str) -> None:
    net = BUILDERS[name]()
    text = topo.to_yaml(net)
    assert loads_model(text) == parse_model(net)
    assert yaml.safe_load(text) == net
    assert topo.to_yaml(BUILDERS[name]()) == text


def test_ring_ports_names_and_addresses() -> None:
    net = topo.ring(
        3,
        networks=(NetworkSpec("red", 100, "r"), NetworkSpec("blue", 200, "u", on=(1, 3))),
        dpid_base=0x30,
        bridges=["x1", "x2", "x3"],
        subnet="10.70.0.0/24",
    )
    assert net["switches"] == {
        "s1": {"dpid": 0x31, "bridge": "x1"},
        "s2": {"dpid": 0x32, "bridge": "x2"},
        "s3": {"dpid": 0x33, "bridge": "x3"},
    }
    assert net["links"] == [["s1:10", "s2:11"], ["s2:10", "s3:11"], ["s3:10", "s1:11"]]
    assert net["networks"] == {"red": {"vlan": 100}, "blue": {"vlan": 200}}
    assert net["vms"] == {
        "r1": {"switch": "s1", "port": 1, "network": "red", "ip": "10.70.0.1/24"},
        "r2": {"switch": "s2", "port": 1, "network": "red", "ip": "10.70.0.2/24"},
        "r3": {"switch": "s3", "port": 1, "network": "red", "ip": "10.70.0.3/24"},
        "u1": {"switch": "s1", "port": 2, "network": "blue", "ip": "10.70.0.11/24"},
        "u3": {"switch": "s3", "port": 2, "network": "blue", "ip": "10.70.0.13/24"},
    }


def test_linear_is_a_ring_without_its_closing_link() -> None:
    assert topo.linear(4)["links"] == topo.ring(4)["links"][:-1]
    assert topo.linear(1)["links"] == []


def test_leaf_spine_ports_and_dpids() -> None:
    net = topo.leaf_spine(2, 2, networks=(A,))
    assert net["switches"] == {"sp1": {"dpid": 101}, "sp2": {"dpid": 102}, "l1": {"dpid": 1}, "l2": {"dpid": 2}}
    assert net["links"] == [["l1:11", "sp1:1"], ["l1:12", "sp2:1"], ["l2:11", "sp1:2"], ["l2:12", "sp2:2"]]
    assert {name: (vm["switch"], vm["port"]) for name, vm in net["vms"].items()} == {"a1": ("l1", 1), "a2": ("l2", 1)}


def test_tree_numbers_breadth_first_and_places_vms_on_the_deepest_level() -> None:
    net = topo.tree(3, 2, networks=(A,))
    assert list(net["switches"]) == [f"s{i}" for i in range(1, 8)]
    assert net["links"][:3] == [["s1:10", "s2:20"], ["s1:11", "s3:20"], ["s2:10", "s4:20"]]
    assert sorted(net["vms"]) == ["a4", "a5", "a6", "a7"]
    assert list(topo.tree(1, ())["vms"]) == ["a1", "b1"]


def test_single_ports_run_network_by_network() -> None:
    net = topo.single(
        2, networks=(NetworkSpec("red", 100, "r"), NetworkSpec("blue", 200, "b")), mac_prefix="02:00:00:00"
    )
    assert {name: vm["port"] for name, vm in net["vms"].items()} == {"r1": 1, "r2": 2, "b1": 3, "b2": 4}
    assert net["vms"]["b2"]["mac"] == "02:00:00:00:01:04"
    assert net["links"] == []


def test_address_stride_grows_past_nine_switches() -> None:
    net = topo.ring(12, subnet="10.5.0.0/24")
    assert (net["vms"]["a12"]["ip"], net["vms"]["b1"]["ip"]) == ("10.5.0.12/24", "10.5.0.101/24")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: topo.ring(2), "at least 3"),
        (lambda: topo.linear(0), "at least one"),
        (lambda: topo.tree(3, (2,)), "fanouts"),
        (lambda: topo.tree(2, 11), "fanouts"),
        (lambda: topo.leaf_spine(0, 3), "spines"),
        (lambda: topo.ring(3, networks=(NetworkSpec("a", 100, "a", on=(4,)),)), "no switch number 4"),
        (lambda: topo.ring(3, networks=()), "networks"),
        (lambda: topo.ring(3, subnet="10.0.0.0/29"), "does not fit"),
        (lambda: topo.ring(3, bridges=["b1", "b2"]), "bridge names"),
        (lambda: topo.ring(3, bridges=["b1", "b2", "b3", "b4"]), "bridge names"),
        (lambda: topo.ring(3, networks=(A, NetworkSpec("b", 100, "b"))), "VLAN 100 is already used"),
        (lambda: topo.single(2, networks=(NetworkSpec("a", 100, "a", on=(1,)),)), "without 'on'"),
    ],
)
def test_bad_parameters_raise_value_error(build: Callable[[], NetworkFile], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_without_addresses_copies() -> None:
    net = topo.ring(3, subnet="10.0.0.0/24", mac_prefix="02:00:00:00")
    bare = topo.without_addresses(net, ("ip",))
    assert all("ip" not in vm and "mac" in vm for vm in bare["vms"].values())
    assert all("ip" in vm for vm in net["vms"].values())
    assert topo.without_addresses(net) == topo.ring(3)


def test_link_ends() -> None:
    assert topo.link_ends(topo.linear(2)) == [(("s1", 10), ("s2", 11))]
    with pytest.raises(ValueError, match="switch:number"):
        topo.split_end("s1:vnet3")


def test_cli_topo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topo", "tree", "3", "2", "1", "--dpid-base", "0x200", "--subnet", "10.2.0.0/24"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == topo.tree(3, (2, 1), dpid_base=0x200, subnet="10.2.0.0/24")
    assert main(["topo", "ring", "4", "--mac-prefix", "02:00:00:01"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == topo.ring(4, mac_prefix="02:00:00:01")
    assert main(["topo", "leaf-spine", "2"]) == 2
    assert "SPINES LEAVES" in capsys.readouterr().err
