"""Run the benchmarks and write the results table.

Usage (from the repo root, as root, with OVS running)::

    .venv/bin/python -m bench.run [--quick] [--only NAME ...] [--no-faucet] [--out PATH]

Prints the markdown table and writes it: a full run replaces the part of
``bench/results.md`` between the ``bench:begin``/``bench:end`` markers
(hand-written analysis around it is kept); ``--quick`` writes
``bench/results-quick.md``, ``--only``/``--no-faucet`` runs
``bench/results-partial.md``; ``--out`` writes exactly that file (whole).
A benchmark that raises reports "failed" in each of its rows; the exit
status is 1 if any did.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from bench.harness import (
    BENCH_DIR,
    Options,
    Row,
    failed_rows,
    prepare_environment,
    render,
)

BENCHMARKS = (
    "packet_in",
    "host_learning",
    "churn",
    "config_forwarding",
    "acl_scale",
    "data_plane",
    "data_plane_routed",
    "data_plane_nat",
    "failover",
    "scale",
)
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def machine() -> str:
    """One line describing this machine: cores, CPU model, kernel, OVS and Python versions."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    ovs = subprocess.run(["ovs-vsctl", "--version"], capture_output=True, text=True, check=False).stdout.splitlines()[
        :1
    ]
    load = Path("/proc/loadavg").read_text().split()[:3]
    import os

    return (
        f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, "
        f"{ovs[0] if ovs else 'OVS unknown'} (userspace/netdev bridges), "
        f"Python {platform.python_version()}; load average at start {' '.join(load)}"
    )


def revision() -> str:
    """The commit the controller code comes from, and whether controller/apps differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=False, cwd=BENCH_DIR.parent
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "controller", "apps")
    return f"commit {commit}" + (" with uncommitted changes in controller/ or apps/" if dirty else "")


def run_all(opts: Options, names: tuple[str, ...]) -> tuple[list[Row], bool]:
    """Run the named benchmarks in order; return all rows and whether any failed."""
    rows: list[Row] = []
    ok = True
    for name in names:
        module: ModuleType = importlib.import_module(f"bench.{name}")
        started = time.monotonic()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            got: list[Row] = module.run(opts)
        except Exception as err:  # noqa: BLE001  (a failed benchmark still gets its rows)
            ok = False
            print(f"bench: {name} FAILED: {err!r}", file=sys.stderr, flush=True)
            got = failed_rows(module.METRICS, err)
        print(f"bench: {name} done in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        rows += got
    return rows, ok


def write_results(text: str, path: Path, whole: bool) -> None:
    """Write ``text`` to ``path``: whole, or between the markers (appending them if absent)."""
    if whole or not path.exists():
        path.write_text(text if whole else f"# Benchmark results\n\n{BEGIN}\n{text}{END}\n")
        return
    old = path.read_text()
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        path.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    else:
        path.write_text(f"{old.rstrip()}\n\n{BEGIN}\n{text}{END}\n")


def main(argv: list[str] | None = None) -> int:
    """Parse options, run, print and write the table; 0 if every benchmark ran."""
    p = argparse.ArgumentParser(description="VMN benchmarks")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness only")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    p.add_argument("--no-faucet", action="store_true", help="skip the Faucet peer")
    p.add_argument("--out", type=Path, help="write the table (whole file) here")
    args = p.parse_args(argv)
    prepare_environment()
    opts = Options(quick=args.quick, faucet=not (args.quick or args.no_faucet))
    names = tuple(args.only) if args.only else BENCHMARKS
    started = time.monotonic()
    header = machine()
    rows, ok = run_all(opts, names)
    mode = "quick mode (harness check, numbers not meaningful)" if opts.quick else "full run"
    title = f"{mode}, {time.strftime('%Y-%m-%d %H:%M %Z')}"
    text = (
        render(rows, title) + f"\nMachine: {header}. Code: {revision()}. Total bench "
        f"time {time.monotonic() - started:.0f} s.\n"
    )
    print(text)
    if args.out:
        write_results(text, args.out, whole=True)
    elif opts.quick:
        write_results(text, BENCH_DIR / "results-quick.md", whole=True)
    elif args.only or args.no_faucet:  # a partial run must not replace the full table
        write_results(text, BENCH_DIR / "results-partial.md", whole=True)
    else:
        write_results(text, BENCH_DIR / "results.md", whole=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
