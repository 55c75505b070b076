"""The small shared harness of the benchmarks: rows, statistics, processes, OVS probes.

Every benchmark module exposes ``METRICS`` (stable keys: each row it
reports starts with one, in order; sizes may follow) and
``run(opts) -> list[Row]``; :mod:`bench.run` calls them and renders one
markdown table. Ratios are always "how many times better
ours is" (ours/peer for rates and throughput, peer/ours for times and
costs), so a ratio above 1 means ours is better and goals read the same way.
"""

from __future__ import annotations

import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.tools.lab import OFCTL, ControllerProcess, Lab, sh, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
VENV_PY = REPO_ROOT / ".venv" / "bin" / "python"
SYSTEM_PY = "/usr/bin/python3"
METRICS_ENV = "VMN_METRICS_PORT"


@dataclass(frozen=True)
class Options:
    """What the whole run was asked for: ``quick`` shrinks every benchmark to a smoke test."""

    quick: bool = False
    faucet: bool = True
    """Run the Faucet peer (never in quick mode)."""


@dataclass(frozen=True)
class Row:
    """One line of the results table; ``note`` becomes a footnote."""

    metric: str
    ours: str
    peer: str = "—"
    ratio: str = "—"
    goal: str = "—"
    note: str = ""


def failed_rows(metrics: Sequence[str], error: BaseException) -> list[Row]:
    """Rows saying a benchmark failed, one per metric it would have reported."""
    text = f"{type(error).__name__}: {error}".splitlines()[0][:200]
    return [Row(m, "failed", note=text) for m in metrics]


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None; None if there are none."""
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    """``12,345 unit`` style; "n/a" for None."""
    if value is None:
        return "n/a"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".strip()


def ratio(ours: float | None, peer: float | None, higher_is_better: bool) -> str:
    """How many times better ours is, formatted ("n/a" if either is missing or zero)."""
    if not ours or not peer:
        return "n/a"
    value = ours / peer if higher_is_better else peer / ours
    return f"{value:.2f}×" if value < 10 else f"{value:.1f}×"


def spread(values: Sequence[float], unit: str = "", digits: int = 0) -> str:
    """``runs: a, b, c unit`` for a footnote."""
    return "runs: " + ", ".join(f"{v:,.{digits}f}" for v in values) + (f" {unit}" if unit else "")


def render(rows: Sequence[Row], title: str) -> str:
    """The markdown table (metric | ours | peer | ratio | goal) plus numbered footnotes."""
    lines = [f"### {title}", "", "| metric | ours | peer | ratio | goal |", "|---|---|---|---|---|"]
    notes: list[str] = []
    for row in rows:
        metric = row.metric
        if row.note:
            notes.append(row.note)
            metric += f" [{len(notes)}]"
        cells = (metric, row.ours, row.peer, row.ratio, row.goal)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    lines += [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- processes --


def prepare_environment() -> None:
    """Let controller processes import ``bench.*`` (the repo root on ``PYTHONPATH``)."""
    path = os.environ.get("PYTHONPATH", "")
    if str(REPO_ROOT) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), path) if p)


@contextmanager
def controller(
    config: Path | None, app: str = "controller.app", wait: bool = True, metrics_port: int = 0
) -> Iterator[ControllerProcess]:
    """Start ``osken-manager app`` (our venv), stop it by pid on exit and delete its log.

    ``metrics_port`` becomes ``VMN_METRICS_PORT`` (0: no exporter). On an
    exception the log tail is written to stderr first.
    """
    ctl = ControllerProcess(config, app=app)
    saved = os.environ.get(METRICS_ENV)
    try:
        os.environ[METRICS_ENV] = str(metrics_port)  # ControllerProcess copies os.environ
        try:
            ctl.start(wait=wait)
        finally:
            if saved is None:
                os.environ.pop(METRICS_ENV, None)
            else:
                os.environ[METRICS_ENV] = saved
        yield ctl
    except BaseException:
        if ctl.log_path.exists():
            sys.stderr.write(f"--- {app} log tail ---\n{ctl.log_text()[-2000:]}\n")
        raise
    finally:
        ctl.stop()
        ctl.log_path.unlink(missing_ok=True)


def stop_process(proc: subprocess.Popen[Any], grace: float = 5) -> None:
    """SIGTERM ``proc`` (by its pid), SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def new_lab() -> Lab:
    """A :class:`Lab` whose names start with ``bn`` + 4 hex digits (bench-owned)."""
    return Lab(prefix="bn" + secrets.token_hex(2))


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as YAML to ``path``; return ``path``."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ------------------------------------------------------------------ OVS probes --

_FLOW_COUNT = re.compile(r"flow_count=(\d+)")
_DL_SRC = re.compile(r"dl_src=([0-9a-f:]{17})")


def flow_count(bridge: str) -> int:
    """Number of flows in every table of ``bridge``."""
    out = sh([*OFCTL, "dump-aggregate", bridge]).stdout
    found = _FLOW_COUNT.search(out)
    if not found:
        raise RuntimeError(f"no flow_count in dump-aggregate output: {out!r}")
    return int(found.group(1))


def learned_macs(bridge: str, prefix: str, table: int | None = None) -> set[str]:
    """Distinct ``dl_src`` values starting with ``prefix`` in the flows of ``bridge``."""
    cmd = [*OFCTL, "--no-stats", "dump-flows", bridge]
    if table is not None:
        cmd.append(f"table={table}")
    out = sh(cmd, timeout=60).stdout
    return {m for m in _DL_SRC.findall(out) if m.startswith(prefix)}


def wait_flow_count(bridge: str, expected: int, timeout: float, interval: float = 0.02) -> float:
    """Poll until ``bridge`` holds exactly ``expected`` flows; return the monotonic time seen.

    Raises
    ------
    AssertionError
        On timeout (with the last count).
    """
    wait_until(lambda: flow_count(bridge) == expected, timeout, interval, message=f"{bridge} holds {expected} flows")
    return time.monotonic()


def wait_flows_stable(bridge: str, quiet: float = 1.0, timeout: float = 30) -> int:
    """Wait until ``bridge`` has flows and their count has not changed for ``quiet`` s."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = flow_count(bridge)
        now = time.monotonic()
        if count != last:
            last, since = count, now
        elif count > 0 and now - since >= quiet:
            return count
        time.sleep(0.1)
    raise AssertionError(f"{bridge}: flow count not stable within {timeout}s (last {last})")
