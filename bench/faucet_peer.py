"""Faucet as a benchmark peer, from PyPI in its own venv (``bench/.faucet-venv``).

``pip install faucet`` pins os-ken 3.x and eventlet, so it never goes into
the project's ``.venv``. :func:`ensure_venv` creates the venv on demand;
:func:`unavailable` says why Faucet cannot run (or None); :func:`faucet`
runs ``osken-manager faucet.faucet`` on a port with a config file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.harness import BENCH_DIR, stop_process, write_yaml
from controller.tools.lab import free_port, sh

VENV = BENCH_DIR / ".faucet-venv"
FAUCET_MANAGER = VENV / "bin" / "osken-manager"
FAUCET_PY = VENV / "bin" / "python"


def unavailable() -> str | None:
    """Why Faucet cannot be run from :data:`VENV`, or None if it can."""
    if not FAUCET_MANAGER.exists():
        return f"{VENV.relative_to(BENCH_DIR.parent)} missing (bench/run.sh creates it)"
    proc = subprocess.run(
        [str(FAUCET_PY), "-c", "import faucet.faucet"], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        return f"faucet does not import: {proc.stderr.strip().splitlines()[-1:]}"
    return None


def ensure_venv() -> str | None:
    """Create :data:`VENV` with ``pip install faucet`` if missing; return why it failed, or None."""
    if unavailable() is None:
        return None
    try:
        if not (VENV / "bin" / "pip").exists():
            sh([sys.executable, "-m", "venv", str(VENV)], timeout=300)
        sh([str(VENV / "bin" / "pip"), "install", "-q", "faucet"], timeout=900)
    except (subprocess.SubprocessError, OSError) as err:
        return f"pip install faucet failed: {str(err)[-300:]}"
    return unavailable()


def version() -> str:
    """The installed Faucet version (e.g. ``1.10.12``)."""
    code = "import importlib.metadata as m; print(m.version('faucet'))"
    out = subprocess.run([str(FAUCET_PY), "-c", code], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


@dataclass(frozen=True)
class FaucetDp:
    """One Faucet datapath: every port native in one VLAN, host limits raised.

    ``ignore_learn_ins``: Faucet's knob (learn from all but about 1 in n
    packet-ins; its default is 10); None leaves Faucet's default.
    """

    name: str
    dpid: int
    vid: int
    ports: tuple[int, ...]
    max_hosts: int
    ignore_learn_ins: int | None = 0


def write_config(path: Path, dp: FaucetDp) -> Path:
    """faucet.yaml for ``dp`` (``ignore_learn_ins`` as ``dp`` says; 0 learns from every packet-in)."""
    learn = {} if dp.ignore_learn_ins is None else {"ignore_learn_ins": dp.ignore_learn_ins}
    return write_yaml(
        path,
        {
            "vlans": {"bench": {"vid": dp.vid, "max_hosts": dp.max_hosts}},
            "dps": {
                dp.name: {
                    "dp_id": dp.dpid,
                    "hardware": "Open vSwitch",
                    **learn,
                    "interfaces": {p: {"native_vlan": "bench", "max_hosts": dp.max_hosts} for p in dp.ports},
                }
            },
        },
    )


@dataclass
class FaucetProcess:
    """A running Faucet: its OpenFlow ``port``, ``proc`` and log directory."""

    port: int
    proc: subprocess.Popen[bytes]
    logdir: Path

    def log_tail(self, chars: int = 2000) -> str:
        """The end of faucet.log and of its stderr."""
        parts = [
            p.read_text(errors="replace")[-chars:]
            for p in (self.logdir / "faucet.log", self.logdir / "stderr.log")
            if p.exists()
        ]
        return "\n".join(parts)


@contextmanager
def faucet_until(config: Path, deadline: float) -> Iterator[FaucetProcess | None]:
    """Run Faucet on a free port until the block exits (stopped by pid).

    Yields it once it listens, or None if it does not listen by ``deadline``
    (``time.monotonic()``; Faucet compiles its whole config first).

    Raises
    ------
    AssertionError
        If it exits early (the message carries its log tail).
    """
    with tempfile.TemporaryDirectory(prefix="vmn-bench-faucet-") as tmp:
        logdir = Path(tmp)
        port = free_port()
        env = {
            **os.environ,
            "FAUCET_CONFIG": str(config),
            "FAUCET_LOG": str(logdir / "faucet.log"),
            "FAUCET_EXCEPTION_LOG": str(logdir / "faucet_exception.log"),
            "FAUCET_PROMETHEUS_PORT": str(free_port()),
            "FAUCET_PROMETHEUS_ADDR": "127.0.0.1",
        }
        env.pop("PYTHONPATH", None)
        with open(logdir / "stderr.log", "wb") as err:
            proc = subprocess.Popen(
                [
                    str(FAUCET_MANAGER),
                    "--ofp-tcp-listen-port",
                    str(port),
                    "--ofp-listen-host",
                    "127.0.0.1",
                    "faucet.faucet",
                ],
                env=env,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running = FaucetProcess(port, proc, logdir)
        try:
            while not sh(["ss", "-Hltn", f"sport = :{port}"], check=False).stdout.strip():
                if proc.poll() is not None:
                    raise AssertionError(f"faucet exited {proc.returncode}: {running.log_tail()}")
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            else:
                yield running
                return
            yield None
        except BaseException:
            sys.stderr.write(f"--- faucet log tail ---\n{running.log_tail()}\n")
            raise
        finally:
            stop_process(proc)


@contextmanager
def faucet(config: Path) -> Iterator[FaucetProcess]:
    """Run Faucet until the block exits; raises AssertionError unless it listens within 60 s."""
    with faucet_until(config, time.monotonic() + 60) as running:
        if running is None:
            raise AssertionError("faucet not listening after 60 s")
        yield running
