"""Backup paths on real OVS where no loop-free neighbour exists: a ring of four.

In a ring of four, s1 has no neighbour that reaches s2 without coming back
through s1, so its backup is a U-turn: s1 sends the frame (marked with VLAN
priority 1) to s4, which bounces marked frames from s1 on to s3; s4's own
traffic toward s2 reaches s1 and is returned to s4 out of its in-port.
Everything below runs with the controller frozen (SIGSTOP), so only what
was installed before the cut can carry it.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.tools import topo
from controller.tools.lab import ControllerProcess, Host, Lab, dump_groups, free_port, port_stats, wait_until, wire
from controller.tools.topo import NetworkSpec
from tests.ovs.metrics_client import total

pytestmark = pytest.mark.ovs

RED = (NetworkSpec("red", 100, "r", on=(1, 2, 4)),)
"""s1-s4 in a ring (dpids 0x41-0x44, port 10 to the next, 11 to the previous); red VMs r1, r2, r4."""
BURST = 50  # pings at 100/s per pair while the controller is stopped


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _received(src: Host, dst: Host) -> int:
    out = src.run(["ping", "-n", "-q", "-i", "0.01", "-c", str(BURST), "-W", "1", dst.ip or ""], timeout=30).stdout
    found = re.search(r"(\d+) received", out)
    return int(found.group(1)) if found else 0


def test_uturn_backups_carry_every_pair_across_a_cut_while_the_controller_is_stopped(
    lab: Lab, controller_factory: Callable[..., ControllerProcess], tmp_path: Path
) -> None:
    metrics = free_port()
    net = topo.ring(
        4, networks=RED, dpid_base=0x40, bridges=[f"{lab.prefix}b{i}" for i in (1, 2, 3, 4)], subnet="10.71.0.0/24"
    )  # the hosts' ips; the controller is not told them
    config = topo.without_addresses(net)
    config["controller"] = {"metrics_port": metrics, "lldp_interval": 0.5}
    cfg = tmp_path / "ring4.yaml"
    cfg.write_text(topo.to_yaml(config))
    ctl = controller_factory(cfg)
    wired = wire(lab, net, ctl.port)
    bridges, links = list(wired.bridges.values()), wired.links
    r1, r2, r4 = (wired.hosts[f"r{i}"] for i in (1, 2, 4))
    for br in bridges:
        ctl.wait_connected(br, 20)
    wait_until(lambda: total(metrics, "vmn_links_up") == 4, 20, message="four links discovered")
    pairs = [(r1, r2), (r2, r1), (r4, r2), (r2, r4), (r1, r4)]
    for a, b in pairs:
        wait_until(lambda: a.ping(b), 15, message=f"{a.name} -> {b.name}")
    s1_groups = dump_groups(bridges[0])
    assert any("IN_PORT" in g or "in_port" in g for g in s1_groups), s1_groups  # the U-turn return group
    s3_tx = port_stats(bridges[2])[11].tx_packets  # s3 -> s2 carries the detour into s2
    pid = ctl.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: _state(pid) == "T", 2, interval=0.01, message="controller stopped")
        lab.set_port_down(links[0].iface_a)  # cut s1 <-> s2
        time.sleep(0.2)
        got = {(a.name, b.name): _received(a, b) for a, b in pairs}
        assert _state(pid) == "T", "the controller stayed stopped"
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"replies of {BURST} per pair with s1-s2 cut and the controller stopped: {got}")
    assert all(n >= BURST - 2 for n in got.values()), got
    assert port_stats(bridges[2])[11].tx_packets - s3_tx >= 3 * BURST, "detours go round by s3"
    wait_until(lambda: total(metrics, "vmn_links_up") == 3, 20, message="the cut link dropped")
    for a, b in pairs:
        wait_until(lambda: a.ping(b), 10, message=f"{a.name} -> {b.name} after the recompute")
