"""Benchmark 5: forwarding gap when the link in use is cut in a ring of three bridges.

The layout of ``tests/ovs/test_ring_ovs.py``: s1, s2, s3 in a ring, a VM
of one network on each. r1 (s1) pings r2 (s2) every 10 ms; the direct
s1-s2 link carries that traffic until its s1 end is taken down. The gap
is the longest time between two consecutive echo replies (``ping -D``
receive timestamps) over the whole ping run, so it includes the probe
interval itself: with no outage it is about the interval (ping on a busy
2-core machine manages ~15 ms rather than 10). After each cut the link
comes back and the controller must rediscover it (three links up) before
the next trial.
"""

from __future__ import annotations

import re
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
    write_yaml,
)
from tests.netlab import Host, Lab, free_port, wait_until
from tests.ovs.metrics_client import total

INTERVAL_MS = 10
METRICS = ("Failover gap",)


@dataclass(frozen=True)
class Plan:
    trials: int
    before_cut: float = 1.0
    after_cut: float = 2.0


def plan(opts: Options) -> Plan:
    """5 trials; quick: 1."""
    return Plan(1) if opts.quick else Plan(5)


def ring_file(path: Path, bridges: list[str], metrics: int) -> Path:
    """Three switches in a ring, one network with a VM on each (as in the ring test)."""
    return write_yaml(path, {
        "controller": {"metrics_port": metrics, "lldp_interval": 0.5},
        "switches": {f"s{i + 1}": {"dpid": 0xE1 + i, "bridge": br} for i, br in enumerate(bridges)},
        "links": [["s1:10", "s2:11"], ["s2:10", "s3:11"], ["s3:10", "s1:11"]],
        "networks": {"red": {"vlan": 100}},
        "vms": {f"r{i + 1}": {"switch": f"s{i + 1}", "port": 1, "network": "red"} for i in range(3)},
    })


def longest_gap(output: str) -> float:
    """Longest time (ms) between consecutive replies in ``ping -D`` output.

    Raises
    ------
    RuntimeError
        If fewer than two replies were printed.
    """
    stamps = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\].*icmp_seq=", output, re.MULTILINE)]
    if len(stamps) < 2:
        raise RuntimeError(f"fewer than two echo replies: {output[-300:]}")
    return max(b - a for a, b in pairwise(stamps)) * 1000


def cut_and_measure(lab: Lab, a: Host, b: Host, iface: str, p: Plan) -> tuple[float, int]:
    """Ping ``a`` → ``b`` at 100/s, take ``iface`` down mid-way; (gap in ms, requests lost)."""
    count = int((p.before_cut + p.after_cut) * 1000 / INTERVAL_MS)
    proc = a.popen(["ping", "-D", "-n", "-i", f"{INTERVAL_MS / 1000:g}", "-c", str(count), "-W", "1",
                    b.ip or ""])
    time.sleep(p.before_cut)
    lab.set_port_down(iface)
    try:
        out, _ = proc.communicate(timeout=p.after_cut + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    found = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    if not found:
        raise RuntimeError(f"no ping summary: {out[-300:]}")
    sent, received = map(int, found.groups())
    return longest_gap(out), sent - received


def run(opts: Options) -> list[Row]:
    """Build the ring once, cut and restore the s1-s2 link ``trials`` times; one row."""
    p = plan(opts)
    gaps: list[float] = []
    lost: list[int] = []
    with new_lab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        metrics = free_port()
        bridges = [f"{lab.prefix}b{i}" for i in (1, 2, 3)]
        config = ring_file(Path(tmp) / "ring.yaml", bridges, metrics)
        with controller(config, metrics_port=metrics) as ctl:
            for i, br in enumerate(bridges):
                lab.add_bridge(br, 0xE1 + i, ctl.port)
            links = [lab.add_link(bridges[i], 10, bridges[(i + 1) % 3], 11) for i in range(3)]
            hosts = [lab.add_host(f"r{i + 1}", bridges[i], 1, ip=f"10.205.0.{i + 1}")
                     for i in range(3)]
            for br in bridges:
                ctl.wait_connected(br, 20)
            a, b = hosts[0], hosts[1]
            for _ in range(p.trials):
                wait_until(lambda: total(metrics, "vmn_links_up") == 3, 20,
                           message="three links discovered")
                wait_until(lambda: a.ping(b), 15, message="r1 -> r2")
                gap, n_lost = cut_and_measure(lab, a, b, links[0].iface_a, p)
                gaps.append(gap)
                lost.append(n_lost)
                lab.set_port_up(links[0].iface_a)
    note = (f"Ring of 3 userspace bridges, LLDP every 0.5 s; ping r1 → r2 every {INTERVAL_MS} ms, "
            f"the s1-s2 link (the direct path) cut after {p.before_cut:g} s; gap = longest time "
            f"between consecutive echo replies (ping -D), so it includes the probe interval; "
            f"{p.trials} trial(s), {spread(gaps, 'ms')} (requests lost per trial: "
            f"{', '.join(map(str, lost))}). Rerouting is done by the controller on the "
            "port-status message. No peer run.")
    return [Row(f"{METRICS[0]} (ring of 3, cut the link in use) (ms)", fmt(median(gaps), "ms"),
                "—", "—", "—", note)]
