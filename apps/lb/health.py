"""Backend health of the load balancers: a pure state machine over probe results.

:class:`HealthChecker` says when each backend needs a probe, matches the
answers (:class:`apps.lb.probe.ProbeReply`) to its probes and keeps
each backend up or down. It sends nothing and reads no clock: the caller
passes ``now`` (float seconds), packets-out the :class:`ProbeRequest` frames
and feeds back what the switches trap. A tick is ``expire(now)`` then
``due(now)``; ``next_wakeup()`` says when the next one is needed.

Semantics are HAProxy's (``src/check.c``, ``src/server.c``):

- Down after ``fall`` consecutive failed checks, up after ``rise``
  consecutive passed ones; a result that agrees with the state resets the
  count of contradicting ones.
- **Initial state**: *up, but down at the first failed check* (HAProxy's
  ``health = rise``: "up, but will fall down at first failure", its default
  ``init-state up``). Starting down would hold a load balancer back for
  ``rise * interval`` after every start; starting plainly up would feed a
  dead backend for ``fall * interval``. This way a dead backend is out
  ``timeout`` seconds after start and a live one never stops serving; after
  its first result a backend follows the plain counts.
- ``tcp`` passes on SYN-ACK, fails on RST or no answer within ``timeout``;
  ``icmp`` passes on echo reply. An answer at or after the deadline is a
  timeout; one to an already expired probe matches nothing.
- One probe per backend is outstanding; the next goes out at the first
  ``due`` at or after ``interval`` since the last was sent (the first at
  ``clock_start``).

**Probe identity**: (VIP, backend ip, backend port, TCP source port) for
``tcp``, and the SYN-ACK/RST must acknowledge the probe's ISN; (VIP, backend
ip, ICMP ident, ICMP seq) for ``icmp``. Source port, ISN and ident are
hashed from (lb, backend) and a per-backend counter (see
:mod:`apps.lb.probe`), so consecutive probes never share an identity.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from apps.lb import probe as lbprobe
from apps.lb.probe import ProbeReply
from controller.config.model import LoadBalancer

Ip = ipaddress.IPv4Address
_ProbeKey = tuple[str, Ip, Ip, int, int]


@dataclass(frozen=True)
class BackendHealth:
    """Health of one backend.

    ``streak`` counts consecutive results that contradict ``up`` (failures
    while up, passes while down); ``checked`` is False until the first
    result, during which one failure is enough to go down.
    """

    up: bool = True
    streak: int = 0
    checked: bool = False

    def record(self, passed: bool, fall: int, rise: int) -> BackendHealth:
        """The health after one check result (``up`` flips when the count is reached)."""
        if passed == self.up:
            return BackendHealth(self.up, 0, True)
        streak = self.streak + 1
        needed = rise if passed else (fall if self.checked else 1)
        if streak >= needed:
            return BackendHealth(passed, 0, True)
        return BackendHealth(self.up, streak, True)


@dataclass(frozen=True)
class ProbeRequest:
    """A probe to send now from the VIP of ``lb`` to ``backend``.

    ``tcp``: a SYN to ``backend:port`` from ``vip:src_port`` with initial
    sequence number ``seq``. ``icmp``: an echo request with ``ident``/``seq``
    (``port`` and ``src_port`` are 0). The answer counts until ``deadline``.
    """

    lb: str
    network: str
    backend: Ip
    kind: Literal["tcp", "icmp"]
    vip: Ip
    vip_mac: str
    port: int
    src_port: int
    ident: int
    seq: int
    sent: float
    deadline: float

    def frame(self, backend_mac: str) -> bytes:
        """The untagged probe frame addressed to ``backend_mac``; raises ValueError on a bad MAC."""
        if self.kind == "icmp":
            return lbprobe.build_icmp_echo(self.vip_mac, backend_mac, self.vip, self.backend, self.ident, self.seq)
        return lbprobe.build_tcp_syn(
            self.vip_mac, backend_mac, self.vip, self.backend, self.src_port, self.port, self.seq
        )

    @property
    def key(self) -> _ProbeKey:
        if self.kind == "icmp":
            return ("icmp", self.vip, self.backend, self.ident, self.seq)
        return ("tcp", self.vip, self.backend, self.port, self.src_port)


@dataclass(frozen=True)
class Transition:
    """A backend changed state: ``up`` is the new state; ``reason`` is for logs."""

    lb: str
    backend: Ip
    up: bool
    reason: str


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one answered probe.

    ``latency`` (seconds from send to answer) is set for passed checks only.
    ``reset`` is the RST frame to packet-out where the answer came in, to
    close the half-open connection a SYN-ACK leaves on the backend.
    """

    lb: str
    backend: Ip
    passed: bool
    detail: str
    """``syn-ack``, ``rst``, ``echo-reply`` or ``timeout`` (an answer after the deadline)."""
    latency: float | None = None
    transition: Transition | None = None
    reset: bytes | None = None


@dataclass
class _Slot:
    """Mutable bookkeeping of one (lb, backend); private to the checker."""

    lb: LoadBalancer
    ip: Ip
    health: BackendHealth
    next_due: float
    counter: int = 0
    last_sent: float | None = None
    probe: ProbeRequest | None = None


class HealthChecker:
    """Health of every backend of ``lbs``, driven by the caller's clock.

    Every method returns its output in (lb name, backend ip) order, so the
    same calls give the same results. Raises ValueError if ``ports`` is
    empty or outside 1-65535.
    """

    def __init__(self, lbs: Sequence[LoadBalancer], clock_start: float, ports: range = lbprobe.DEFAULT_PORTS) -> None:
        if not ports or min(ports) < 1 or max(ports) > 65535:
            raise ValueError(f"probe ports must be a non-empty range within 1-65535, got {ports}")
        self.ports = ports
        self._now = clock_start
        self._lbs: frozenset[str] = frozenset()
        self._slots: dict[tuple[str, Ip], _Slot] = {}
        self._outstanding: dict[_ProbeKey, tuple[str, Ip]] = {}
        self.reconfigure(lbs)

    def reconfigure(self, lbs: Sequence[LoadBalancer]) -> None:
        """Adopt a reloaded config.

        A backend that is still listed (same lb name and backend ip) keeps its
        health, counter and schedule (re-timed to the new ``interval``); its
        outstanding probe is kept unless the check type, VIP, port or timeout
        changed, in which case it is dropped uncounted and the backend is due
        at once. New backends start in the initial state, due at the latest
        time the checker has seen; removed ones are forgotten.
        """
        old, self._slots, self._outstanding = self._slots, {}, {}
        self._lbs = frozenset(lb.name for lb in lbs)
        for lb in sorted(lbs, key=lambda item: item.name):
            for ip in sorted({b.ip for b in lb.backends}):
                slot = old.get((lb.name, ip))
                if slot is None:
                    slot = _Slot(lb, ip, BackendHealth(), self._now)
                else:
                    self._carry_over(slot, lb)
                self._slots[(lb.name, ip)] = slot
                if slot.probe is not None:
                    self._outstanding[slot.probe.key] = (lb.name, ip)

    @staticmethod
    def _carry_over(slot: _Slot, lb: LoadBalancer) -> None:
        def shape(x: LoadBalancer) -> tuple[object, ...]:
            return (x.health_check.type, x.health_check.timeout, x.vip, x.port)

        before, slot.lb = slot.lb, lb
        if slot.last_sent is not None:
            slot.next_due = slot.last_sent + lb.health_check.interval
        if slot.probe is not None and shape(before) != shape(lb):
            slot.next_due, slot.probe = slot.probe.sent, None

    def due(self, now: float) -> list[ProbeRequest]:
        """The probes to send at ``now``; each is outstanding until answered or expired."""
        self._now = max(self._now, now)
        out = []
        for slot in self._slots.values():
            if slot.probe is None and now >= slot.next_due:
                probe = self._new_probe(slot, now)
                if probe is not None:
                    out.append(probe)
        return out

    def _new_probe(self, slot: _Slot, now: float) -> ProbeRequest | None:
        lb, check = slot.lb, slot.lb.health_check
        tcp = check.type == "tcp"
        for counter in range(slot.counter, slot.counter + len(self.ports)):
            probe = ProbeRequest(
                lb.name,
                lb.network,
                slot.ip,
                check.type,
                lb.vip,
                lbprobe.vip_mac(str(lb.vip)),
                port=lb.port if tcp else 0,
                src_port=lbprobe.probe_port(lb.name, slot.ip, counter, self.ports) if tcp else 0,
                ident=0 if tcp else lbprobe.probe_ident(lb.name, slot.ip),
                seq=lbprobe.probe_isn(lb.name, slot.ip, counter) if tcp else counter & 0xFFFF,
                sent=now,
                deadline=now + check.timeout,
            )
            if probe.key not in self._outstanding:
                slot.counter, slot.last_sent, slot.probe = counter + 1, now, probe
                slot.next_due = now + check.interval
                self._outstanding[probe.key] = (lb.name, slot.ip)
                return probe
        return None  # every identity is in use by another load balancer's probe

    def unsent(self, probe: ProbeRequest) -> None:
        """Withdraw ``probe`` uncounted: it could not be sent (its switch is not connected).

        The backend keeps its state; the next probe is due after ``interval``.
        When only the backend's MAC is unknown, send an ARP request and let
        the probe fail instead, or a dead backend that never spoke stays up.
        """
        slot = self._slots.get((probe.lb, probe.backend))
        if slot is not None and slot.probe == probe:
            self._clear(slot)

    def expire(self, now: float) -> list[Transition]:
        """Count every probe unanswered at its deadline as failed; the state changes that causes."""
        self._now = max(self._now, now)
        out = []
        for slot in self._slots.values():
            if slot.probe is not None and now >= slot.probe.deadline:
                self._clear(slot)
                transition = self._record(slot, False, "timeout")
                if transition is not None:
                    out.append(transition)
        return out

    def reply(self, now: float, reply: ProbeReply) -> CheckResult | None:
        """Count ``reply`` against the probe it answers; None if it answers no outstanding probe."""
        self._now = max(self._now, now)
        slot = self._match(reply)
        if slot is None or slot.probe is None:
            return None
        probe = slot.probe
        self._clear(slot)
        in_time = now < probe.deadline
        passed = in_time and reply.kind != "rst"
        detail = reply.kind if in_time else "timeout"
        return CheckResult(
            probe.lb,
            probe.backend,
            passed,
            detail,
            latency=now - probe.sent if passed else None,
            transition=self._record(slot, passed, detail),
            reset=lbprobe.reset_for(reply),
        )

    def _match(self, reply: ProbeReply) -> _Slot | None:
        if reply.kind in ("syn-ack", "rst"):
            key: _ProbeKey = ("tcp", reply.dst_ip, reply.src_ip, reply.src_port, reply.dst_port)
        elif reply.kind == "echo-reply":
            key = ("icmp", reply.dst_ip, reply.src_ip, reply.ident, reply.seq)
        else:
            return None
        owner = self._outstanding.get(key)
        slot = self._slots.get(owner) if owner is not None else None
        if slot is None or slot.probe is None:
            return None
        if key[0] == "tcp" and reply.ack != (slot.probe.seq + 1) & 0xFFFFFFFF:
            return None  # not an answer to our SYN (stale or forged)
        return slot

    def _clear(self, slot: _Slot) -> None:
        if slot.probe is not None:
            self._outstanding.pop(slot.probe.key, None)
            slot.probe = None

    @staticmethod
    def _record(slot: _Slot, passed: bool, detail: str) -> Transition | None:
        check, before = slot.lb.health_check, slot.health
        slot.health = before.record(passed, check.fall, check.rise)
        if slot.health.up == before.up:
            return None
        if not before.checked:
            reason = f"first check failed ({detail})"
        else:
            verdict = "passed" if passed else "failed"
            reason = f"{before.streak + 1} consecutive {verdict} checks (last: {detail})"
        return Transition(slot.lb.name, slot.ip, slot.health.up, reason)

    def up_backends(self, lb_name: str) -> frozenset[Ip]:
        """The backend ips of ``lb_name`` that may receive new connections; KeyError if unknown."""
        if lb_name not in self._lbs:
            raise KeyError(lb_name)
        return frozenset(ip for (name, ip), slot in self._slots.items() if name == lb_name and slot.health.up)

    def health(self) -> dict[tuple[str, Ip], BackendHealth]:
        """Every backend's health, keyed and ordered by (lb name, backend ip)."""
        return {key: slot.health for key, slot in self._slots.items()}

    def next_wakeup(self) -> float | None:
        """The earliest time :meth:`due` or :meth:`expire` has work; None without backends."""
        return min(
            (s.probe.deadline if s.probe is not None else s.next_due for s in self._slots.values()), default=None
        )
