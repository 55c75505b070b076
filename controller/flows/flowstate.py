"""The desired flow state, kept by segment, and the per-switch diffs it yields.

Rules are reference-counted per switch, so two segments that want the same
rule share one flow entry: it is added when the first wants it and deleted
when the last stops wanting it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from controller.flows.rules import Rule

SegKey = tuple[Hashable, ...]


@dataclass
class Diff:
    """Rules to add to and delete from one switch."""

    adds: set[Rule] = field(default_factory=set)
    deletes: set[Rule] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.adds or self.deletes)


class FlowState:
    """Segment -> {dpid: rules}, with per-switch reference counts.

    A switch's counts are kept as the set of rules wanted there plus, for
    the few rules more than one segment wants there, how many segments
    beyond the first want each: a compile adds a rule to a switch with set
    operations on the rules' stored hashes (no call of :meth:`Rule.__hash__`).

    Memory, per wanted rule of a switch: one entry in that switch's set
    and one in each segment's frozenset (the rule objects themselves
    may be shared among switches). Time: :meth:`replace` touches only the
    rules that differ; a segment that is new (or dropped) costs no set
    difference.
    """

    def __init__(self) -> None:
        self._segments: dict[SegKey, Mapping[int, frozenset[Rule]]] = {}
        self._present: dict[int, set[Rule]] = {}
        """dpid -> every rule wanted there."""
        self._extra: dict[int, dict[Rule, int]] = {}
        """dpid -> rule -> how many segments want it there besides the first (rules wanted once: absent)."""
        self._per_app: dict[int, dict[int, int]] = {}

    def app_counts(self, dpid: int) -> Mapping[int, int]:
        """Number of distinct rules wanted on ``dpid`` per owner app id."""
        return self._per_app.get(dpid, _NO_COUNTS)

    def rules(self, dpid: int) -> frozenset[Rule]:
        """Every rule wanted on ``dpid``."""
        return frozenset(self._present.get(dpid, ()))

    def replace(self, key: SegKey, new: Mapping[int, frozenset[Rule]]) -> dict[int, Diff]:
        """Make segment ``key`` hold ``new`` (empty: drop it); return what changed per switch."""
        return {d: x for d, x in self.replace_into(key, new, {}).items() if x}

    def replace_into(self, key: SegKey, new: Mapping[int, frozenset[Rule]], into: dict[int, Diff]) -> dict[int, Diff]:
        """:meth:`replace`, merging what changed into ``into`` as :func:`merge_diffs` would; returns ``into``.

        A switch's diff there may end up empty (a rule deleted, then added back).
        """
        old = self._segments.get(key, _NO_SEGMENT)
        if old == new:
            return into
        if not old:
            return self._add_into(key, new, into)
        for dpid in old.keys() | new.keys():
            before, after = old.get(dpid, _NO_RULES), new.get(dpid, _NO_RULES)
            if before is after or before == after:
                continue
            diff = into.get(dpid)
            if diff is None:
                diff = into[dpid] = Diff()
            if after:
                self._want(dpid, after - before if before else after, diff)
            if before:
                self._unwant(dpid, before - after if after else before, diff)
        if any(new.values()):
            self._segments[key] = {d: r for d, r in new.items() if r}
        else:
            self._segments.pop(key, None)
        return into

    def _want(self, dpid: int, rules: frozenset[Rule], diff: Diff) -> None:
        """One more segment wants each of ``rules`` on ``dpid``: count them; those new to it go to ``diff``
        (taken back from its deletes where they were deleted before)."""
        present = self._present.get(dpid)
        if present is None:
            present = self._present[dpid] = set()
        fresh = rules - present if present else rules
        if len(fresh) != len(rules):
            extra = self._extra.setdefault(dpid, {})
            for rule in rules - fresh:
                extra[rule] = extra.get(rule, 0) + 1
        if not fresh:
            return
        present |= fresh
        per_app = self._per_app.get(dpid)
        if per_app is None:
            per_app = self._per_app[dpid] = {}
        for rule in fresh:
            per_app[rule.app] = per_app.get(rule.app, 0) + 1
        deletes = diff.deletes
        if deletes and not deletes.isdisjoint(fresh):
            back = deletes & fresh
            deletes -= back
            fresh = fresh - back
        diff.adds |= fresh  # a set union grows the table 2x where adding one by one grows it 4x (memory)

    def _unwant(self, dpid: int, rules: frozenset[Rule], diff: Diff) -> None:
        """One segment fewer wants each of ``rules`` on ``dpid``: those no segment wants any more go to
        ``diff`` (taken back from its adds where they were added before)."""
        extra = self._extra.get(dpid)
        if extra:
            shared = [r for r in rules if r in extra]
            for rule in shared:
                n = extra[rule] - 1
                if n:
                    extra[rule] = n
                else:
                    del extra[rule]
            if shared:
                rules = rules.difference(shared)
        if not rules:
            return
        self._present[dpid] -= rules
        per_app = self._per_app[dpid]
        for rule in rules:
            per_app[rule.app] -= 1
        adds = diff.adds
        if adds and not adds.isdisjoint(rules):
            undone = adds & rules
            adds -= undone
            rules = rules - undone
        diff.deletes |= rules

    def _add_into(self, key: SegKey, new: Mapping[int, frozenset[Rule]], into: dict[int, Diff]) -> dict[int, Diff]:
        """:meth:`replace_into` of a segment the state does not hold yet (every segment of a compile from
        nothing): only :meth:`_want`, with a quicker path for the one-rule sets most such segments hold."""
        all_present, all_per_app = self._present, self._per_app
        empty = False
        for dpid, after in new.items():
            if not after:
                empty = True
                continue
            diff = into.get(dpid)
            if diff is None:
                diff = into[dpid] = Diff()
            if len(after) != 1:
                self._want(dpid, after, diff)
                continue
            # Most segments of a large fabric: a host's rule on a switch.
            present = all_present.get(dpid)
            if present is None:
                present = all_present[dpid] = set()
            n = len(present)
            present |= after
            (rule,) = after
            if len(present) == n:  # another segment wants it here already
                extra = self._extra.setdefault(dpid, {})
                extra[rule] = extra.get(rule, 0) + 1
                continue
            per_app = all_per_app.get(dpid)
            if per_app is None:
                per_app = all_per_app[dpid] = {}
            per_app[rule.app] = per_app.get(rule.app, 0) + 1
            deletes = diff.deletes
            if deletes and not deletes.isdisjoint(after):
                deletes -= after
            else:
                diff.adds |= after
        kept = {d: r for d, r in new.items() if r} if empty else dict(new)
        if kept:
            self._segments[key] = kept
        return into

    def replace_all(self, segments: Mapping[SegKey, Mapping[int, frozenset[Rule]]]) -> dict[int, Diff]:
        """Make the whole state equal ``segments``; return the merged per-switch diffs."""
        merged: dict[int, Diff] = {}
        for key in sorted(set(self._segments) - set(segments), key=repr):
            self.replace_into(key, {}, merged)
        for key in sorted(segments, key=repr):
            self.replace_into(key, segments[key], merged)
        return {d: x for d, x in merged.items() if x}

    def replace_parts(self, parts: Iterable[Mapping[SegKey, Mapping[int, frozenset[Rule]]]]) -> dict[int, Diff]:
        """Make the whole state equal the union of ``parts``, taken one at a time; return the merged diffs.

        The same as :meth:`replace_all` of the merged parts (a later part's
        segment wins), but only the part being replaced is held besides the
        state: given a generator of each app's segments, a recompute of a
        large fabric never holds a second copy of every rule.
        """
        merged: dict[int, Diff] = {}
        seen: set[SegKey] = set()
        for part in parts:
            for key in sorted(part, key=repr):
                seen.add(key)
                self.replace_into(key, part[key], merged)
        for key in sorted(self._segments.keys() - seen, key=repr):
            self.replace_into(key, {}, merged)
        return {d: x for d, x in merged.items() if x}

    def segment(self, key: SegKey) -> Mapping[int, frozenset[Rule]]:
        return self._segments.get(key, {})

    def keys(self) -> Iterable[SegKey]:
        return list(self._segments)


_NO_RULES: frozenset[Rule] = frozenset()
_NO_SEGMENT: Mapping[int, frozenset[Rule]] = MappingProxyType({})
_NO_COUNTS: Mapping[int, int] = MappingProxyType({})


def merge_diffs(into: dict[int, Diff], diffs: Mapping[int, Diff]) -> None:
    """Merge diffs; a rule deleted then re-added (or the reverse) cancels out.

    ``diffs`` are left as they were (a switch new to ``into`` gets copies of its sets).
    """
    for dpid, diff in diffs.items():
        acc = into.get(dpid)
        if acc is None:
            into[dpid] = Diff(set(diff.adds), set(diff.deletes))
            continue
        if diff.deletes:
            undone = diff.deletes & acc.adds
            acc.adds -= undone
            acc.deletes |= diff.deletes - undone if undone else diff.deletes
        if diff.adds:
            undone = diff.adds & acc.deletes
            acc.deletes -= undone
            acc.adds |= diff.adds - undone if undone else diff.adds
