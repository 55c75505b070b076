"""End to end: the controller enforces every file in topologies/ in Mininet.

Starts the controller on a free port with ``VMN_CONFIG`` set to the file,
then runs ``mininet_scripts/vmn_mininet.py --check`` under Debian's Python
(Mininet's home) with a unique bridge prefix, and expects every case the
file implies as ``vmn trace`` computes it (``controller.tools.expect``):
same-network pairs, routed pairs, isolated and ACL-denied ones, and the
load balancers' VIPs.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.tools.lab import ControllerProcess, sh

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "mininet_scripts" / "vmn_mininet.py"
DEFAULT = REPO_ROOT / "topologies" / "default.yaml"
TOPOLOGIES = sorted((REPO_ROOT / "topologies").glob("*.yaml"))
SYSTEM_PYTHON = "/usr/bin/python3"
MN = "/usr/bin/mn"
CHECK_TIMEOUT = 60.0
"""The script's --timeout: for switches to connect, then for expected pings."""
RUN_DEADLINE = 4 * CHECK_TIMEOUT
"""When the script itself is stopped (SIGTERM, so it still cleans up)."""

pytestmark = pytest.mark.mininet


def mininet_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (Mininet creates bridges and namespaces)"
    if not Path(MN).exists():
        return f"{MN} missing: apt-get install mininet"
    return None


def unique_prefix() -> str:
    """``t`` + 4 hex digits: bridges ``t1a2bs1``, well within 15 characters."""
    return "t" + secrets.token_hex(2)


def run_script(args: list[str], deadline: float) -> subprocess.CompletedProcess[str]:
    """Run the Mininet script; past ``deadline`` SIGTERM it (it then stops its network)."""
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
    cmd = [SYSTEM_PYTHON, str(SCRIPT), *args]
    with subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=deadline)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            out += f"\n[test: killed after {deadline:g}s]"
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out)


def leftovers(prefix: str) -> list[str]:
    """Bridges and interfaces named with ``prefix`` that still exist."""
    bridges = sh(["ovs-vsctl", "--timeout=10", "list-br"]).stdout.split()
    links = [line.split()[0].split("@")[0] for line in sh(["ip", "-br", "link"]).stdout.splitlines()]
    return sorted(name for name in bridges + links if name.startswith(prefix))


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=[t.stem for t in TOPOLOGIES])
def test_topology_reachability_matches_the_file(
    controller_factory: Callable[..., ControllerProcess],
    topology: Path,
) -> None:
    reason = mininet_unavailable_reason()
    if reason:
        pytest.skip(reason)
    controller = controller_factory(topology)
    prefix = unique_prefix()

    result = run_script(
        [
            str(topology),
            "--check",
            "--controller-port",
            str(controller.port),
            "--prefix",
            prefix,
            "--timeout",
            f"{CHECK_TIMEOUT:g}",
        ],
        RUN_DEADLINE,
    )

    print(result.stdout)
    assert result.returncode == 0, (
        f"vmn_mininet.py --check exited {result.returncode}:\n{result.stdout}\n"
        f"--- controller log tail ---\n{controller.log_text()[-5000:]}"
    )
    if topology == DEFAULT:
        # how many VIP cases reach follows vmn trace (routed clients reach it once the balancer serves them)
        assert "reachability OK: 62 cases: 18 l2, 16 routed, 14 isolated, 8 denied, 6 vip (" in result.stdout
    assert "0 mismatches" in result.stdout
    assert leftovers(prefix) == []
