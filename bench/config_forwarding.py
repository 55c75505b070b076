"""Benchmark 3: from a network file to forwarding state on a real OVS bridge.

A network file with V VMs (MAC and IP declared, so port security applies)
in K networks on one switch. Ours: start the controller, point the bridge
at it once it listens, and poll the bridge's flow count until it equals
what the pure core wants (:func:`expected_flows`: ``Core`` driven without
os-ken, as ``tests/unit/fabric_helpers.py`` does). Reported from process
start, and from the switch connection, to the last flow.

Peer, the physical limit: the same flows (dumped from the bridge after our
install, statistics stripped) loaded into the emptied bridge with one
``ovs-ofctl --bundle add-flows``, timed as a whole command.

ACL rules are not implemented yet: the 1,000 and 5,000 rule rows say so.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.harness import (
    Options,
    Row,
    controller,
    fmt,
    median,
    new_lab,
    ratio,
    spread,
    wait_flow_count,
    write_yaml,
)
from bench.procstat import cpu_seconds
from controller.compose import build_core
from controller.config import load_model
from controller.tools.lab import OFCTL, Lab, sh

DPID = 0xC3
METRICS = ("Config → forwarding, controller start → last flow", "Config → forwarding, switch connect → last flow")
METER = "meter=1,pktps,burst,band=type=drop,rate=1000,burst_size=100"


@dataclass(frozen=True)
class Plan:
    vms: int
    networks: int
    runs: int


def plan(opts: Options) -> Plan:
    """100 VMs in 10 networks, 3 runs; quick: 10 VMs in 2 networks, 1 run."""
    return Plan(10, 2, 1) if opts.quick else Plan(100, 10, 3)


def network_file(path: Path, bridge: str, p: Plan) -> Path:
    """One switch; VM i on port i+1 in network i mod K, each with a MAC and an IP."""
    vms = {}
    for i in range(p.vms):
        net, k = i % p.networks, i // p.networks
        vms[f"vm{i:04d}"] = {
            "switch": "s1",
            "port": i + 1,
            "network": f"net{net:02d}",
            "mac": f"02:c3:00:00:{(i + 1) >> 8:02x}:{(i + 1) & 0xFF:02x}",
            "ip": f"10.{50 + net}.{k >> 8}.{(k & 0xFF) + 1}/16",
        }
    return write_yaml(
        path,
        {
            "controller": {"metrics_port": 0},
            "switches": {"s1": {"dpid": DPID, "bridge": bridge}},
            "networks": {f"net{n:02d}": {"vlan": 100 + n} for n in range(p.networks)},
            "vms": vms,
        },
    )


def expected_flows(config: Path, dpid: int) -> int:
    """How many flows the controller wants on ``dpid`` right after it connects (no hosts)."""
    core = build_core(load_model(config))
    core.switch_up(dpid, [])
    core.reconcile(dpid, [])
    return len(core.flows.rules(dpid))


def _empty(lab: Lab, bridge: str) -> None:
    lab.set_controller(bridge, None)
    sh([*OFCTL, "del-flows", bridge])
    sh([*OFCTL, "del-meters", bridge], check=False)


def ours_trial(lab: Lab, bridge: str, config: Path, expected: int) -> tuple[float, float, float]:
    """Seconds from process start and from set-controller to ``expected`` flows, and the
    controller's CPU seconds in that last span (less sensitive to a loaded machine)."""
    _empty(lab, bridge)
    t0 = time.monotonic()
    with controller(config) as ctl:
        cpu0 = cpu_seconds(ctl.pid)
        lab.set_controller(bridge, ctl.port)
        t_conn = time.monotonic()
        t_done = wait_flow_count(bridge, expected, 60)
        cpu = cpu_seconds(ctl.pid) - cpu0
    return t_done - t0, t_done - t_conn, cpu


def bundle_trial(
    lab: Lab,
    bridge: str,
    flows: Path,
    expected: int,
    empty: Callable[[Lab, str], None] = lambda lab, br: _empty(lab, br),
) -> float:
    """Seconds one ``ovs-ofctl --bundle add-flows`` of ``flows`` takes on the bridge once ``empty`` emptied it."""
    empty(lab, bridge)
    sh([*OFCTL, "add-meter", bridge, METER])
    t0 = time.monotonic()
    subprocess.run([*OFCTL, "--bundle", "add-flows", bridge, str(flows)], check=True, capture_output=True, timeout=120)
    seconds = time.monotonic() - t0
    wait_flow_count(bridge, expected, 5)
    return seconds


def dump_for_reload(bridge: str, path: Path) -> Path:
    """The bridge's flows as an ``add-flows`` file (no durations or counters)."""
    out = sh([*OFCTL, "--no-stats", "dump-flows", bridge]).stdout
    path.write_text("".join(line.strip() + "\n" for line in out.splitlines() if "actions=" in line))
    return path


def run(opts: Options) -> list[Row]:
    """Alternate ours and the bundle peer on one bridge; four rows."""
    p = plan(opts)
    totals, connects, cpus, peers = [], [], [], []
    with new_lab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        br = lab.add_bridge("b1", DPID, controller_port=None)
        config = network_file(Path(tmp) / "net.yaml", br, p)
        expected = expected_flows(config, DPID)
        flows = None
        for _ in range(p.runs):
            total, connect, cpu = ours_trial(lab, br, config, expected)
            totals.append(total)
            connects.append(connect)
            cpus.append(cpu)
            if flows is None:  # fail-mode secure: the flows outlive the controller
                flows = dump_for_reload(br, Path(tmp) / "flows.txt")
            peers.append(bundle_trial(lab, br, flows, expected))
        _empty(lab, br)
    t_total, t_conn, t_peer = median(totals), median(connects), median(peers)
    size = f"{p.vms} VMs, {p.networks} networks, {expected} flows"
    note = (
        f"One switch; VMs declared with MAC and IP (port security). {p.runs} run(s), "
        f"alternating, fresh controller process each; ours {spread(totals, 's', 3)} from "
        f"start, {spread(connects, 's', 3)} from connect; peer {spread(peers, 's', 3)}. "
        "Start = process spawn (includes Python and os-ken import); the bridge is pointed "
        "at the controller once it listens (no reconnect back-off in the number). Flow "
        "count polled every 20 ms with `ovs-ofctl dump-aggregate`."
    )
    return [
        Row(
            f"{METRICS[0]} ({size}, 0 ACL rules) (s)",
            fmt(t_total, "s", 3),
            fmt(t_peer, "s", 3),
            ratio(t_total, t_peer, False),
            "—",
            note,
        ),
        Row(
            f"{METRICS[1]} ({size}) (s)",
            fmt(t_conn, "s", 3),
            fmt(t_peer, "s", 3),
            ratio(t_conn, t_peer, False),
            "—",
            "Peer = `ovs-ofctl --bundle add-flows` of the same flows: the physical limit. Controller "
            f"CPU from connect to last flow: {spread(cpus, 's', 3)} (/proc/PID/stat).",
        ),
    ]
