"""The composition root: a :class:`~controller.core.Core` with the apps a model enables.

The core and the shim name no app; this module is where the app list
(:mod:`apps`) meets them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import apps
from apps import AppError
from apps.base import AppContext
from controller.config.model import Model
from controller.core import Core
from controller.flows.pipeline import Pipeline
from controller.loglines import Lines
from controller.metrics import Metrics

__all__ = ["AppError", "build_core", "check_apps"]


def check_apps(model: Model) -> None:
    """Raise :class:`apps.AppError` if ``model.controller.apps`` names an unknown app or leaves out a required one."""
    apps.check_names(model.controller.apps)


def build_core(
    model: Model,
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.monotonic,
    probe_secret: bytes = b"",
    verify: bool = False,
    lines: Lines | None = None,
) -> Core:
    """A core running the apps ``model.controller.apps`` names (default: every built-in one).

    ``lines``: where apps log lines that may be written together (default: each at once).
    Raises :class:`apps.AppError` for an unknown app name.
    """
    metrics = metrics or Metrics()
    lines = Lines() if lines is None else lines

    def context(pipeline: Pipeline) -> AppContext:
        return AppContext(pipeline, metrics, model, clock(), lines)

    enabled = apps.build(model.controller.apps, context)
    pipeline = Pipeline.of({a.name: a.app_id for a in enabled}, [t for a in enabled for t in getattr(a, "tables", ())])
    return Core(model, enabled, pipeline, metrics, clock, probe_secret, verify)
