"""`vmn provision` against the running OVS: create, then a no-op, then an update."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.tools.lab import REPO_ROOT, sh, unique_prefix

pytestmark = pytest.mark.ovs
VMN = REPO_ROOT / ".venv" / "bin" / "vmn"


@pytest.fixture
def names(require_ovs: None) -> Iterator[dict[str, str]]:
    """Unique bridge and tap names; every one of them is removed afterwards."""
    p = unique_prefix()
    made = {"br1": f"{p}pb1", "br2": f"{p}pb2", "tap": f"{p}tap", "missing": f"{p}nope"}
    sh(["ip", "link", "add", made["tap"], "type", "veth", "peer", "name", made["tap"] + "p"])
    try:
        yield made
    finally:
        for br in (made["br1"], made["br2"]):
            sh(["ovs-vsctl", "--if-exists", "del-br", br], check=False)
        sh(["ip", "link", "del", made["tap"]], check=False)


def provision(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VMN), "provision", str(path), "--datapath-type", "netdev", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def vsctl_get(*args: str) -> str:
    return sh(["ovs-vsctl", "get", *args]).stdout.strip()


def test_provision_creates_is_idempotent_and_updates(names: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "net.yaml"
    text = f"""
switches:
  s1: {{dpid: 0x61, bridge: {names["br1"]}}}
  s2: {{dpid: 0x62, bridge: {names["br2"]}}}
networks: {{red: {{vlan: 100}}}}
vms:
  a: {{switch: s1, port: {names["tap"]}, network: red}}
  b: {{switch: s2, port: {names["missing"]}, network: red}}
  c: {{switch: s1, port: 1000, network: red}}
"""
    cfg.write_text(text)
    first = provision(cfg, "--controller", "tcp:127.0.0.1:16001")
    assert first.returncode == 0, first.stderr
    assert f"bridge {names['br1']}: created" in first.stdout
    assert f"vm a: {names['tap']} attached to {names['br1']} (ofport_request 1001)" in first.stdout
    assert vsctl_get("interface", names["tap"], "ofport") == "1001"  # the number `vmn trace` simulates
    assert f"interface {names['missing']} not present" in first.stdout
    assert vsctl_get("bridge", names["br1"], "other_config:datapath-id") == '"0000000000000061"'
    assert vsctl_get("bridge", names["br1"], "fail_mode") == "secure"
    assert vsctl_get("bridge", names["br1"], "protocols") == "[OpenFlow13]"
    assert vsctl_get("bridge", names["br1"], "datapath_type") == "netdev"
    assert vsctl_get("controller", names["br2"], "target") == '"tcp:127.0.0.1:16001"'
    assert vsctl_get("controller", names["br2"], "controller_queue_size") == "512"  # packet_in_rate 1000
    assert names["tap"] in sh(["ovs-vsctl", "list-ports", names["br1"]]).stdout.split()

    again = provision(cfg, "--controller", "tcp:127.0.0.1:16001")
    assert again.returncode == 0 and "nothing to change" in again.stdout, again.stdout
    assert "created" not in again.stdout and "attached" not in again.stdout

    cfg.write_text("controller: {packet_in_rate: 150}\n" + text.replace("0x61", "0x63"))
    update = provision(cfg, "--controller", "tcp:127.0.0.1:16002")
    assert f"bridge {names['br1']}: other_config updated" in update.stdout
    assert vsctl_get("bridge", names["br1"], "other_config:datapath-id") == '"0000000000000063"'
    assert vsctl_get("controller", names["br1"], "target") == '"tcp:127.0.0.1:16002"'
    assert vsctl_get("controller", names["br2"], "controller_queue_size") == "150"  # from packet_in_rate


def test_provision_invalid_file_changes_nothing(names: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"switches: {{s1: {{dpid: 0x64, bridge: {names['br1']}, bogus: 1}}}}\n")
    out = provision(cfg)
    assert out.returncode == 1 and "switches.s1: unknown key 'bogus'" in out.stderr
    assert names["br1"] not in sh(["ovs-vsctl", "list-br"]).stdout.split()


def test_provision_several_controllers_for_ha_instances(names: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "net.yaml"
    cfg.write_text(f"switches: {{s1: {{dpid: 0x65, bridge: {names['br1']}}}}}\n")
    targets = ["tcp:127.0.0.1:16013", "tcp:127.0.0.1:16011", "tcp:127.0.0.1:16012"]
    first = provision(cfg, "--controller", targets[0], "--controller", ",".join(targets[1:]))
    assert first.returncode == 0, first.stderr
    assert f"bridge {names['br1']}: controller {', '.join(sorted(targets))}" in first.stdout
    listed = sh(["ovs-vsctl", "get-controller", names["br1"]]).stdout.split()
    assert sorted(listed) == sorted(targets), listed
    again = provision(cfg, "--controller", ",".join(reversed(targets)))
    assert again.returncode == 0 and "nothing to change" in again.stdout, again.stdout
    fewer = provision(cfg, "--controller", targets[0])
    assert f"bridge {names['br1']}: controller {targets[0]}" in fewer.stdout
    assert sh(["ovs-vsctl", "get-controller", names["br1"]]).stdout.split() == [targets[0]]
