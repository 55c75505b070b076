"""This instance's OpenFlow role on each switch: a pure state machine over role replies and errors.

OpenFlow 1.3.5 §6.3.5: a connection starts ``equal``; a ``ROLE_REQUEST``
for ``master`` or ``slave`` carries a 64-bit *generation id*; the switch
keeps the largest one it accepted and refuses a smaller one (compared as
the signed difference of the two, §7.3.9) with ``OFPRRFC_STALE``. A switch
has at most one master: granting ``master`` turns the previous master into
a slave. A slave receives no packet-ins or flow-removed messages and the
switch refuses its flow-mods, group-mods, meter-mods and packet-outs
(``OFPBRC_IS_SLAVE``); it may still read (multipart requests, role
requests) and it gets port-status messages (the default asynchronous
configuration of §7.3.10; Open vSwitch follows it, see ``ovs-fields(7)``
and ``ofproto/connmgr.c``).

:class:`Roles` decides which role requests to send, and when a switch may
be programmed. It sends nothing and reads no clock: the shim passes the
wall-clock milliseconds of an election in and sends the
:class:`RoleRequest` values it gets back.

Generation ids. A new term's id is the largest of the election's wall-clock
time in milliseconds, one more than any id a switch has reported to this
instance, and one more than this instance's previous term. Elections follow
one another (the service grants leadership only once the previous leader's
session or lock has expired or been released), so a later term has a
larger id as long as the instances' clocks differ by less than that
expiry; where they do not, the switch refuses the claim as stale and the
instance demotes itself, which is safe (no master) rather than unsafe (two).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MASTER = "master"
SLAVE = "slave"
EQUAL = "equal"
NOCHANGE = "nochange"
"""A role request that changes nothing and only asks for the role and the generation id."""
MASK64 = (1 << 64) - 1
UNDEFINED = MASK64
"""The generation id of a role reply from a switch that has none yet (Open vSwitch sends all ones)."""


def newer(a: int, b: int) -> bool:
    """True if generation id ``a`` is not older than ``b``: ``(a - b) mod 2**64`` read as signed is >= 0.

    This is the switch's test (a request whose id is older is stale).

    >>> newer(5, 3), newer(3, 5), newer(0, MASK64)
    (True, False, True)
    """
    diff = (a - b) & MASK64
    return diff < (1 << 63)


@dataclass(frozen=True)
class RoleRequest:
    """A role request to send to switch ``dpid``: ``master``, ``slave`` or ``nochange``."""

    dpid: int
    role: str
    generation: int = 0


@dataclass(frozen=True)
class Verdict:
    """What the shim does after an event.

    ``requests`` to send; ``program``: switches now confirmed master, to
    reconcile from their flow dump; ``step_down``: the instance lost the
    leadership (a stale claim): stop writing everywhere and resign.
    """

    requests: tuple[RoleRequest, ...] = ()
    program: tuple[int, ...] = ()
    step_down: bool = False


class Roles:
    """This instance's leadership and its confirmed role on each connected switch.

    Without coordination (``coordinated=False``) every connected switch is
    ``equal`` and writable at once, as a single controller always was.
    """

    def __init__(self, coordinated: bool) -> None:
        self.coordinated = coordinated
        self.leader = False
        self.generation = 0
        """The generation id of this instance's current (or last) term."""
        self.seen = 0
        """The largest generation id a switch has reported to this instance."""
        self.switches: dict[int, tuple[str, int]] = {}
        """Connected switch -> (the role it last confirmed, ``equal`` until it answers; its generation id)."""

    def role(self, dpid: int) -> str | None:
        """The confirmed role on ``dpid`` (``equal`` without coordination); None if not connected."""
        known = self.switches.get(dpid)
        return None if known is None else known[0]

    def writable(self, dpid: int) -> bool:
        """True if this instance may change ``dpid``: uncoordinated, or leader and master of this term."""
        known = self.switches.get(dpid)
        if not self.coordinated:
            return known is not None
        return self.leader and known == (MASTER, self.generation)

    # -- events ------------------------------------------------------------
    def connected(self, dpid: int) -> Verdict:
        """A switch connected: the leader claims it, a follower first asks the switch's generation id."""
        self.switches[dpid] = (EQUAL, 0)
        if not self.coordinated:
            return Verdict()
        if self.leader:
            return Verdict((RoleRequest(dpid, MASTER, self.generation),))
        return Verdict((RoleRequest(dpid, NOCHANGE),))

    def disconnected(self, dpid: int) -> None:
        self.switches.pop(dpid, None)

    def elected(self, wall_ms: int) -> Verdict:
        """This instance won an election at ``wall_ms`` (ms since the epoch): claim every switch."""
        self.leader = True
        self.generation = max(wall_ms, self.seen + 1, self.generation + 1) & MASK64
        return Verdict(tuple(RoleRequest(d, MASTER, self.generation) for d in sorted(self.switches)))

    def deposed(self) -> Verdict:
        """The leadership is lost (lease expired, resigned): write nothing; become slave everywhere.

        The slave requests carry the largest generation id seen, so a switch
        accepts them unless a newer leader already claimed it (then the
        refusal leads to a fresh ``nochange``, see :meth:`refused`).
        """
        was = self.leader
        self.leader = False
        if not was:
            return Verdict()
        newest = self.generation if newer(self.generation, self.seen) else self.seen
        return Verdict(tuple(RoleRequest(d, SLAVE, newest) for d in sorted(self.switches)), step_down=True)

    def replied(self, dpid: int, role: str, generation: int) -> Verdict:
        """A role reply from ``dpid``: its role for this connection and its current generation id."""
        if dpid not in self.switches:
            return Verdict()
        if generation == UNDEFINED:
            generation = self.seen
        self._saw(generation)
        self.switches[dpid] = (role, generation)
        if role == MASTER and self.leader:
            # this term's claim confirmed; an older term's reply: this term's claim is still on its way
            return Verdict(program=(dpid,)) if generation == self.generation else Verdict()
        if role in (MASTER, EQUAL) and not self.leader:
            return Verdict((RoleRequest(dpid, SLAVE, generation),))  # a term that ended, or a fresh connection
        return Verdict()

    def refused(self, dpid: int, role: str, generation: int) -> Verdict:
        """``dpid`` refused a role request as stale (``OFPRRFC_STALE``): a newer generation id exists.

        A refused claim of this term demotes the instance at once: another
        instance holds a newer term. A refused slave request is asked again.
        """
        if dpid not in self.switches:
            return Verdict()
        if role == MASTER and self.leader and generation == self.generation:
            self.leader = False
            return Verdict(tuple(RoleRequest(d, NOCHANGE) for d in sorted(self.switches)), step_down=True)
        return Verdict((RoleRequest(dpid, NOCHANGE),))

    def _saw(self, generation: int) -> None:
        if newer(generation, self.seen):
            self.seen = generation


def merge(verdicts: Iterable[Verdict]) -> Verdict:
    """One verdict doing everything ``verdicts`` do, in order."""
    requests: list[RoleRequest] = []
    program: list[int] = []
    step_down = False
    for v in verdicts:
        requests += v.requests
        program += v.program
        step_down = step_down or v.step_down
    return Verdict(tuple(requests), tuple(program), step_down)
