"""Prometheus counters fed from cumulative switch statistics.

Switches report cumulative counts (packets per flow, per group bucket); an
entry re-added (switch restart, rule or group changed) starts again from
zero. :class:`StatCounter` turns successive reports into increments of one
labelled counter, summed over every switch and every entry that maps to the
same labels: ACL rule hits (``vmn_acl_rule_hits_total``) from ACL flows,
load-balanced connections per backend (``vmn_lb_backend_connections_total``)
from select-group buckets (each new connection meets the group once).
"""

from __future__ import annotations

from typing import Generic, Hashable, Mapping, TypeVar

from prometheus_client import Counter

Labels = tuple[str, ...]
K = TypeVar("K", bound=Hashable)


class StatCounter(Generic[K]):
    """Last count seen per (switch, entry), turned into increments of ``counter``."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self._seen: dict[int, dict[K, int]] = {}

    def update(self, dpid: int, counts: Mapping[K, int], labels: Mapping[K, Labels]) -> int:
        """Record one switch's report ``entry -> count``; returns the amount newly counted.

        Only entries in ``labels`` count (each with its label values, in the
        counter's label order); a count below the last one means the entry
        was re-added and counts from zero.
        """
        last = self._seen.get(dpid, {})
        now: dict[K, int] = {}
        added = 0
        for entry, count in counts.items():
            values = labels.get(entry)
            if values is None:
                continue
            before = last.get(entry, 0)
            delta = count - before if count >= before else count
            now[entry] = count
            if delta:
                self.counter.labels(*values).inc(delta)
                added += delta
        self._seen[dpid] = now
        return added
