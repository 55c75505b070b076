"""A coordination service for HA tests: ``redis-server`` on a free loopback port, and a blockable proxy.

:class:`RedisServer` runs Debian's ``redis-server`` (installed by
``scripts/setup.sh``) on 127.0.0.1 with its own temporary directory, no
persistence, and ends it by pid. :class:`Proxy` forwards a loopback port
to another; :meth:`Proxy.block` makes it a black hole (connections stay
open, nothing passes), as a partition between one controller instance and
the service looks, while that instance's OpenFlow connections stay up.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

from controller.tools.lab.shell import free_port, wait_until

REDIS_SERVER = "redis-server"


class RedisServer:
    """``redis-server`` on ``127.0.0.1:port`` (default: a free one); a context manager.

    :meth:`stop` ends it (SIGTERM, then SIGKILL) and :meth:`start` brings it
    back on the same port, empty. :attr:`url` is its tooz URL with the given
    ``options`` (e.g. ``lock_timeout=2``).
    """

    def __init__(self, port: int | None = None, options: str = "") -> None:
        self.port = port or free_port()
        self.options = options
        self.dir = Path(tempfile.mkdtemp(prefix="vmn-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}" + (f"?{self.options}" if self.options else "")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, timeout: float = 10) -> Self:
        """Start the server and wait until it answers PING.

        Raises
        ------
        FileNotFoundError
            If ``redis-server`` is not installed (run scripts/setup.sh).
        AssertionError
            If it does not answer within ``timeout`` seconds.
        """
        if shutil.which(REDIS_SERVER) is None:
            raise FileNotFoundError("redis-server missing: run scripts/setup.sh (apt-get install redis-server)")
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(self.dir / "redis.log")]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        wait_until(self.answers, timeout, message=f"redis-server answering on port {self.port}")
        return self

    def answers(self) -> bool:
        """True if the server answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """End the server by its pid (SIGTERM, SIGKILL after 5 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Proxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target`` on a thread; :meth:`block` stops all traffic.

    Blocked, it keeps every connection open and accepts new ones, but
    passes no byte either way (a partition, not a refusal).
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.blocked = threading.Event()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def block(self) -> None:
        self.blocked.set()

    def unblock(self) -> None:
        self.blocked.clear()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._stop.is_set():
                if self.blocked.is_set():
                    self._stop.wait(0.05)
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.05)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
