"""The controller under test as a child process: ``osken-manager`` with a network file.

:data:`REPO_ROOT` is the checkout this package lives in; the controller
runs from there with the checkout's ``.venv`` (:data:`OSKEN_MANAGER`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from controller.tools.lab.shell import VSCTL, free_port, sh, wait_until

REPO_ROOT = Path(__file__).resolve().parents[3]
"""The root of the checkout (the directory holding ``controller/``)."""
OSKEN_MANAGER = REPO_ROOT / ".venv" / "bin" / "osken-manager"
"""The controller's launcher, installed by ``scripts/setup.sh``."""


class ControllerProcess:
    """``osken-manager <app> --ofp-tcp-listen-port PORT`` run from the repo root.

    ``config`` becomes ``VMN_CONFIG`` (unset if None); ``port`` defaults to a
    free one; ``args`` are appended to the command line; ``metrics_port`` is
    only recorded for the test (pass the matching option in ``args``).
    ``listen_host`` (default: os-ken's 0.0.0.0) adds ``--ofp-listen-host``;
    :attr:`target` is the OVS controller target bridges use to reach it
    (``tcp:<listen_host or 127.0.0.1>:<port>``). ``env`` adds or overrides
    environment variables of the process (e.g. ``VMN_METRICS_PORT``).
    stdout and stderr go to :attr:`log_path`. Use as a context manager, or
    call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        config: str | Path | None = None,
        *,
        port: int | None = None,
        args: Sequence[str] = (),
        metrics_port: int | None = None,
        app: str = "controller.app",
        listen_host: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.env = dict(env or {})
        self.port = port or free_port()
        self.metrics_port = metrics_port
        host_args = ["--ofp-listen-host", listen_host] if listen_host else []
        self.argv = [str(OSKEN_MANAGER), app, "--ofp-tcp-listen-port", str(self.port), *host_args, *args]
        self.target = f"tcp:{listen_host or '127.0.0.1'}:{self.port}"
        fd, name = tempfile.mkstemp(prefix="vmn-controller-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        return self if self.proc else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, wait: bool = True) -> Self:
        """Start the process (once); with ``wait``, return once it listens.

        Raises
        ------
        FileNotFoundError
            If ``.venv/bin/osken-manager`` is missing (run scripts/setup.sh).
        AssertionError
            From :meth:`wait_listening` if ``wait``.
        """
        if self.proc is not None:
            raise RuntimeError("controller already started")
        if not OSKEN_MANAGER.exists():
            raise FileNotFoundError(f"{OSKEN_MANAGER} missing: run scripts/setup.sh")
        env = {k: v for k, v in os.environ.items() if k != "VMN_CONFIG"}
        env["PYTHONUNBUFFERED"] = "1"
        if self.config is not None:
            env["VMN_CONFIG"] = str(self.config)
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_listening()
        return self

    def listening(self) -> bool:
        """True if something listens on the OpenFlow port (checked without connecting)."""
        out = sh(["ss", "-Hltn", f"sport = :{self.port}"], check=False).stdout
        return bool(out.strip())

    def wait_listening(self, timeout: float = 20) -> None:
        """Wait until the process listens on its port.

        Raises
        ------
        AssertionError
            On timeout or if the process exits first; carries the log tail.
        """

        def check() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise _Exited(self.proc.returncode)
            return self.listening()

        self._wait(check, timeout, f"controller listening on port {self.port}")

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            wait_until(check, timeout, interval=0.1, message=what)
        except _Exited as err:
            raise AssertionError(
                f"controller exited with {err.args[0]} while waiting for {what}; log tail:\n{self.log_text()[-3000:]}"
            ) from None
        except AssertionError as err:
            raise AssertionError(f"{err}\ncontroller log tail:\n{self.log_text()[-3000:]}") from None

    @property
    def pid(self) -> int:
        """The process id. Raises RuntimeError if not started."""
        if self.proc is None:
            raise RuntimeError("controller not started")
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; return the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process if it runs (SIGSTOP, SIGCONT, SIGHUP...)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def kill9(self) -> None:
        """Kill the process with SIGKILL (a crash: nothing gets cleaned up)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        """Wait until ``text`` appears in the log (AssertionError on timeout)."""
        wait_until(lambda: text in self.log_text(), timeout, message=f"{text!r} in controller log {self.log_path}")

    def is_connected(self, bridge: str, vsctl: Sequence[str] = VSCTL) -> bool:
        """True if ``bridge`` has this controller's :attr:`target` and OVS says connected.

        ``vsctl`` is the ``ovs-vsctl`` command prefix: the system OVS by
        default, ``Hypervisor.vsctl_cmd`` for an emulated hypervisor.
        """
        uuids = sh([*vsctl, "get", "bridge", bridge, "controller"]).stdout.strip("[] \n")
        if not uuids:
            return False
        out = sh([*vsctl, "--bare", "--columns=target,is_connected", "list", "controller", *uuids.split(", ")]).stdout
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        return any(t.strip('"') == self.target and c == "true" for t, c in zip(lines[::2], lines[1::2], strict=False))

    def wait_connected(self, bridge: str, timeout: float = 15, vsctl: Sequence[str] = VSCTL) -> None:
        """Wait until ``bridge`` (on the OVS ``vsctl`` drives) is connected to this controller.

        OVS writes ``is_connected`` to its database on its statistics
        timer (every 5 s), so this may return up to 5 s after the switch
        really connected.

        Raises
        ------
        AssertionError
            On timeout, or at once if the process died; the message carries
            the tail of the log.
        """

        def check() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise _Exited(self.proc.returncode)
            return self.is_connected(bridge, vsctl)

        self._wait(check, timeout, f"{bridge} connected to {self.target}")


class _Exited(Exception):
    """The controller process ended (carries the exit status)."""
