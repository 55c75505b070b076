"""Where a whole compile's CPU time goes, at one size of :mod:`bench.scale`.

Builds the same fabric (every VM learned but the few :mod:`bench.scale`
keeps for its host events) and runs the steps of ``Core.recompute`` one by
one, each timed in process CPU seconds (the machine is shared: wall time
would measure the neighbours):

- **routes**: the snapshot's shortest paths, backup hops and groups, label
  transit and trunk VLANs (``FabricView``, computed once, shared by apps);
- **compile APP**: what each app's ``compile`` adds (its rules and segments);
- **flow state**: ``FlowState.replace_parts`` of every app's segments
  (reference counts, per-switch diffs);
- **check + gauges**: ``Core._effects`` (each distinct added rule checked
  against the pipeline once; flow gauges; no switch is ready, so no batch).

Then the rule objects: flows, distinct rules, distinct rule objects (rules
shared among switches). With ``--cprofile N`` also the N functions with
the most self time under cProfile (which slows everything about 2x).

Usage: ``python -m bench.scale_profile [SPINES LEAVES NETWORKS VMS_PER_LEAF] [--cprofile 25]``
(default 2 28 12 54: the 30-switch size, about 2 s).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from apps.base import Refreshes, Segments
from bench.scale import Size, build

T = TypeVar("T")


def timed(rows: list[tuple[str, float]], name: str, step: Callable[[], T]) -> T:
    """Run ``step``, append (``name``, its CPU seconds) to ``rows``, return what it returned."""
    started = time.process_time()
    out = step()
    rows.append((name, time.process_time() - started))
    return out


def profile(size: Size, prof: cProfile.Profile | None = None) -> list[tuple[str, float]]:
    """CPU seconds of each step of one compile of ``size`` from nothing (see the module docstring).

    ``prof``, if given, is enabled during the steps only (not while the fabric is built).
    """
    core = build(size).core
    rows: list[tuple[str, float]] = []
    gc.disable()
    if prof is not None:
        prof.enable()
    view = core.view()
    timed(rows, "routes (FabricView)", lambda: (view._fabrics, view._backup_groups, view._transit, view._trunk_vlans))

    def refresh() -> None:
        for app in core.apps:
            if isinstance(app, Refreshes):
                app.refresh(view)

    timed(rows, "refresh", refresh)
    parts: list[Segments] = []
    for app in core.apps:
        parts.append(timed(rows, f"compile {app.name}", partial(app.compile, view)))
    diffs = timed(rows, "flow state (replace_parts)", partial(core.flows.replace_parts, parts))
    timed(rows, "check + gauges (_effects)", partial(core._effects, diffs))
    if prof is not None:
        prof.disable()
    gc.enable()
    rules = [r for d in sorted(core.topology.ports) for r in core.flows.rules(d)]
    print(f"{len(rules):,} flows, {len(set(rules)):,} distinct rules, {len({id(r) for r in rules}):,} rule objects")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("size", nargs="*", type=int, default=[2, 28, 12, 54], help="SPINES LEAVES NETWORKS VMS_PER_LEAF")
    p.add_argument("--cprofile", type=int, default=0, metavar="N", help="also print the top N by self time")
    args = p.parse_args(argv)
    size = Size(*args.size)
    prof = cProfile.Profile() if args.cprofile else None
    rows = profile(size, prof)
    total = sum(s for _, s in rows)
    print(f"{size.switches} switches, {size.vms:,} VMs: compile {total:.2f} CPU s")
    for name, seconds in rows:
        print(f"  {name:32s} {seconds:6.2f} s  {100 * seconds / total:5.1f} %")
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.cprofile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
