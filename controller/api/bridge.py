"""The API's only way into the controller: snapshots and config pushes on the app thread.

The os-ken shim runs every event on one app thread and the core is not
thread-safe. :class:`ControllerBridge` never touches the core from the
server's threads: a read is a :func:`~controller.api.snapshot.take` run on
the app thread (the shim's ``run_on_app_thread`` posts it as an event and
waits for the result), and a config push writes the file and reloads it in
one such call, through the shim's own ``reload()`` (the path SIGHUP and the
file watch take), so the watch never sees a half-written file and a reload
is never half-applied. Validation happens before, on the server thread: an
invalid file changes nothing.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from controller.api.snapshot import Snapshot, take
from controller.config import ConfigError, loads_model
from controller.config.model import Model
from controller.core import Core
from controller.effects import Effects

T = TypeVar("T")
CALL_TIMEOUT = 10.0
"""Seconds a request waits for the app thread before giving up."""


class Shim(Protocol):
    """What the bridge needs of the os-ken app (:class:`controller.app.VmnController`)."""

    @property
    def core(self) -> Core: ...

    @property
    def config_path(self) -> str | None: ...

    def run_on_app_thread(self, fn: Callable[[], T], timeout: float) -> T: ...

    def reload(self) -> Model | None: ...

    def switch_roles(self) -> dict[int, str]: ...
    def apply(self, effects: Effects) -> None: ...


class Backend(Protocol):
    """What the API's routes need of the controller (:class:`ControllerBridge`, or a test's stand-in)."""

    @property
    def model(self) -> Model: ...

    @property
    def config_path(self) -> str | None: ...

    def snapshot(self, flows: bool = True) -> Snapshot: ...

    def push(self, text: bytes) -> Pushed: ...

    def migrate(self, vm: str, to: str) -> None: ...


class PushRefused(Exception):
    """A config push was not applied; ``status`` is the HTTP status, ``errors`` the reasons."""

    def __init__(self, status: int, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.status = status
        self.errors = errors


@dataclass(frozen=True)
class Pushed:
    """A config push that was written and reloaded."""

    path: str
    model: Model
    seconds: float


def validate(text: bytes, source: str) -> Model:
    """The model of network-file bytes ``text``.

    Raises :class:`PushRefused` (422) with every error by path, or for
    bytes that are not UTF-8, or apps that do not exist.
    """
    from controller.compose import AppError, check_apps

    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PushRefused(422, [f"{source}: not UTF-8 text: {err.reason} at byte {err.start}"]) from None
    try:
        model = loads_model(decoded, source)
        check_apps(model)
    except ConfigError as err:
        raise PushRefused(422, list(err.errors)) from None
    except AppError as err:
        raise PushRefused(422, [str(err)]) from None
    return model


def write_atomically(path: str, data: bytes) -> None:
    """Replace the file at ``path`` by ``data`` in one rename (same directory, same mode)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".vmn-push-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        except OSError:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class ControllerBridge:
    """Reads and pushes for the API server, each run on the shim's app thread."""

    def __init__(self, shim: Shim, timeout: float = CALL_TIMEOUT) -> None:
        self.shim = shim
        self.timeout = timeout

    @property
    def model(self) -> Model:
        """The running model (a frozen value; reading the reference is safe from any thread)."""
        return self.shim.core.model

    @property
    def config_path(self) -> str | None:
        return self.shim.config_path

    def snapshot(self, flows: bool = True) -> Snapshot:
        """The live state (without flows and groups unless ``flows``).

        Raises TimeoutError if the app thread does not answer in time.
        """
        shim = self.shim
        return shim.run_on_app_thread(
            lambda: take(shim.core, shim.config_path, flows, shim.switch_roles()), self.timeout
        )

    def migrate(self, vm: str, to: str) -> None:
        """Pre-install VM ``vm`` at ``to`` (``SWITCH:PORT``) on the app thread (:meth:`Core.migrate`).

        Raises :class:`PushRefused` (422) for a malformed ``to``, an unknown VM or switch.
        """
        switch, _, text = to.rpartition(":")
        if not switch or not text:
            raise PushRefused(422, [f"to: expected SWITCH:PORT, got {to!r}"])
        port: int | str = int(text) if text.isdigit() else text
        shim = self.shim

        def call() -> None:
            shim.apply(shim.core.migrate(vm, switch, port))

        try:
            shim.run_on_app_thread(call, self.timeout)
        except ValueError as err:
            raise PushRefused(422, [str(err)]) from None

    def push(self, text: bytes) -> Pushed:
        """Validate ``text``, then write it to the network file and reload, on the app thread.

        Raises :class:`PushRefused`: 409 without a network file (zero-config),
        422 with every error of an invalid file (nothing written), 500 if the
        reload itself refused the file (the previous file is put back).
        """
        path = self.shim.config_path
        if not path:
            raise PushRefused(409, ["the controller runs without a network file (VMN_CONFIG unset): nothing to write"])
        validate(text, os.path.basename(path))
        return self.shim.run_on_app_thread(lambda: self._write_and_reload(path, text), self.timeout)

    def _write_and_reload(self, path: str, text: bytes) -> Pushed:
        started = time.monotonic()
        try:
            with open(path, "rb") as old_file:
                old: bytes | None = old_file.read()
        except OSError:
            old = None
        try:
            write_atomically(path, text)
        except OSError as err:
            raise PushRefused(500, [f"{path}: cannot write: {err.strerror or err}"]) from None
        applied = self.shim.reload()
        if applied is None:
            if old is not None:
                write_atomically(path, old)
            raise PushRefused(500, [f"{path}: the reload refused the file; the previous file was put back"])
        return Pushed(path, applied, time.monotonic() - started)
