"""L2 switching on real OVS: zero-config, a network file, moves, expiry, reconcile."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.tools.lab import ControllerProcess, Lab, dump_flows, flow_durations, free_port, sh, wait_until
from tests.ovs.metrics_client import total

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(text)
    return path


def test_zero_config_hosts_reach_each_other_and_learned_pings_skip_controller(
    lab: Lab, controller_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = free_port()
    monkeypatch.setenv("VMN_METRICS_PORT", str(metrics))
    ctl = controller_factory()
    br = lab.add_bridge("b1", 0x11, ctl.port)
    hosts = [lab.add_host(f"h{i}", "b1", i, ip=f"10.60.0.{i}") for i in (1, 2, 3)]
    ctl.wait_connected(br, 20)
    for a in hosts:
        for b in hosts:
            if a is not b:
                wait_until(lambda: a.ping(b), 15, message=f"{a.name} -> {b.name}")
    wait_until(
        lambda: len(re.findall(r"dl_src=", "\n".join(dump_flows(br)))) >= 3,
        10,
        message="learn flows for all three hosts",
    )
    before = total(metrics, "vmn_packet_in_total", reason="learn")
    assert hosts[0].ping(hosts[1], count=10, timeout=1)
    assert total(metrics, "vmn_packet_in_total", reason="learn") == before


def test_network_file_isolates_and_drops_undeclared_port(lab: Lab, controller_factory: Factory, tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
controller: {metrics_port: 0}
switches: {s1: {dpid: 0x12}}
networks: {red: {vlan: 100}, blue: {vlan: 200}}
vms:
  r1: {switch: s1, port: 1, network: red}
  r2: {switch: s1, port: 2, network: red}
  b1: {switch: s1, port: 3, network: blue}
""",
    )
    ctl = controller_factory(cfg)
    br = lab.add_bridge("b1", 0x12, ctl.port)
    r1 = lab.add_host("r1", "b1", 1, ip="10.61.0.1")
    r2 = lab.add_host("r2", "b1", 2, ip="10.61.0.2")
    blue = lab.add_host("blue", "b1", 3, ip="10.61.0.3")
    stray = lab.add_host("x", "b1", 4, ip="10.61.0.4")
    ctl.wait_connected(br, 20)
    wait_until(lambda: r1.ping(r2), 15, message="r1 -> r2 in one network")
    assert not r1.ping(blue, count=2)
    assert not blue.ping(r2, count=2)
    assert not stray.ping(r1, count=2)
    stats = {line for line in dump_flows(br) if "in_port=4" in line}
    assert not stats, "an undeclared port must have no rule admitting it"


def test_host_move_and_expiry(lab: Lab, controller_factory: Factory, tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
controller: {metrics_port: 0, host_timeout: 3}
switches: {s1: {dpid: 0x13}}
networks: {red: {vlan: 100}}
vms:
  a: {switch: s1, port: 1, network: red}
  b: {switch: s1, port: 2, network: red}
  c: {switch: s1, port: 3, network: red}
""",
    )
    ctl = controller_factory(cfg)
    br = lab.add_bridge("b1", 0x13, ctl.port)
    a = lab.add_host("a", "b1", 1, ip="10.62.0.1", mac="02:62:00:00:00:01")
    b = lab.add_host("b", "b1", 2, ip="10.62.0.2")
    c = lab.add_host("c", "b1", 3)
    ctl.wait_connected(br, 20)
    wait_until(lambda: a.ping(b), 15, message="a -> b")

    def learn(port):
        return [l for l in dump_flows(br) if "dl_src=02:62:00:00:00:01" in l and f"in_port={port}" in l]

    assert learn(1)
    # The VM moves: its address shows up on port 3 and port 1 falls silent.
    sh(["ip", "netns", "exec", a.netns, "ip", "link", "set", a.iface, "down"])
    c.set_mac("02:62:00:00:00:01")
    c.run(["ip", "addr", "add", "10.62.0.1/24", "dev", c.iface], check=True)
    wait_until(lambda: c.ping(b), 15, message="moved host reaches b from its new port")
    # Its frames flood until the learn rule is in: the ping may come back before the packet-in is handled.
    wait_until(lambda: learn(3) and not learn(1), 5, message="the moved host is learned on its new port only")
    wait_until(lambda: b.ping("10.62.0.1"), 10, message="b reaches the moved host")
    # Silence: both hosts' learn flows expire after host_timeout.
    wait_until(
        lambda: not any("dl_src=" in l for l in dump_flows(br)), 20, message="learned hosts expire after host_timeout"
    )
    ctl.wait_for_log("expired", 5)
    wait_until(lambda: c.ping(b), 15, message="expired hosts are learned again")


def test_reconnect_keeps_right_flows_and_removes_wrong_ones(lab: Lab, controller_factory: Factory) -> None:
    ctl = controller_factory()
    br = lab.add_bridge("b1", 0x14, ctl.port)
    h1 = lab.add_host("h1", "b1", 1, ip="10.63.0.1")
    h2 = lab.add_host("h2", "b1", 2, ip="10.63.0.2")
    ctl.wait_connected(br, 20)
    wait_until(lambda: h1.ping(h2), 15, message="h1 -> h2")
    sh(
        [
            "ovs-ofctl",
            "-O",
            "OpenFlow13",
            "add-flow",
            br,
            "cookie=0x99,table=4,priority=50,dl_dst=02:99:99:99:99:99,actions=drop",
        ]
    )
    before = flow_durations(br)
    # Point the switch at a dead port and back: it disconnects and reconnects.
    # (Removing the controller entirely would make OVS flush its flows itself.)
    sh(["ovs-vsctl", "set-controller", br, f"tcp:127.0.0.1:{free_port()}"])
    wait_until(lambda: not ctl.is_connected(br), 10, message="switch disconnected")
    time.sleep(1.5)  # let ages grow so a re-added flow would show a smaller duration
    sh(["ovs-vsctl", "set-controller", br, f"tcp:127.0.0.1:{ctl.port}"])
    ctl.wait_connected(br, 20)
    wait_until(
        lambda: not any("cookie=0x99" in l for l in dump_flows(br)),
        10,
        message="the wrong flow is removed on reconcile",
    )
    after = flow_durations(br)
    kept = [k for k in before if "0x99" not in k]
    assert kept and all(k in after and after[k] >= before[k] + 1.0 for k in kept), (before, after)
    assert h1.ping(h2)


def test_port_down_forgets_its_hosts_within_a_second(lab: Lab, controller_factory: Factory, tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
controller: {metrics_port: 0, host_timeout: 300}
switches: {s1: {dpid: 0x15}}
networks: {red: {vlan: 100}}
vms:
  a: {switch: s1, port: 1, network: red}
  b: {switch: s1, port: 2, network: red}
""",
    )
    ctl = controller_factory(cfg)
    br = lab.add_bridge("b1", 0x15, ctl.port)
    a = lab.add_host("a", "b1", 1, ip="10.64.0.1", mac="02:64:00:00:00:01")
    b = lab.add_host("b", "b1", 2, ip="10.64.0.2")
    ctl.wait_connected(br, 20)
    wait_until(lambda: a.ping(b), 15, message="a -> b")

    def rules_of_a():
        return [l for l in dump_flows(br) if "02:64:00:00:00:01" in l]

    assert rules_of_a()
    lab.set_port_down(a.port)
    down = time.monotonic()
    wait_until(lambda: not rules_of_a(), 1.0, interval=0.05, message="a's rules gone within a second")
    assert time.monotonic() - down <= 1.0
    ctl.wait_for_log("host 02:64:00:00:00:01 forgotten", 2)
    lab.set_port_up(a.port)
    wait_until(lambda: a.ping(b), 15, message="a is learned again when it speaks")
    assert rules_of_a()
