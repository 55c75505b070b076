"""Benchmark 5: forwarding gap when the link in use is cut in a ring of three bridges.

The layout of ``tests/ovs/test_ring_ovs.py``: s1, s2, s3 in a ring, a VM
of one network on each. r1 (s1) pings r2 (s2) every 10 ms; the direct
s1-s2 link carries that traffic until its s1 end is taken down. Three ways:

- **as shipped**: the controller runs and the backup paths
  (fast-failover groups, see :mod:`controller.fabric.protection`) are installed;
- **controller stopped**: the same, but the controller is frozen with
  SIGSTOP just before the cut and stays frozen for a few seconds, so only
  the pre-installed backups can carry the traffic; the gap is measured
  between the cut and the SIGCONT;
- **through the controller alone**: the controller without backups
  (:mod:`bench.nobackup_app`), which reroutes on the port-status message.

The gap is the longest time between two consecutive echo replies (``ping
-D`` receive timestamps) in the measured window, so it includes the probe
interval itself: with no outage it is about the interval (ping on a busy
2-core machine manages ~15 ms rather than 10). After each cut the link
comes back and the controller must rediscover it (three links up) before
the next trial.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from bench.harness import (
    Options,
    Row,
    controller,
    fmt,
    median,
    new_lab,
    spread,
)
from controller.tools import topo
from controller.tools.lab import ControllerProcess, Host, Lab, Link, free_port, wait_until, wire
from controller.tools.topo import NetworkFile, NetworkSpec
from tests.ovs.metrics_client import total

INTERVAL_MS = 10
METRICS = ("Failover gap", "Failover gap with the controller stopped", "Failover gap through the controller alone")


@dataclass(frozen=True)
class Plan:
    trials: int
    before_cut: float = 1.0
    after_cut: float = 2.0
    stopped: float = 3.0
    """Seconds the controller stays frozen after the cut (OVS's inactivity probe is 5 s)."""


@dataclass(frozen=True)
class Trial:
    """One cut: longest reply gap (ms) in the measured window, requests lost over the whole run."""

    gap: float
    lost: int
    after: float = 0.0
    """Controller stopped: longest gap (ms) in the 2 s after it resumed."""


def plan(opts: Options) -> Plan:
    """5 trials of each kind; quick: 1."""
    return Plan(1) if opts.quick else Plan(5)


def ring_net(bridges: list[str]) -> NetworkFile:
    """Three switches in a ring on ``bridges``, one network with a VM on each (as in the ring test).

    The VMs' ips (10.205.0.0/24) are for the lab's hosts; :func:`ring_file` leaves them out.
    """
    return topo.ring(
        3, networks=(NetworkSpec("red", 100, "r"),), dpid_base=0xE0, bridges=bridges, subnet="10.205.0.0/24"
    )


def ring_file(path: Path, net: NetworkFile, metrics: int) -> Path:
    """Write the controller's file for ``net`` (no VM addresses, LLDP every 0.5 s) to ``path``."""
    config = topo.without_addresses(net)
    config["controller"] = {"metrics_port": metrics, "lldp_interval": 0.5}
    path.write_text(topo.to_yaml(config))
    return path


def reply_times(output: str) -> list[float]:
    """Receive times (s) of the echo replies in ``ping -D`` output."""
    return [float(t) for t in re.findall(r"^\[(\d+\.\d+)\].*icmp_seq=", output, re.MULTILINE)]


def longest_gap(stamps: list[float], start: float | None = None, end: float | None = None) -> float:
    """Longest time (ms) between consecutive replies, within [start, end] when given (the ends count).

    Raises
    ------
    RuntimeError
        If fewer than two instants are left to compare.
    """
    inside = [t for t in stamps if (start is None or t >= start) and (end is None or t <= end)]
    points = ([start] if start is not None else []) + inside + ([end] if end is not None else [])
    if len(points) < 2:
        raise RuntimeError(f"fewer than two echo replies ({len(stamps)} in all)")
    return max(b - a for a, b in pairwise(points)) * 1000


def ping(a: Host, b: Host, seconds: float) -> subprocess.Popen[str]:
    """Start ``a`` pinging ``b`` every 10 ms for about ``seconds``."""
    count = int(seconds * 1000 / INTERVAL_MS)
    return a.popen(["ping", "-D", "-n", "-i", f"{INTERVAL_MS / 1000:g}", "-c", str(count), "-W", "1", b.ip or ""])


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[str, int]:
    """Wait for a ping; its output and the number of requests lost."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    found = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    if not found:
        raise RuntimeError(f"no ping summary: {out[-300:]}")
    sent, received = map(int, found.groups())
    return out, sent - received


def cut_and_measure(lab: Lab, a: Host, b: Host, iface: str, p: Plan) -> Trial:
    """Ping ``a`` → ``b`` at 100/s, take ``iface`` down mid-way; the gap over the whole run."""
    proc = ping(a, b, p.before_cut + p.after_cut)
    time.sleep(p.before_cut)
    lab.set_port_down(iface)
    out, lost = finish(proc, p.after_cut + 30)
    return Trial(longest_gap(reply_times(out)), lost)


def cut_while_stopped(lab: Lab, ctl: ControllerProcess, a: Host, b: Host, iface: str, p: Plan) -> Trial:
    """Freeze the controller, cut ``iface``, resume it after ``p.stopped`` s; the gap while frozen.

    The controller is always resumed, also when the cut fails.
    """
    proc = ping(a, b, p.before_cut + p.stopped + 2.0)
    time.sleep(p.before_cut)
    os.kill(ctl.pid, signal.SIGSTOP)
    try:
        cut_at = time.time()
        lab.set_port_down(iface)
        time.sleep(p.stopped)
        resumed_at = time.time()
    finally:
        os.kill(ctl.pid, signal.SIGCONT)
    out, lost = finish(proc, p.stopped + 30)
    stamps = reply_times(out)
    return Trial(longest_gap(stamps, cut_at, resumed_at), lost, longest_gap(stamps, resumed_at, resumed_at + 2.0))


@dataclass
class RingLab:
    """The ring, its controller and the two VMs of the measurement."""

    lab: Lab
    ctl: ControllerProcess
    metrics: int
    link: Link
    a: Host
    b: Host

    def ready(self) -> None:
        wait_until(lambda: total(self.metrics, "vmn_links_up") == 3, 20, message="three links discovered")
        wait_until(lambda: self.a.ping(self.b) and self.b.ping(self.a), 15, message="r1 <-> r2")

    def restore(self) -> None:
        self.lab.set_port_up(self.link.iface_a)


def with_ring(app: str, trials: list[str], p: Plan) -> dict[str, list[Trial]]:
    """Build a ring run by ``osken-manager app``; run each kind of trial in ``trials``, ``p.trials`` times."""
    out: dict[str, list[Trial]] = {kind: [] for kind in trials}
    with new_lab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        metrics = free_port()
        net = ring_net([f"{lab.prefix}b{i}" for i in (1, 2, 3)])
        config = ring_file(Path(tmp) / "ring.yaml", net, metrics)
        with controller(config, app=app, metrics_port=metrics) as ctl:
            wired = wire(lab, net, ctl.port)
            for br in wired.bridges.values():
                ctl.wait_connected(br, 20)
            ring = RingLab(lab, ctl, metrics, wired.links[0], wired.hosts["r1"], wired.hosts["r2"])
            for _ in range(p.trials):
                for kind in trials:
                    ring.ready()
                    if kind == "stopped":
                        out[kind].append(cut_while_stopped(lab, ctl, ring.a, ring.b, ring.link.iface_a, p))
                    else:
                        out[kind].append(cut_and_measure(lab, ring.a, ring.b, ring.link.iface_a, p))
                    ring.restore()
    return out


def _lost(trials: list[Trial]) -> str:
    return ", ".join(str(t.lost) for t in trials)


def run(opts: Options) -> list[Row]:
    """Cut and restore the s1-s2 link ``trials`` times each way; one row each."""
    p = plan(opts)
    ours = with_ring("controller.app", ["running", "stopped"], p)
    alone = with_ring("bench.nobackup_app", ["running"], p)["running"]
    running, stopped = ours["running"], ours["stopped"]
    setup = (
        f"Ring of 3 userspace bridges, LLDP every 0.5 s; ping r1 → r2 every {INTERVAL_MS} ms, "
        f"the s1-s2 link (the direct path) cut after {p.before_cut:g} s; gap = longest time "
        "between consecutive echo replies (ping -D), so it includes the probe interval"
    )
    return [
        Row(
            f"{METRICS[0]} (ring of 3, cut the link in use) (ms)",
            fmt(median(t.gap for t in running), "ms"),
            note=f"{setup}; {p.trials} trial(s), {spread([t.gap for t in running], 'ms')} (requests lost "
            f"per trial: {_lost(running)}). As shipped: the controller runs and the backup paths "
            "(fast-failover groups) are installed, so the switches reroute before it reacts.",
        ),
        Row(
            f"{METRICS[1]} (backups only) (ms)",
            fmt(median(t.gap for t in stopped), "ms"),
            note=f"{setup}. The controller is frozen (SIGSTOP) just before the cut and resumed "
            f"{p.stopped:g} s later; gap measured from the cut to the resume, so only the "
            f"pre-installed backups carry traffic; {p.trials} trial(s), "
            f"{spread([t.gap for t in stopped], 'ms')} (requests lost per trial, whole run: "
            f"{_lost(stopped)}; longest gap in the 2 s after the resume: "
            f"{spread([t.after for t in stopped], 'ms')}).",
        ),
        Row(
            f"{METRICS[2]} (no backups) (ms)",
            fmt(median(t.gap for t in alone), "ms"),
            note=f"{setup}; the controller without backup paths (bench.nobackup_app) reroutes on the "
            f"port-status message; {p.trials} trial(s), {spread([t.gap for t in alone], 'ms')} "
            f"(requests lost per trial: {_lost(alone)}).",
        ),
    ]
