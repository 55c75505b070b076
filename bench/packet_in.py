"""Benchmark 1: packet-in service rate, VMN vs. a textbook os-ken learning switch.

Both controllers run under our ``osken-manager`` and are driven by the same
emulated switch (:mod:`bench.ofemu`, its own process on loopback TCP).
VMN runs with a network file declaring the emulated switch, one network
and a VM (no MAC) on each of its two ports, with ``packet_in_rate`` and
``max_hosts_per_port`` raised so neither the controller-side token bucket
nor the per-port host cap limits it. Runs alternate (ours, peer, ours, ...),
each against a fresh controller process; medians are reported.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.harness import (
    VENV_PY,
    Options,
    Row,
    controller,
    fmt,
    median,
    ratio,
    spread,
    write_yaml,
)

DPID = 0x99
VLAN = 100
RAISED_LIMIT = 1_000_000
METRICS = ("Packet-in service rate", "Controller CPU per packet-in")


@dataclass(frozen=True)
class Plan:
    runs: int
    warmup: float
    duration: float
    window: int = 500


def plan(opts: Options) -> Plan:
    """Sizes for this run: 5 runs of 5 s each, or 1 run of 1 s in quick mode."""
    return Plan(1, 0.3, 1.0) if opts.quick else Plan(5, 1.0, 5.0)


def network_file(path: Path) -> Path:
    """The network file VMN runs with: one switch, one network, both ports VMs, limits raised."""
    return write_yaml(
        path,
        {
            "controller": {"metrics_port": 0, "packet_in_rate": RAISED_LIMIT, "max_hosts_per_port": RAISED_LIMIT},
            "switches": {"emu": {"dpid": DPID}},
            "networks": {"bench": {"vlan": VLAN}},
            "vms": {
                "vm1": {"switch": "emu", "port": 1, "network": "bench"},
                "vm2": {"switch": "emu", "port": 2, "network": "bench"},
            },
        },
    )


def drive(app: str, config: Path | None, p: Plan) -> dict[str, float]:
    """One fresh controller, one emulator run; the emulator's JSON result."""
    with controller(config, app=app) as ctl:
        cmd = [
            str(VENV_PY),
            "-m",
            "bench.ofemu",
            "--port",
            str(ctl.port),
            "--dpid",
            hex(DPID),
            "--vlan",
            str(VLAN),
            "--pid",
            str(ctl.pid),
            "--window",
            str(p.window),
            "--warmup",
            str(p.warmup),
            "--duration",
            str(p.duration),
        ]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=p.duration + 60,
            check=False,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
        if proc.returncode != 0:
            raise RuntimeError(f"emulator failed: {proc.stderr.strip()[-500:]}")
        result: dict[str, float] = json.loads(proc.stdout)
        if not ctl.alive():
            raise RuntimeError(f"{app} exited during the run")
        return result


def run(opts: Options) -> list[Row]:
    """Measure both controllers and return the two rows of :data:`METRICS`."""
    p = plan(opts)
    ours: list[dict[str, float]] = []
    peer: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        config = network_file(Path(tmp) / "net.yaml")
        for _ in range(p.runs):
            ours.append(drive("controller.app", config, p))
            peer.append(drive("bench.textbook_switch", None, p))
    rate_o, rate_p = median(r["rate"] for r in ours), median(r["rate"] for r in peer)
    cpu_o, cpu_p = median(r["ctrl_cpu_us"] for r in ours), median(r["ctrl_cpu_us"] for r in peer)
    lost = sum(r["lost"] for r in ours + peer)
    emu = max(r["emu_cpu_share"] for r in ours + peer)
    note = (
        f"{p.runs} run(s) each, alternating, {p.duration:g} s measured after {p.warmup:g} s "
        f"warm-up, window {p.window} outstanding; ours {spread([r['rate'] for r in ours])}/s, "
        f"peer {spread([r['rate'] for r in peer])}/s. Each run sent "
        f"{median(r['macs_total'] for r in ours) or 0:,.0f} fresh MACs to ours (its host "
        "table grows to that size; profile in bench/results.md). "
        f"Ours = `controller.app` with a network "
        f"file raising packet_in_rate and max_hosts_per_port to {RAISED_LIMIT:,} (defaults "
        "1000/s and 64 would cap it); answered = bundle commit (ours) or FLOW_MOD (peer). "
        f"Peer = `bench.textbook_switch` (os-ken simple_switch_13, logs each packet-in, as "
        f"ours logs each learned host). Emulator used at most {emu:.0%} of a core; "
        f"packet-ins written off as lost: {lost:.0f}."
    )
    return [
        Row(
            f"{METRICS[0]} (answered packet-ins/s)",
            fmt(rate_o, "/s"),
            fmt(rate_p, "/s"),
            ratio(rate_o, rate_p, True),
            "≥ 3×",
            note,
        ),
        Row(
            f"{METRICS[1]} (µs)",
            fmt(cpu_o, "µs"),
            fmt(cpu_p, "µs"),
            ratio(cpu_o, cpu_p, False),
            "—",
            "Controller process utime+stime (all threads, /proc/PID/stat) over the measured "
            "interval divided by answered packet-ins; medians.",
        ),
    ]
