"""Shared pytest set-up: the repo root on sys.path, and real-OVS fixtures.

Fixtures
--------
require_ovs
    Skips the test unless running as root with a working ``ovs-vsctl``;
    under CI (``CI=true``) it fails instead, since set-up must have started OVS.
lab
    A :class:`controller.tools.lab.Lab` with a unique prefix, torn down after the test.
multihost
    A :class:`controller.tools.lab.MultiHostLab` (emulated hypervisors), torn down after the test.
controller_factory
    ``controller_factory(config=None, *, wait=True, **kwargs)`` starts a
    :class:`controller.tools.lab.ControllerProcess`; all are stopped at teardown.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from controller.tools.lab import ControllerProcess, Lab, MultiHostLab


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers (also declared in setup.cfg) so either works alone."""
    config.addinivalue_line("markers", "ovs: needs a running Open vSwitch and root")
    config.addinivalue_line("markers", "mininet: needs Mininet and a running Open vSwitch")


@functools.cache
def _ovs_unavailable_reason() -> str | None:
    """Why real-OVS tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root (creates OVS bridges and network namespaces)"
    try:
        proc = subprocess.run(
            ["ovs-vsctl", "--timeout=5", "show"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"ovs-vsctl unusable: {err} (run scripts/setup.sh)"
    if proc.returncode != 0:
        return f"Open vSwitch not running: {proc.stderr.strip()} (run scripts/setup.sh)"
    return None


@pytest.fixture
def require_ovs() -> None:
    """Skip unless root with a running OVS; fail instead when ``CI=true``."""
    reason = _ovs_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI: real-OVS test cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture
def lab(require_ovs: None) -> Iterator[Lab]:
    """A fresh :class:`Lab`; everything it made is removed after the test."""
    with Lab() as the_lab:
        yield the_lab


@pytest.fixture
def multihost(require_ovs: None) -> Iterator[MultiHostLab]:
    """A fresh :class:`MultiHostLab`; everything it made is removed after the test."""
    with MultiHostLab() as the_lab:
        yield the_lab


@pytest.fixture
def controller_factory() -> Iterator[Callable[..., ControllerProcess]]:
    """Start controllers with ``factory(config=None, *, wait=True, **kwargs)``.

    Keyword arguments are those of :class:`ControllerProcess` (``port``,
    ``args``, ``metrics_port``, ``app``); with ``wait`` the factory returns
    once the controller listens. All are stopped at teardown and their log
    tails printed (pytest shows them for failed tests).
    """
    started: list[ControllerProcess] = []

    def factory(config: str | Path | None = None, *, wait: bool = True, **kwargs: Any) -> ControllerProcess:
        ctl = ControllerProcess(config, **kwargs)
        started.append(ctl)
        return ctl.start(wait=wait)

    yield factory
    for ctl in reversed(started):
        ctl.stop()
        print(f"--- controller log {ctl.log_path} (port {ctl.port}) ---")
        print(ctl.log_text()[-5000:])
        ctl.log_path.unlink(missing_ok=True)
