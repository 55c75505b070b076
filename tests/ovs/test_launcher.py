"""The osken-manager launcher and start-up errors, as users run them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.tools.lab import OSKEN_MANAGER, REPO_ROOT, ControllerProcess, free_port, wait_until

pytestmark = pytest.mark.ovs


def test_help_lists_os_ken_options() -> None:
    out = subprocess.run([str(OSKEN_MANAGER), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for option in (
        "--ofp-tcp-listen-port",
        "--ofp-listen-host",
        "--verbose",
        "--ctl-privkey",
        "--ctl-cert",
        "--ca-certs",
        "--config-file",
    ):
        assert option in out.stdout


def test_sigterm_stops_cleanly(controller_factory: Callable[..., ControllerProcess]) -> None:
    ctl = controller_factory()
    assert ctl.stop() == 0


def test_invalid_network_file_refuses_to_start_and_names_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "switches: {s1: {dpid: 0x1}}\nnetworks: {a: {vlan: 100}}\n"
        "vms: {web1: {switch: s1, port: 1, network: tenant-c}}\n"
    )
    proc = subprocess.run(
        [str(OSKEN_MANAGER), "controller.app", "--ofp-tcp-listen-port", str(free_port())],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"VMN_CONFIG": str(bad), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0
    assert "vms.web1.network: unknown network 'tenant-c'" in proc.stdout + proc.stderr


def test_sighup_reload_rejects_an_invalid_file_and_keeps_running(
    controller_factory: Callable[..., ControllerProcess], tmp_path: Path
) -> None:
    cfg = tmp_path / "net.yaml"
    cfg.write_text("controller: {metrics_port: 0}\nswitches: {s1: {dpid: 0x1}}\n")
    ctl = controller_factory(cfg)
    cfg.write_text("controller: {metrics_port: 0}\nswitches: {s1: {dpid: true}}\n")
    import os
    import signal

    os.kill(ctl.pid, signal.SIGHUP)
    ctl.wait_for_log("reload rejected", 10)
    assert "switches.s1.dpid" in ctl.log_text()
    assert ctl.alive()
    cfg.write_text("controller: {metrics_port: 0}\nswitches: {s1: {dpid: 0x2}}\n")
    os.kill(ctl.pid, signal.SIGHUP)
    wait_until(lambda: "applied" in ctl.log_text(), 10, message="valid reload applied")
