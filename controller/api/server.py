"""Serve the API with uvicorn on a thread of its own.

:func:`start` binds the socket at once (so a port in use is reported
where the controller starts, as the metrics exporter's is) and then runs
uvicorn's asyncio loop on a daemon thread; importing FastAPI happens on
that thread too, so it does not delay the controller's start. os-ken 4's
hub is native threads: the server's loop and worker threads never run
controller code, they reach it through :class:`~controller.api.bridge.ControllerBridge`.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from controller.api.bridge import Backend

LOG = logging.getLogger("vmn.api")


class ApiServer:
    """A running server: :attr:`port` it listens on, :meth:`stop` to end it."""

    def __init__(self, sock: socket.socket, backend: Backend) -> None:
        self.sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self._backend = backend
        self._server: Any = None
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vmn-api", daemon=True)

    def _run(self) -> None:
        import uvicorn

        from controller.api.routes import create_app

        config = uvicorn.Config(
            create_app(self._backend),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._started.set()
        try:
            self._server.run(sockets=[self.sock])
        except BaseException:  # a thread's exception would only be printed; say what stopped
            LOG.exception("api server on %s:%d stopped", self.host, self.port)

    def wait_started(self, timeout: float = 30) -> bool:
        """Wait until uvicorn serves (True) or ``timeout`` seconds pass (False)."""
        if not self._started.wait(timeout):
            return False
        deadline = threading.Event()
        for _ in range(int(timeout * 20)):
            if self._server is not None and self._server.started:
                return True
            deadline.wait(0.05)
        return False

    def stop(self, timeout: float = 5) -> None:
        """Ask uvicorn to exit and wait for its thread."""
        if self._server is not None:
            self._server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


def start(backend: Backend, host: str, port: int) -> ApiServer:
    """Bind ``host:port`` and serve the API for ``backend`` on a new thread.

    Raises OSError if the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    server = ApiServer(sock, backend)
    server.thread.start()
    return server
