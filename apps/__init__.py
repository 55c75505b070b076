"""Pluggable VMN apps: the one list of built-in apps, and third-party apps by entry point.

Each app is a class with ``name``, ``app_id`` (its cookie byte) and a
constructor taking an :class:`apps.base.AppContext`; it may declare
``tables`` (extra :class:`~controller.flows.pipeline.TableSpec` of its own).
Third-party apps register under the entry-point group ``vmn.apps``
(``name = "package.module:Class"``) and are enabled by naming them in the
network file's ``controller.apps`` list (absent: every built-in app).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Protocol, cast

from apps.base import App, AppContext
from controller.flows.pipeline import Pipeline, TableSpec

BUILTIN: Mapping[str, str] = {
    "ingress": "apps.ingress:Ingress",
    "acl": "apps.acl.app:AclFirewall",
    "lb": "apps.lb.app:LoadBalancerApp",
    "l2": "apps.l2.app:L2Switch",
    "mirror": "apps.mirror.app:MirrorApp",
    "router": "apps.router.app:RouterApp",
    "dhcp": "apps.dhcp.app:DhcpServer",
    "flood": "apps.flood:Flood",
}
"""Every built-in app, by name: the list to edit when adding one."""
REQUIRED = ("ingress", "l2", "flood")
"""Apps that make a switch at all: they cannot be disabled."""
ENTRY_POINT_GROUP = "vmn.apps"


class AppClass(Protocol):
    """An app class: its ``name`` and cookie ``app_id``, built with an :class:`~apps.base.AppContext`."""

    name: str
    app_id: int

    def __call__(self, ctx: AppContext) -> App: ...


class AppError(ValueError):
    """An app list names an unknown app, leaves out a required one, or apps clash."""


def available() -> dict[str, str]:
    """Every app that can be enabled: name -> ``module:Class`` (built-in first, then entry points)."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def check_names(names: Sequence[str] | None) -> list[str]:
    """The app names to enable (``None``: every built-in app), in a stable order.

    Raises :class:`AppError` naming an unknown or missing app.
    """
    known = available()
    if names is None:
        return list(BUILTIN)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise AppError(f"controller.apps: unknown app {unknown[0]!r} (available: {', '.join(sorted(known))})")
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise AppError(f"controller.apps: app {missing[0]!r} is required")
    return [n for n in known if n in names]


def _load(target: str) -> AppClass:
    """The class ``module:Class`` names; raises :class:`AppError` if it is not an app class."""
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr, None)
    if (
        not isinstance(cls, type)
        or not isinstance(getattr(cls, "name", None), str)
        or not isinstance(getattr(cls, "app_id", None), int)
    ):
        raise AppError(f"{target} is not an app class (a class with name and app_id)")
    return cast(AppClass, cls)


def build(names: Sequence[str] | None, make_context: Callable[[Pipeline], AppContext]) -> list[App]:
    """Instantiate the enabled apps on the pipeline they make up.

    ``make_context`` gets that pipeline and returns the context every app is
    built with. Raises :class:`AppError` (unknown name, clashing ids or tables).
    """
    known = available()
    return instantiate([_load(known[name]) for name in check_names(names)], make_context)


def instantiate(classes: Sequence[AppClass], make_context: Callable[[Pipeline], AppContext]) -> list[App]:
    """Instantiate app ``classes`` on the pipeline they make up (built-in tables plus their ``tables``).

    Raises :class:`AppError` when app ids, table ids or table names clash.
    """
    ids = {cls.name: cls.app_id for cls in classes}
    extra: list[TableSpec] = [t for cls in classes for t in getattr(cls, "tables", ())]
    try:
        pipeline = Pipeline.of(ids, extra)
    except ValueError as err:
        raise AppError(str(err)) from err
    ctx = make_context(pipeline)
    apps: list[App] = [cls(ctx) for cls in classes]
    return apps
