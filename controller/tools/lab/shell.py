"""Running commands for the lab: ``sh``, polling, free ports, fresh name prefixes.

The inspection and set-up tools of :mod:`controller.tools.lab` call
``ovs-vsctl``, ``ovs-ofctl`` and ``ip`` through :func:`sh`; the command
prefixes :data:`OFCTL` and :data:`VSCTL` pin OpenFlow 1.3 and a 10 s
database timeout.
"""

from __future__ import annotations

import secrets
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

OFCTL = ("ovs-ofctl", "-O", "OpenFlow13")
"""``ovs-ofctl`` speaking OpenFlow 1.3 (the bridges accept nothing else)."""
VSCTL = ("ovs-vsctl", "--timeout=10")
"""``ovs-vsctl`` that gives up after 10 s instead of waiting for ovsdb forever."""

T = TypeVar("T")
Cmd = Sequence[str] | str
"""A command: an argument vector, or a string run through ``sh -c``."""


class CommandError(subprocess.CalledProcessError):
    """A command failed; ``str()`` includes its stderr."""

    def __str__(self) -> str:
        return f"{shlex.join(self.cmd)} exited {self.returncode}: {(self.stderr or '').strip()}"


def sh(cmd: Sequence[str], *, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (no shell), capturing text output.

    Raises
    ------
    CommandError
        If ``check`` and the exit status is not zero.
    """
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, list(cmd), proc.stdout, proc.stderr)
    return proc


def unique_prefix() -> str:
    """Return a fresh name prefix like ``v3f9a0``: ``v`` + 5 random hex chars.

    Six characters leave nine for the rest of a 15-character interface name.
    """
    return "v" + secrets.token_hex(3)[:5]


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.1, message: str = "") -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Raises
    ------
    AssertionError
        With ``message`` (and the last value) if ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s: {message or predicate!r} (last value: {value!r})")
        time.sleep(interval)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_processes(processes: list[subprocess.Popen[str]], grace: float = 3) -> None:
    """Terminate the still-running ``processes``, last started first; kill any that outlive ``grace`` s.

    Empties the list.
    """
    for proc in reversed(processes):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    processes.clear()
