"""The desired flow state, kept by segment, and the per-switch diffs it yields.

Rules are reference-counted per switch, so two segments that want the same
rule share one flow entry: it is added when the first wants it and deleted
when the last stops wanting it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

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
    """Segment -> {dpid: rules}, with per-switch reference counts."""

    def __init__(self) -> None:
        self._segments: dict[SegKey, Mapping[int, frozenset[Rule]]] = {}
        self._counts: dict[int, Counter[Rule]] = {}
        self._per_app: dict[int, Counter[int]] = {}

    def app_counts(self, dpid: int) -> Mapping[int, int]:
        """Number of distinct rules wanted on ``dpid`` per owner app id."""
        return self._per_app.get(dpid, {})

    def rules(self, dpid: int) -> frozenset[Rule]:
        """Every rule wanted on ``dpid``."""
        return frozenset(self._counts.get(dpid, {}))

    def replace(self, key: SegKey, new: Mapping[int, frozenset[Rule]]) -> dict[int, Diff]:
        """Make segment ``key`` hold ``new`` (empty: drop it); return what changed per switch."""
        old = self._segments.get(key, {})
        if old == new:
            return {}
        diffs: dict[int, Diff] = {}
        for dpid in set(old) | set(new):
            before, after = old.get(dpid, frozenset()), new.get(dpid, frozenset())
            if before == after:
                continue
            counts = self._counts.get(dpid)
            if counts is None:
                counts = self._counts[dpid] = Counter()
            per_app = self._per_app.get(dpid)
            if per_app is None:
                per_app = self._per_app[dpid] = Counter()
            diff = diffs.setdefault(dpid, Diff())
            for rule in after - before:
                count = counts[rule] = counts.get(rule, 0) + 1
                if count == 1:
                    per_app[rule.app] += 1
                    diff.adds.add(rule)
            for rule in before - after:
                count = counts[rule] = counts[rule] - 1
                if count == 0:
                    del counts[rule]
                    per_app[rule.app] -= 1
                    if rule in diff.adds:
                        diff.adds.discard(rule)
                    else:
                        diff.deletes.add(rule)
        if any(new.values()):
            self._segments[key] = {d: r for d, r in new.items() if r}
        else:
            self._segments.pop(key, None)
        return {d: x for d, x in diffs.items() if x}

    def replace_all(self, segments: Mapping[SegKey, Mapping[int, frozenset[Rule]]]) -> dict[int, Diff]:
        """Make the whole state equal ``segments``; return the merged per-switch diffs."""
        merged: dict[int, Diff] = {}
        for key in sorted(set(self._segments) - set(segments), key=repr):
            merge_diffs(merged, self.replace(key, {}))
        for key in sorted(segments, key=repr):
            merge_diffs(merged, self.replace(key, segments[key]))
        return {d: x for d, x in merged.items() if x}

    def segment(self, key: SegKey) -> Mapping[int, frozenset[Rule]]:
        return self._segments.get(key, {})

    def keys(self) -> Iterable[SegKey]:
        return list(self._segments)


def merge_diffs(into: dict[int, Diff], diffs: Mapping[int, Diff]) -> None:
    """Merge diffs into ``into`` (which takes over a switch's diff it has none for); a rule deleted then
    re-added (or the reverse) cancels out."""
    for dpid, diff in diffs.items():
        acc = into.get(dpid)
        if acc is None:
            into[dpid] = diff
            continue
        for rule in diff.deletes:
            if rule in acc.adds:
                acc.adds.discard(rule)
            else:
                acc.deletes.add(rule)
        for rule in diff.adds:
            if rule in acc.deletes:
                acc.deletes.discard(rule)
            else:
                acc.adds.add(rule)
