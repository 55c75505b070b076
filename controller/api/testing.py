"""A stand-in for the os-ken app, for tests of the API without OVS or os-ken.

:class:`FakeShim` holds a :class:`~controller.tools.fakefabric.FakeFabric`
(the real core, fake switches) and plays the app thread with a lock: every
call runs under it, as the real app thread runs one event at a time.
``reload()`` reads the network file as the real shim does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from controller.config import ConfigError, load_model
from controller.config.model import Model
from controller.core import Core
from controller.effects import Effects
from controller.tools.fakefabric import FakeFabric

T = TypeVar("T")


class FakeShim:
    """The shim protocol of :mod:`controller.api.bridge` over a fake fabric."""

    def __init__(self, fabric: FakeFabric, config_path: str | None) -> None:
        self.fabric = fabric
        self.config_path = config_path
        self.lock = threading.Lock()
        self.reloads = 0

    @property
    def core(self) -> Core:
        return self.fabric.core

    def run_on_app_thread(self, fn: Callable[[], T], timeout: float) -> T:
        if not self.lock.acquire(timeout=timeout):
            raise TimeoutError("app thread busy")
        try:
            return fn()
        finally:
            self.lock.release()

    def switch_roles(self) -> dict[int, str]:
        """No coordination here: every connected switch is ``equal``."""
        return {dpid: "equal" for dpid in self.core.topology.ports}

    def apply(self, effects: Effects) -> None:
        self.fabric.apply(effects)

    def reload(self) -> Model | None:
        if not self.config_path:
            return None
        try:
            model = load_model(self.config_path)
        except ConfigError:
            return None
        self.fabric.reload(model)
        self.reloads += 1
        return model
