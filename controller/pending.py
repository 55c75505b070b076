"""Flow dumps waiting to be reconciled, so that switches that connect together adopt together.

A switch's reconcile deletes every flow the desired state lacks. The
desired state on one switch depends on hosts that other switches' dumps
show (a host learned on ``sb`` has forward rules on ``sa``). Reconciling
``sa`` before ``sb``'s dump is read would delete those rules only for
``sb``'s adoption to add them again a moment later: the flows lose their
age and counters, and traffic toward that host floods meanwhile. This is
what a new HA leader met (both switches' role replies and dumps arrive
within milliseconds, in any order), and a restarted controller whose
switches reconnect together.

So a dump waits while another connected switch of the network file has
neither been reconciled nor delivered its dump (:meth:`PendingReconciles.due`
is told whether one is *awaited*), and, as before, while its trunk rules
name ports where no link is known yet (a restarted controller has not
rediscovered them). The waiting dumps are reconciled together, all
adopting first, once none waits any more: a switch's desired state also
depends on links elsewhere (the path toward a host two links away). A
dump whose deadline passed is reconciled without the others. The switch
keeps forwarding on the flows it holds meanwhile. A switch with no other
switch connected and no trunk rules is reconciled at once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from controller.effects import DumpedFlow

GATHER_SECONDS = 1.0
"""How long a dump waits at most for the dumps of the other connected switches (they take milliseconds)."""


@dataclass(frozen=True)
class Pending:
    """One switch's dump waiting: the flows, trunk ports of the dump with no known link, the deadline (clock s)."""

    present: Collection[DumpedFlow]
    missing_links: frozenset[int]
    deadline: float


class PendingReconciles:
    """The switches whose dumps wait (dpid -> :class:`Pending`)."""

    def __init__(self) -> None:
        self._waiting: dict[int, Pending] = {}

    def __contains__(self, dpid: object) -> bool:
        return dpid in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)

    def put(self, dpid: int, present: Collection[DumpedFlow], missing_links: frozenset[int], deadline: float) -> None:
        """``dpid``'s dump waits; a newer dump of a waiting switch replaces it and keeps the earlier deadline."""
        old = self._waiting.get(dpid)
        if old is not None:
            deadline = min(deadline, old.deadline)
        self._waiting[dpid] = Pending(present, missing_links, deadline)

    def drop(self, dpid: int) -> None:
        """``dpid`` no longer waits (disconnected, reconnected, or another controller programs it)."""
        self._waiting.pop(dpid, None)

    def due(
        self, now: float, trunk_ports: Callable[[int], Collection[int]], awaited: bool
    ) -> dict[int, Collection[DumpedFlow]]:
        """Remove and return the dumps to reconcile now, in dpid order.

        Every waiting dump once no other switch's dump is ``awaited`` and
        every waiting switch's missing links are known (``trunk_ports(dpid)``:
        the ports of ``dpid`` with a known link); otherwise those past their
        deadline.
        """
        complete = not awaited and all(p.missing_links <= set(trunk_ports(d)) for d, p in self._waiting.items())
        done = {d: p.present for d, p in sorted(self._waiting.items()) if complete or now >= p.deadline}
        for dpid in done:
            del self._waiting[dpid]
        return done
