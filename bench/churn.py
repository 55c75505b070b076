"""Benchmark: host churn on a real OVS bridge, the controller's memory after each round.

MAC randomisation and VM churn: rounds of N fresh source MACs, each round
learned (a namespace on port 1 sends frames from them with
:mod:`bench.mac_flood` until the bridge holds a learn flow for every one)
and then left silent until every learn flow has idled out
(``host_timeout``) and the bridge is back to its flow count before the
round. After each round, the controller's resident set size (``VmRSS`` of
``/proc/PID/status``). Memory that outlives the hosts grows round after
round; the goal (issue 20) is RSS after the last round within 1.15x of RSS
after round 2.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import (
    BENCH_DIR,
    SYSTEM_PY,
    Options,
    Row,
    controller,
    flow_count,
    fmt,
    learned_macs,
    new_lab,
    stop_process,
    wait_flow_count,
    wait_flows_stable,
    write_yaml,
)
from controller.tools.lab import Lab

DPID = 0xC4
VLAN = 100
DST_MAC = "02:ee:ee:ee:ee:02"
RAISED_LIMIT = 1_000_000
SENDER = BENCH_DIR / "mac_flood.py"
METRIC = "Host churn: controller RSS after the last round of fresh MACs learned and expired"
METRICS = (METRIC,)


@dataclass(frozen=True)
class Plan:
    macs: int
    rounds: int
    pps: int
    host_timeout: int
    learn_timeout: float = 300


def plan(opts: Options) -> Plan:
    """20 rounds of 5,000 MACs at 8,000 frames/s, host_timeout 3 s; quick: 2 rounds of 50, 1 s."""
    return Plan(50, 2, 2000, 1, 30) if opts.quick else Plan(5000, 20, 8000, 3)


def network_file(path: Path, bridge: str, p: Plan) -> Path:
    """One switch, one network, two VMs without MAC; host limits raised, ``host_timeout`` from the plan."""
    return write_yaml(
        path,
        {
            "controller": {
                "metrics_port": 0,
                "packet_in_rate": RAISED_LIMIT,
                "max_hosts_per_port": RAISED_LIMIT,
                "host_timeout": p.host_timeout,
            },
            "switches": {"s1": {"dpid": DPID, "bridge": bridge}},
            "networks": {"churn": {"vlan": VLAN}},
            "vms": {
                "h1": {"switch": "s1", "port": 1, "network": "churn"},
                "h2": {"switch": "s1", "port": 2, "network": "churn"},
            },
        },
    )


def rss_kib(pid: int) -> int:
    """``VmRSS`` of process ``pid`` in KiB (proc(5)); raises OSError if it is gone, ValueError if absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS in /proc/{pid}/status")


def learn_round(lab: Lab, bridge: str, p: Plan, prefix: str) -> float:
    """Send from ``p.macs`` fresh MACs under ``prefix`` until each has had a learn flow; seconds it took.

    Raises AssertionError if that takes over ``p.learn_timeout`` seconds.
    """
    host = lab.hosts["h1"]
    sender = host.popen(
        [SYSTEM_PY, str(SENDER), host.iface, str(p.macs), str(p.pps), DST_MAC, prefix, str(p.learn_timeout)]
    )
    t0 = time.monotonic()
    try:
        learned: set[str] = set()
        while len(learned) < p.macs:
            if time.monotonic() - t0 > p.learn_timeout:
                raise AssertionError(f"round {prefix}: {len(learned)} of {p.macs} MACs learned")
            time.sleep(0.2)
            learned |= learned_macs(bridge, prefix)  # one learned may idle out before the last is
    finally:
        stop_process(sender)
    return time.monotonic() - t0


def run(opts: Options) -> list[Row]:
    """Rounds of learn-then-expire against one controller; one row (last round vs round 2)."""
    p = plan(opts)
    rss: list[int] = []
    learn_s: list[float] = []
    with new_lab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        br = lab.add_bridge("b1", DPID, controller_port=None)
        lab.add_host("h1", br, 1)
        lab.add_host("h2", br, 2)
        with controller(network_file(Path(tmp) / "net.yaml", br, p)) as ctl:
            lab.set_controller(br, ctl.port)
            idle = wait_flows_stable(br, quiet=0.5, timeout=60)
            start = rss_kib(ctl.pid)
            for r in range(p.rounds):
                learn_s.append(learn_round(lab, br, p, f"02:{r + 1:02x}"))
                wait_flow_count(br, idle, p.host_timeout * 3 + 30, interval=0.2)
                rss.append(rss_kib(ctl.pid))
                print(
                    f"bench: churn round {r + 1}: {learn_s[-1]:.1f} s to learn, RSS {rss[-1] / 1024:.1f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
            assert flow_count(br) == idle
    second, last = rss[1], rss[-1]
    per_round = " ".join(f"{k / 1024:.0f}" for k in rss)
    note = (
        f"One switch, host_timeout {p.host_timeout} s; {p.rounds} rounds of {p.macs:,} fresh MACs "
        f"(sent round-robin at {p.pps:,} frames/s until each had had a learn flow, then silent until every learn "
        f"flow idled out and the bridge was back to {idle} flows). RSS at connect {start / 1024:.0f} MiB; "
        f"after each round (MiB): {per_round}. Learning took {min(learn_s):.1f}-{max(learn_s):.1f} s a round."
    )
    return [
        Row(
            f"{METRIC} ({p.rounds} rounds of {p.macs:,} MACs) (MiB)",
            fmt(last / 1024, "MiB", 1),
            fmt(second / 1024, "MiB", 1) + " (after round 2)",
            f"{last / second:.3f}× of round 2",
            "≤ 1.15× of round 2",
            note,
        )
    ]
