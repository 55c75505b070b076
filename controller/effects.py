"""What the core hands the shim after every event: flow batches and frames to send.

Every :class:`~controller.core.Core` event returns one :class:`Effects`;
there is no other channel from the core to the switches.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from operator import attrgetter

from controller.flows.rules import GroupEntry, Rule

Frame = tuple[int, int, bytes]
"""(dpid, OpenFlow port, Ethernet frame) to packet-out."""

_ADD_ORDER = attrgetter("table", "priority", "cookie")
"""The order of a batch's adds: (table, priority, cookie)."""

GroupDiff = tuple[Collection[GroupEntry], Collection[int]]
"""Groups to add or modify, and group ids to delete."""


@dataclass(frozen=True)
class DumpedFlow:
    """What the core reads back from a switch's flow dump (match fields by OXM name)."""

    cookie: int
    table: int = 0
    priority: int = 0
    match: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """One switch's change: set groups, delete flows by exact cookie, add rules, delete groups.

    Flows are sent atomically (one bundle) where the switch supports it;
    groups are set before (flows may point at them) and deleted after.
    """

    dpid: int
    deletes: tuple[int, ...]
    adds: tuple[Rule, ...]
    group_sets: tuple[GroupEntry, ...] = ()
    group_deletes: tuple[int, ...] = ()

    @staticmethod
    def of(dpid: int, deletes: Collection[int], adds: Collection[Rule], groups: GroupDiff | None = None) -> Batch:
        """A batch with deterministic order: deletes by cookie, adds by (table, priority, cookie)."""
        sets, dels = groups if groups is not None else ((), ())
        return Batch(
            dpid,
            tuple(sorted(deletes)),
            tuple(sorted(adds, key=_ADD_ORDER)),
            tuple(sorted(sets, key=lambda g: g.group_id)),
            tuple(sorted(dels)),
        )

    def __bool__(self) -> bool:
        return bool(self.deletes or self.adds or self.group_sets or self.group_deletes)


@dataclass(frozen=True)
class Effects:
    """Batches to send (in order, at most one per switch per event) and frames to packet-out after."""

    batches: tuple[Batch, ...] = ()
    frames: tuple[Frame, ...] = ()

    def __add__(self, other: Effects) -> Effects:
        return Effects(self.batches + other.batches, self.frames + other.frames)

    def __bool__(self) -> bool:
        return bool(self.batches or self.frames)

    def batch(self, dpid: int) -> Batch | None:
        """The (first) batch for ``dpid``, if any."""
        return next((b for b in self.batches if b.dpid == dpid), None)
