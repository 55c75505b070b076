"""The data-plane benchmark on a private OVS, with ``ovs-vswitchd``'s CPU: a check, not a table row.

On a shared machine the system ``ovs-vswitchd`` also forwards other
sessions' test traffic (userspace datapath: one thread handles every veth),
so :mod:`bench.data_plane`'s throughputs swing with their load. Here the
two VMs sit on a bridge of an emulated hypervisor
(:class:`~controller.tools.lab.MultiHostLab`: its own ``ovs-vswitchd``), and
besides the throughput each test reports that daemon's CPU (user + system,
all threads, from ``/proc``), so *Gbit/s per vswitchd core* compares the
pipelines' cost per byte even when the absolute rates are noisy.

Usage (root, from the repo root)::

    PYTHONPATH=$PWD .venv/bin/python -m bench.data_plane_private [ROUNDS] [SECONDS]

Rounds alternate :data:`bench.data_plane.VARIANTS` of ours and ``NORMAL``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.data_plane import DPID, VARIANTS, iperf, network_file
from bench.harness import prepare_environment
from controller.tools.lab import ControllerProcess, Hypervisor, MultiHostLab, wait_until

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid``."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def use(hv: Hypervisor, bridge: str, controller: str | None) -> None:
    """Empty ``bridge``; hand it to ``controller`` (an OVS target) and wait for flows, or add one NORMAL flow."""
    hv.vsctl("del-controller", bridge)
    hv.ofctl("del-flows", bridge)
    if controller is None:
        hv.ofctl("add-flow", bridge, "priority=0,actions=NORMAL")
        return
    hv.vsctl("set-controller", bridge, controller)
    wait_until(lambda: len(hv.dump_flows(bridge)) > 100, 30, message=f"flows from {controller}")


def main(rounds: int = 3, seconds: int = 10) -> dict[str, list[tuple[float, float]]]:
    """Alternate each variant of ours and NORMAL; print and return (Gbit/s, vswitchd cores) per test."""
    prepare_environment()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in (*VARIANTS, "NORMAL")}
    with MultiHostLab() as lab, tempfile.TemporaryDirectory(prefix="vmn-bench-") as tmp:
        hv = lab.add_hypervisor("hv1")
        br = hv.add_bridge("br", DPID, None)
        h1 = hv.add_vm("h1", br, 1, ip="10.204.0.1/24", mac="02:d4:00:00:00:01")
        h2 = hv.add_vm("h2", br, 2, ip="10.204.0.2/24", mac="02:d4:00:00:00:02")
        pid = int((hv.dir / "ovs-vswitchd.pid").read_text())
        controllers: dict[str, ControllerProcess] = {}
        try:
            for i, variant in enumerate(VARIANTS):
                cfg = network_file(Path(tmp) / f"net-{i}.yaml", br, [h1, h2], variant)
                net = yaml.safe_load(cfg.read_text())
                net["switches"]["s1"].pop("bridge", None)  # the bridge is the hypervisor's, not the system OVS's
                cfg.write_text(yaml.safe_dump(net))
                controllers[variant] = ControllerProcess(cfg, listen_host=lab.controller_ip).start()
            for _ in range(rounds):
                for name in results:
                    ctl = controllers.get(name)
                    use(hv, br, ctl.target if ctl else None)
                    wait_until(lambda: h1.ping(h2), 15, message=f"h1 -> h2 ({name})")
                    cpu0, t0 = cpu_seconds(pid), time.monotonic()
                    rate = iperf(h1, h2, seconds)
                    cores = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
                    results[name].append((rate / 1e9, cores))
                print({k: [f"{g:.2f}@{c:.2f}" for g, c in v[-1:]] for k, v in results.items()}, flush=True)
        finally:
            for ctl in controllers.values():
                ctl.stop()
                ctl.log_path.unlink(missing_ok=True)
    normal = statistics.median(g / c for g, c in results["NORMAL"])
    for name, runs in results.items():
        efficiency = statistics.median(g / c for g, c in runs)
        print(
            f"{name}: median {statistics.median(g for g, _ in runs):.2f} Gbit/s "
            f"(runs {', '.join(f'{g:.2f}' for g, _ in runs)}); "
            f"{efficiency:.3f} Gbit/s per vswitchd core ({efficiency / normal:.2f}x NORMAL)"
        )
    return results


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
