"""Benchmark: the controller's whole desired state at scale (no switch involved).

A generated leaf-spine fabric (:func:`controller.tools.topo.leaf_spine_tenants`:
declared MACs and IPs, so port security applies) with every VM learned, as
``vmn trace`` and a restarted controller that re-learned its hosts see it.
Each size runs in its own Python process, so its peak memory is its own:

- **compile**: ``Core.recompute()`` from nothing (every app's rules and
  groups for every switch, diffed into the flow state), CPU seconds;
- **peak MB**: the process's peak resident set (``ru_maxrss``: Python,
  imports, the model and the state; the interpreter alone is ~60 MB);
- **host event**: CPU ms of one learn packet-in of a VM not learned yet
  (median of 5), with every switch ready, so the batches are built too;
- **reload**: CPU ms of ``Core.reload`` of the file with one VM's IP changed
  (one port-security rule differs), every switch ready;
- **flows** in all, the most on one spine and on one leaf.

Writes ``bench/scale.png`` (compile time and memory against flows; flows
per switch role against VMs) with matplotlib. Quick mode: one tiny size.

Usage: ``python -m bench.scale`` (all sizes, prints the table), or
``python -m bench.scale --child SPINES LEAVES NETWORKS VMS_PER_LEAF`` (one
size, prints its JSON: what :func:`run` calls).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.harness import BENCH_DIR, REPO_ROOT, Options, Row, fmt

if TYPE_CHECKING:
    from controller.config.model import Model, Vm
    from controller.core import Core
    from controller.tools.topo import NetworkFile

METRICS = ("Scale: whole desired state",)
PLOT = BENCH_DIR / "scale.png"
HOST_EVENTS = 5


@dataclass(frozen=True)
class Size:
    """One generated fabric: ``spines`` + ``leaves`` switches, ``networks``, ``vms_per_leaf``."""

    spines: int
    leaves: int
    networks: int
    vms_per_leaf: int

    @property
    def switches(self) -> int:
        return self.spines + self.leaves

    @property
    def vms(self) -> int:
        return self.leaves * self.vms_per_leaf


SIZES = (Size(2, 8, 4, 63), Size(2, 28, 12, 54), Size(4, 96, 40, 52))
"""10/30/100 switches with about 500/1,500/5,000 VMs (4,992 at the top, 52 per leaf in 40 networks)."""
QUICK = (Size(1, 2, 2, 4),)


@dataclass(frozen=True)
class Result:
    """What one size measured (times in CPU seconds or ms, memory in MB)."""

    switches: int
    vms: int
    networks: int
    flows: int
    flows_spine: int
    flows_leaf: int
    groups: int
    compile_s: float
    peak_mb: float
    host_event_ms: float
    reload_ms: float


def _frame(mac: str, vlan: int) -> bytes:
    """A broadcast ARP frame from ``mac``, tagged ``vlan`` as the learn table copies it."""
    return b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) + struct.pack("!HHH", 0x8100, vlan, 0x0806) + bytes(46)


@dataclass(frozen=True)
class Fabric:
    """A generated fabric of one size, its switches and links known to ``core``, nothing compiled yet."""

    net: NetworkFile
    """The network file (as parsed YAML)."""
    model: Model
    core: Core
    numbers: Mapping[tuple[str, str | int], tuple[int, int]]
    """(switch name, declared port) -> (dpid, port number)."""
    later: list[Vm]
    """VMs not learned yet: :func:`measure` learns them one by one (its host events)."""


def connected(net: NetworkFile, later: list[Vm] | None = None) -> Fabric:
    """A :class:`Fabric` of ``net`` with every switch (its declared ports) and link up, nothing compiled.

    ``later``: the VMs left to learn; None for every VM with a ``mac``.
    """
    from controller.compose import build_core
    from controller.config import parse_model
    from controller.fabric.topology import LinkKey, PortInfo
    from controller.tools.portplan import placeholder_name, port_numbers

    model = parse_model(net)
    core = build_core(model)
    numbers = port_numbers(model)
    for switch in model.switches:
        ports = sorted(no for (name, _), (_, no) in numbers.items() if name == switch.name)
        core.topology.add_switch(switch.dpid, [PortInfo(no, placeholder_name(no)) for no in ports])
    for link in model.links:
        a, b = numbers[(link.a.switch, link.a.port)], numbers[(link.b.switch, link.b.port)]
        core.topology.add_link(LinkKey.of(a[0], a[1], b[0], b[1]))
    return Fabric(net, model, core, numbers, [vm for vm in model.vms if vm.mac is not None] if later is None else later)


def build(size: Size) -> Fabric:
    """The fabric of ``size`` with every VM learned but :data:`HOST_EVENTS` of them (also for :mod:`bench.scale_profile`)."""
    from apps.l2.app import L2Switch
    from controller.fabric.view import Host
    from controller.tools.topo import leaf_spine_tenants

    net = leaf_spine_tenants(size.spines, size.leaves, networks=size.networks, vms_per_leaf=size.vms_per_leaf)
    fabric = connected(net, later=[])
    model, core, numbers = fabric.model, fabric.core, fabric.numbers
    l2 = core.app("l2")
    assert isinstance(l2, L2Switch)
    later = model.vms[:: max(1, len(model.vms) // HOST_EVENTS)][:HOST_EVENTS]
    for vm in model.vms:
        if vm not in later:
            dpid, port = numbers[(vm.switch, vm.port)]
            assert vm.mac is not None
            l2.hosts.put(Host(model.network_by_name[vm.network].vlan, vm.mac, dpid, port))
    return Fabric(net, model, core, numbers, list(later))


def measure(size: Size) -> Result:
    """Build the fabric of ``size`` in this process and measure it (see the module docstring)."""
    from controller.config import parse_model
    from controller.flows.pipeline import T_LEARN

    fabric = build(size)
    net, model, core, numbers, later = fabric.net, fabric.model, fabric.core, fabric.numbers, fabric.later
    started = time.process_time()
    core.recompute()
    compile_s = time.process_time() - started
    core.ready.update(s.dpid for s in model.switches)

    events = []
    for vm in later:
        dpid, port = numbers[(vm.switch, vm.port)]
        assert vm.mac is not None
        frame = _frame(vm.mac, model.network_by_name[vm.network].vlan)
        started = time.process_time()
        effects = core.packet_in(dpid, T_LEARN, port, frame)
        events.append(time.process_time() - started)
        assert effects.batches, f"learning {vm.name} changed nothing"

    changed = copy.deepcopy(net)
    first = next(iter(changed["vms"].values()))
    first["ip"] = first["ip"].replace("/16", "").rsplit(".", 1)[0] + ".250/16"
    new_model = parse_model(changed)
    started = time.process_time()
    core.reload(new_model)
    reload_s = time.process_time() - started

    spines = {s.dpid for s in model.switches if s.name.startswith("sp")}
    counts = {s.dpid: len(core.flows.rules(s.dpid)) for s in model.switches}
    return Result(
        switches=size.switches,
        vms=size.vms,
        networks=size.networks,
        flows=sum(counts.values()),
        flows_spine=max(c for d, c in counts.items() if d in spines),
        flows_leaf=max(c for d, c in counts.items() if d not in spines),
        groups=sum(len(g) for g in core.groups.values()),
        compile_s=compile_s,
        peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        host_event_ms=statistics.median(events) * 1000,
        reload_ms=reload_s * 1000,
    )


def run_size(size: Size) -> Result:
    """Measure ``size`` in a fresh Python process (so its peak memory is its own)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--child", *map(str, asdict(size).values())],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"size {size}: {proc.stderr.strip().splitlines()[-1:]}")
    return Result(**json.loads(proc.stdout))


def plot(results: list[Result], path: Path, before: list[Result] | None = None) -> None:
    """Compile time and peak memory against flows; flows per switch role against VMs.

    ``before``: an earlier run of the same sizes, drawn faded for comparison.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    flows = [r.flows for r in results]
    left.plot(flows, [r.compile_s for r in results], "o-", color="tab:blue", label="compile (CPU s)")
    left.set_xlabel("flows in the fabric, thousands")
    left.xaxis.set_major_formatter(lambda x, _pos: f"{x / 1000:,.0f}")
    left.set_ylabel("compile, CPU s", color="tab:blue")
    mem = left.twinx()
    mem.plot(flows, [r.peak_mb for r in results], "s--", color="tab:red", label="peak RSS (MB)")
    mem.set_ylabel("peak RSS, MB", color="tab:red")
    left.set_title("Whole desired state")
    if before:
        old = [r.flows for r in before]
        left.plot(old, [r.compile_s for r in before], "o:", color="tab:blue", alpha=0.4, label="compile, before")
        mem.plot(old, [r.peak_mb for r in before], "s:", color="tab:red", alpha=0.4, label="peak RSS, before")
        right.plot([r.vms for r in before], [r.flows_spine for r in before], "o:", alpha=0.4, label="spine, before")
    left.legend(loc="upper left", fontsize="small")
    mem.legend(loc="lower right", fontsize="small")
    vms = [r.vms for r in results]
    right.plot(vms, [r.flows_spine for r in results], "o-", label="flows on a spine")
    right.plot(vms, [r.flows_leaf for r in results], "s-", label="flows on a leaf")
    right.plot(vms, vms, ":", color="grey", label="VMs")
    right.set_xlabel("VMs")
    right.set_ylabel("flows")
    right.set_title("Flows per switch role")
    right.legend()
    for r in results:
        left.annotate(f"{r.switches} sw", (r.flows, r.compile_s), textcoords="offset points", xytext=(4, -10))
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)


def table(results: list[Result]) -> str:
    """The markdown table of ``results`` (the README's Scale table)."""
    lines = [
        "| switches | VMs | networks | flows | per spine | per leaf | compile s | peak MB | host event ms | reload ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.switches} | {r.vms:,} | {r.networks} | {r.flows:,} | {r.flows_spine:,} | {r.flows_leaf:,} "
            f"| {r.compile_s:.2f} | {r.peak_mb:.0f} | {r.host_event_ms:.1f} | {r.reload_ms:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def run(opts: Options) -> list[Row]:
    """Every size in its own process; one row per size; the plot (full runs only)."""
    results = [run_size(s) for s in (QUICK if opts.quick else SIZES)]
    if not opts.quick:
        plot(results, PLOT)
    return [
        Row(
            f"{METRICS[0]}, {r.switches} switches / {r.vms:,} VMs",
            f"{fmt(r.compile_s, 's', 2)}, {fmt(r.peak_mb, 'MB')}, host event {fmt(r.host_event_ms, 'ms', 1)}",
            goal="< 5 s, < 400 MB, < 5 ms at 100 / 5,000" if r.switches >= 100 else "—",
            note=f"{r.flows:,} flows ({r.flows_spine:,} on a spine, {r.flows_leaf:,} on a leaf), "
            f"{r.groups:,} groups; reload of one changed rule {fmt(r.reload_ms, 'ms')}",
        )
        for r in results
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=4, type=int, metavar=("SPINES", "LEAVES", "NETWORKS", "VMS_PER_LEAF"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(asdict(measure(Size(*args.child)))))
        return 0
    results = [run_size(s) for s in (QUICK if args.quick else SIZES)]
    if not args.no_plot:
        plot(results, PLOT)
    print(table(results), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
