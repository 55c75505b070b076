"""The app contract: what every VMN app is, and the optional capabilities the core discovers.

An app *compiles*: from a read-only :class:`~controller.fabric.view.FabricView`
it returns *segments*, named groups of rules it owns (all static rules of
one switch, the rules of one learned host, ...). The core replaces segments
whole and sends only the rules that changed, so an app that recomputes one
segment touches nothing else.

Everything else is optional. An app that also has runtime state implements
one or more of the small protocols below; the core finds them once, at
start-up (``isinstance`` on these runtime-checkable protocols), and calls
them with the clock's ``now`` (float seconds) passed in. Each returns a
:class:`Reaction`: segments to replace, frames to send, or "recompute
everything". Apps never send anything themselves.

Write an app: see ``docs/adding-an-app.md``.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from controller.config.model import Model
from controller.effects import DumpedFlow, Frame
from controller.fabric.view import FabricView
from controller.flows.pipeline import Pipeline
from controller.flows.rules import GroupEntry, Rule
from controller.loglines import Lines
from controller.metrics import Metrics

SegKey = tuple[Hashable, ...]
"""A segment's name; by convention its first item is the owning app's name."""
Segments = dict[SegKey, Mapping[int, frozenset[Rule]]]
"""Segment key -> {dpid: rules}."""


@dataclass(frozen=True)
class AppContext:
    """What an app is built with: the pipeline of the enabled apps, the metrics, the first model and time,
    and where to log lines that may be written together (:mod:`controller.loglines`)."""

    pipeline: Pipeline
    metrics: Metrics
    model: Model
    now: float
    lines: Lines = field(default_factory=Lines)


@dataclass(frozen=True)
class PacketIn:
    """A packet copied to the controller by a table this app handles (see ``pipeline.Trap``)."""

    dpid: int
    table: int
    in_port: int
    data: bytes


@dataclass(frozen=True)
class FlowRemoved:
    """A flow of this app (by cookie) left switch ``dpid``; ``idle`` if by its idle timeout."""

    dpid: int
    cookie: int
    match: Mapping[str, object]
    idle: bool


@dataclass(frozen=True)
class Reaction:
    """What an app wants after an event: segments to replace, frames to send, or a full recompute."""

    segments: Mapping[SegKey, Mapping[int, frozenset[Rule]]] = field(default_factory=dict)
    frames: tuple[Frame, ...] = ()
    recompute: bool = False

    def __add__(self, other: Reaction) -> Reaction:
        return Reaction(
            {**self.segments, **other.segments}, self.frames + other.frames, self.recompute or other.recompute
        )


NOTHING = Reaction()


@runtime_checkable
class App(Protocol):
    """A pipeline app. ``compile`` must be deterministic and read only the view and the app's state.

    An app whose ``compile`` reads only the view (no runtime state) may set
    ``static_compile = True``: the core then reuses its segments for an
    equal view and compiles them ahead of a switch's connect
    (:mod:`controller.precompile`).
    """

    name: str
    app_id: int

    def compile(self, view: FabricView) -> Segments:
        """Every segment this app wants for the snapshot ``view``."""
        ...


@runtime_checkable
class HasGroups(Protocol):
    def groups(self, view: FabricView) -> Mapping[int, frozenset[GroupEntry]]:
        """The OpenFlow groups wanted per switch (group ids in the app's space: app id << 24)."""
        ...


@runtime_checkable
class Refreshes(Protocol):
    def refresh(self, view: FabricView) -> None:
        """Before every full compile: drop or update state that the new snapshot invalidates."""
        ...


@runtime_checkable
class TrapsPackets(Protocol):
    def packet_in(self, now: float, view: FabricView, event: PacketIn) -> Reaction:
        """A packet-in from a table whose trap this app owns (declared in the pipeline)."""
        ...


@runtime_checkable
class WatchesFlows(Protocol):
    def flow_removed(self, now: float, view: FabricView, event: FlowRemoved) -> Reaction:
        """One of this app's flows (asked with ``FLAG_SEND_FLOW_REM``) was removed."""
        ...


@runtime_checkable
class Adopts(Protocol):
    def adopt(self, view: FabricView, dpid: int, dump: Sequence[DumpedFlow]) -> Reaction:
        """Rebuild state from a switch's flow dump (controller restart, and later HA takeover)."""
        ...


@runtime_checkable
class Ticks(Protocol):
    def tick(self, now: float, view: FabricView, ready: Collection[int]) -> Reaction:
        """Periodic work (every 0.1 s); ``ready`` are the switches reconciled and programmable."""
        ...


@runtime_checkable
class ReadsFlowStats(Protocol):
    def flow_stats(self, dpid: int, packets: Mapping[int, int]) -> None:
        """Cumulative packet counts of this app's flows on ``dpid`` (cookie -> packets)."""
        ...


@runtime_checkable
class ReadsGroupStats(Protocol):
    def group_stats(self, dpid: int, groups: Mapping[int, GroupEntry], buckets: Mapping[int, Sequence[int]]) -> None:
        """Cumulative per-bucket packet counts of this app's ``groups`` on ``dpid`` (group id -> counts)."""
        ...


@runtime_checkable
class Reloads(Protocol):
    def reload(self, model: Model) -> None:
        """A new validated model is in force (the core recomputes right after)."""
        ...


def per_switch(key: str, view: FabricView, rules_of: RulesOfSwitch) -> Segments:
    """One segment ``(key, dpid)`` per connected switch holding ``rules_of(view, dpid)``."""
    return {(key, dpid): {dpid: frozenset(rules_of(view, dpid))} for dpid in view.dpids}


class RulesOfSwitch(Protocol):
    def __call__(self, view: FabricView, dpid: int) -> list[Rule]: ...
