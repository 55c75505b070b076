"""Hot reload on real OVS: a change to an unrelated ACL costs no ping and is in
force within 2 s (by SIGHUP and by editing the file); an invalid file is
rejected with its error path and nothing stops working."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.tools.lab import ControllerProcess, Host, Lab, free_port, sh, wait_until
from tests.ovs.metrics_client import total
from tests.ovs.traffic import start_servers, tcp_connects

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]
NETWORK = """
controller: {metrics_port: %(metrics)d}
switches: {s1: {dpid: 0x91}}
networks: {red: {vlan: 191}}
vms:
  h1: {switch: s1, port: 1, network: red, ip: 10.91.0.1/24}
  h2: {switch: s1, port: 2, network: red, ip: 10.91.0.2/24}
  h3: {switch: s1, port: 3, network: red, ip: 10.91.0.3/24, acl_in: [h3-out]}
acls:
  h3-out:
    - {match: {ip_proto: tcp, tcp_dst: %(port)d}, action: allow}
"""


@dataclass
class ReloadLab:
    cfg: Path
    ctl: ControllerProcess
    hosts: dict[str, Host]
    metrics: int

    def write(self, port: int, extra: str = "") -> None:
        self.cfg.write_text(NETWORK % {"metrics": self.metrics, "port": port} + extra)

    def h3_reaches(self, port: int) -> bool:
        return tcp_connects(self.hosts["h3"], "10.91.0.2", port, 0.5)


@pytest.fixture
def reload_lab(lab: Lab, controller_factory: Factory, tmp_path: Path) -> Iterator[ReloadLab]:
    metrics = free_port()
    cfg = tmp_path / "net.yaml"
    cfg.write_text(NETWORK % {"metrics": metrics, "port": 80})
    rl = ReloadLab(cfg, controller_factory(cfg), {}, metrics)
    lab.add_bridge("b1", 0x91, rl.ctl.port)
    rl.hosts = {f"h{i}": lab.add_host(f"h{i}", "b1", i, ip=f"10.91.0.{i}") for i in (1, 2, 3)}
    start_servers(rl.hosts["h2"], tcp=[80, 81])
    wait_until(lambda: rl.hosts["h1"].ping(rl.hosts["h2"]), 20, message="h1 -> h2")
    wait_until(lambda: rl.h3_reaches(80), 10, message="h3 -> h2:80 allowed")
    yield rl


def _ping_run(host: Host, ip: str, count: int) -> subprocess.Popen[str]:
    return host.popen(["ping", "-n", "-i", "0.05", "-c", str(count), "-W", "1", ip])


def _lost(proc: subprocess.Popen[str]) -> int:
    out, _ = proc.communicate(timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    return int(m.group(1)) - int(m.group(2))


def test_unrelated_acl_change_loses_no_ping_and_is_in_force_within_2s(reload_lab: ReloadLab) -> None:
    rl = reload_lab
    ping = _ping_run(rl.hosts["h1"], "10.91.0.2", 100)  # 5 s at 20/s
    time.sleep(1.0)
    rl.write(81)
    os.kill(rl.ctl.pid, signal.SIGHUP)
    changed = time.monotonic()
    wait_until(lambda: rl.h3_reaches(81), 2.0, message="new rule in force within 2 s")
    in_force = time.monotonic() - changed
    assert not rl.h3_reaches(80)
    assert _lost(ping) == 0
    assert total(rl.metrics, "vmn_config_reloads_total", result="ok") >= 1
    print(f"reload in force after {in_force:.2f}s")


def test_editing_the_file_reloads_it_and_the_packet_in_meter_follows(reload_lab: ReloadLab) -> None:
    rl = reload_lab
    text = NETWORK % {"metrics": rl.metrics, "port": 81}
    rl.cfg.write_text(text.replace("controller: {", "controller: {packet_in_rate: 300, "))  # no signal: watched
    wait_until(lambda: rl.h3_reaches(81), 3.0, message="edit picked up")
    assert "changed on disk" in rl.ctl.log_text()
    meters = ["ovs-ofctl", "-O", "OpenFlow13", "dump-meters", rl.hosts["h1"].bridge]
    wait_until(lambda: "rate=300 burst_size=300" in sh(meters).stdout, 3.0, message="meter at the new packet_in_rate")


def test_invalid_file_is_rejected_with_its_path_and_keeps_everything(reload_lab: ReloadLab) -> None:
    rl = reload_lab
    ping = _ping_run(rl.hosts["h1"], "10.91.0.2", 60)
    time.sleep(0.5)
    rl.cfg.write_text(rl.cfg.read_text().replace("network: red, ip: 10.91.0.3/24", "network: pink, ip: 10.91.0.3/24"))
    os.kill(rl.ctl.pid, signal.SIGHUP)
    rl.ctl.wait_for_log("vms.h3.network: unknown network 'pink'", 5)
    assert "reload rejected" in rl.ctl.log_text()
    assert _lost(ping) == 0
    assert rl.h3_reaches(80) and rl.hosts["h1"].ping(rl.hosts["h2"])
    wait_until(
        lambda: total(rl.metrics, "vmn_config_reloads_total", result="invalid") >= 1,
        5,
        message="invalid reload counted",
    )
