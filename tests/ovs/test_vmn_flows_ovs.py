"""``vmn flows`` prints what ovs-ofctl accepts, and it forwards as the controller does.

One bridge, four namespaces (two networks, an ACL on one VM). The output of
``vmn flows FILE --switch s1`` is loaded with ``ovs-ofctl add-groups`` /
``add-flows`` (``-O OpenFlow13``) into the bridge with no controller; pings
that the file allows pass and the others get no reply. Then the bridge is
emptied and the controller installs its own flows: OVS must hold the same
flows (``dump-flows``, statistics stripped) and the pings must end the same.
Also: every line ``vmn flows`` prints for ``topologies/default.yaml`` and
``routed.yaml`` is accepted by ``ovs-ofctl`` (conntrack, NAT, groups, meters,
router rewrites, ``dec_ttl``, ``move``, ``clone``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.cli import main
from controller.config import load_model
from controller.tools.lab import ControllerProcess, Host, Lab, wait_until

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]
OFCTL = ["ovs-ofctl", "-O", "OpenFlow13"]
TOPOLOGIES = sorted((Path(__file__).parents[2] / "topologies").glob("*.yaml"))
DPID = 0x7F1

NETWORK = """
controller: {metrics_port: 0, packet_in_rate: 500}
switches: {s1: {dpid: 0x7f1}}
networks: {red: {vlan: 181}, blue: {vlan: 182}}
vms:
  a: {switch: s1, port: 1, network: red, mac: "02:81:00:00:00:01", ip: 10.81.0.1/24}
  b: {switch: s1, port: 2, network: red, mac: "02:81:00:00:00:02", ip: 10.81.0.2/24}
  c: {switch: s1, port: 3, network: blue, mac: "02:81:00:00:00:03", ip: 10.81.0.3/24}
  d: {switch: s1, port: 4, network: red, mac: "02:81:00:00:00:04", ip: 10.81.0.4/24, acl_in: [web-only]}
acls:
  web-only:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow, stateful: true}
    - {action: deny}
"""
PASS = [("a", "b"), ("b", "a")]
FAIL = [("a", "c"), ("c", "b"), ("a", "d"), ("d", "b")]
"""Other network (c), and d's ACL (its echo replies and requests are denied)."""


def vmn_flows(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``vmn flows ARGS`` (the CLI's own entry point, in this process: no interpreter start-up); its stdout."""
    capsys.readouterr()
    assert main(["flows", *args]) == 0
    return capsys.readouterr().out


def ofctl(*args: str, check: bool = True) -> str:
    out = subprocess.run([*OFCTL, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, f"ovs-ofctl {' '.join(args[:2])}: {out.stderr}"
    return out.stdout


def blocks(text: str) -> dict[str, tuple[list[str], list[str]]]:
    """Switch name -> (flow lines, group lines) of ``vmn flows`` output."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    flows: list[str] = []
    groups: list[str] = []
    for line in text.splitlines():
        if line.startswith("# "):
            flows, groups = [], []
            out[line.split()[1]] = (flows, groups)
        elif line.startswith("group_id="):
            groups.append(line)
        elif line:
            flows.append(line)
    return out


def load(bridge: str, tmp: Path, flows: list[str], groups: list[str], meter_rate: int) -> None:
    """Empty ``bridge``, then load the packet-in meter (as the controller makes it), ``groups``, ``flows``."""
    ofctl("del-flows", bridge)
    ofctl("del-groups", bridge)
    ofctl("del-meters", bridge, check=False)
    ofctl(
        "add-meter",
        bridge,
        f"meter=1,pktps,burst,band=type=drop,rate={meter_rate},burst_size={max(1, meter_rate // 10)}",
    )
    if groups:
        (tmp / "groups.txt").write_text("\n".join(groups) + "\n")
        ofctl("add-groups", bridge, str(tmp / "groups.txt"))
    (tmp / "flows.txt").write_text("\n".join(flows) + "\n")
    ofctl("--bundle", "add-flows", bridge, str(tmp / "flows.txt"))


def dump(bridge: str) -> list[str]:
    """The bridge's flows and groups as OVS prints them, without statistics, sorted."""
    flows = ofctl("--no-stats", "dump-flows", bridge).splitlines()
    groups = ofctl("dump-groups", bridge).splitlines()
    return sorted(line.strip() for line in flows + groups if "actions=" in line)


def outcomes(hosts: dict[str, Host]) -> dict[tuple[str, str], bool]:
    """Ping each pair: wait for the ones that should pass (ARP first), then try the others, at once.

    The pairs that should pass have resolved ARP and answered already, so one
    echo with 0.5 s to answer is enough for any of the others to show through.
    """
    for src, dst in PASS:
        wait_until(lambda: hosts[src].ping(hosts[dst], timeout=0.5), 10, message=f"{src} pings {dst}")
    pings = {(s, d): hosts[s].popen(["ping", "-n", "-q", "-c", "1", "-W", "0.5", str(hosts[d].ip)]) for s, d in FAIL}
    return {**dict.fromkeys(PASS, True), **{pair: p.wait(timeout=10) == 0 for pair, p in pings.items()}}


def test_vmn_flows_loaded_with_ovs_ofctl_forward_as_the_controller(
    lab: Lab, controller_factory: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "net.yaml"
    cfg.write_text(NETWORK)
    model = load_model(cfg)
    br = lab.add_bridge("b1", DPID, controller_port=None)
    hosts = {vm.name: lab.add_host(vm.name, "b1", vm.port, ip=str(vm.ip), mac=vm.mac) for vm in model.vms}
    flows, groups = blocks(vmn_flows(capsys, str(cfg), "--switch", "s1"))["s1"]
    assert any("ct(" in f for f in flows) and any("meter:1" in f for f in flows)

    load(br, tmp_path, flows, groups, model.controller.packet_in_rate)
    assert len([line for line in dump(br) if "group_id=" not in line]) == len(flows)
    by_ofctl = dump(br)
    assert outcomes(hosts) == {**dict.fromkeys(PASS, True), **dict.fromkeys(FAIL, False)}

    ofctl("del-flows", br)
    ofctl("del-groups", br)
    ctl = controller_factory(cfg)
    lab.set_controller(br, ctl.port)
    wait_until(lambda: dump(br) == by_ofctl, 20, message="controller installs the flows vmn flows printed")
    assert outcomes(hosts) == {**dict.fromkeys(PASS, True), **dict.fromkeys(FAIL, False)}


@pytest.mark.parametrize("path", [p for p in TOPOLOGIES if p.stem in ("default", "routed")], ids=lambda p: p.stem)
def test_ovs_ofctl_accepts_every_line_vmn_flows_prints(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str], path: Path
) -> None:
    """default.yaml (conntrack, NAT, LB groups, meters) and routed.yaml (router rewrites, dec_ttl, move)."""
    br = lab.add_bridge("b1", DPID, controller_port=None)
    switches = blocks(vmn_flows(capsys, str(path)))
    assert switches
    rate = load_model(path).controller.packet_in_rate
    for name, (flows, groups) in switches.items():
        load(br, tmp_path, flows, groups, rate)
        assert len(dump(br)) == len(flows) + len(groups), name
