"""ACL rule hit counters from flow statistics.

Switches report cumulative packet counts per flow; a flow re-added (switch
restart, rule changed back) starts again from zero. :class:`AclCounters`
turns successive reports into increments of ``vmn_acl_rule_hits_total``,
summed over every switch and every list that holds the rule.
"""

from __future__ import annotations

from typing import Mapping

from controller.metrics import Metrics

Origin = tuple[str, str]


class AclCounters:
    """Last packet count seen per (switch, cookie), turned into counter increments."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._seen: dict[int, dict[int, int]] = {}

    def update(self, dpid: int, packets: Mapping[int, int], origins: Mapping[int, Origin]) -> int:
        """Record one switch's report ``cookie -> packets``; returns the packets newly counted.

        Only cookies in ``origins`` count; a count below the last one means
        the flow was re-added and counts from zero.
        """
        last = self._seen.get(dpid, {})
        now: dict[int, int] = {}
        added = 0
        for cookie, count in sorted(packets.items()):
            origin = origins.get(cookie)
            if origin is None:
                continue
            before = last.get(cookie, 0)
            delta = count - before if count >= before else count
            now[cookie] = count
            if delta:
                self.metrics.acl_rule_hits.labels(acl=origin[0], rule=origin[1]).inc(delta)
                added += delta
        self._seen[dpid] = now
        return added
