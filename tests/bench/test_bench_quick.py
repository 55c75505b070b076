"""The benchmark harness in quick mode: every benchmark runs and reports its rows.

Quick mode uses tiny sizes and skips the Faucet peer, so only the harness
is checked here, not the numbers.
"""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import pytest

from bench.run import BENCHMARKS

pytestmark = pytest.mark.ovs

REPO_ROOT = Path(__file__).resolve().parents[2]


def table_rows(text: str) -> list[list[str]]:
    """Cells of each data row of the markdown table in ``text``."""
    rows = [
        line.strip().strip("|").split(" | ")
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| metric")
    ]
    return [[c.strip() for c in row] for row in rows]


def test_quick_mode_reports_every_row(require_ovs: None, tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    proc = subprocess.run(
        ["bash", "bench/run.sh", "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    text = out.read_text()
    assert "| metric | ours | peer | ratio | goal |" in text
    rows = table_rows(text)
    assert all(len(r) == 5 for r in rows), rows
    for name in BENCHMARKS:
        for key in importlib.import_module(f"bench.{name}").METRICS:
            matching = [r for r in rows if r[0].startswith(key)]
            assert matching, f"no row for {key!r} in:\n{text}"
            assert all(r[1] != "failed" for r in matching), text
            # a harness that measured nothing (e.g. "0 /s") is broken, not slow
            assert not any(r[1].startswith("0 ") for r in matching), f"{key!r} measured nothing:\n{text}"
    assert "skipped in quick mode" in text  # no Faucet in quick mode
    assert "Machine: " in text
