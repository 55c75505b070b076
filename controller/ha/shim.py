"""The shim's high-availability side: role requests and replies, leadership events, the lease guard.

A mixin of :class:`controller.app.VmnController` (the only place that
talks to datapaths, with this module): it sends the role requests
:class:`~controller.ha.roles.Roles` decides, hands role replies and
refused role requests back to it, turns the elector's
:class:`~controller.ha.elector.Change` events into claims or a step-down,
and guards every change the shim sends (:meth:`HaShim._writable`).
Handlers run on the app thread; the elector's thread only posts
:class:`EventLeadership`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from os_ken.controller import event, ofp_event
from os_ken.controller.handler import MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3 as ofp

from controller import ofmsg
from controller.core import Core
from controller.ha.elector import Change, Elector, redacted
from controller.ha.roles import EQUAL, MASTER, SLAVE, RoleRequest, Roles, Verdict
from controller.metrics import Metrics

LOG = logging.getLogger("vmn")


class EventLeadership(event.EventBase):
    """The elector's thread reports a change of leadership."""

    def __init__(self, change: Change) -> None:
        super().__init__()
        self.change = change


class HaShim:
    """High availability for the os-ken app; needs the attributes below from it."""

    name: str
    core: Core
    metrics: Metrics
    datapaths: dict[int, Any]
    roles: Roles
    elector: Elector | None
    coordination: str | None
    _stats: dict[int, Any]
    _polls: dict[tuple[int, int], Any]
    _elected_at: float | None
    _coordination_up: bool | None

    if TYPE_CHECKING:  # provided by os-ken's OSKenApp and by the shim (not defined here: no shadowing)

        def send_event(self, name: str, ev: Any, state: Any = None) -> None: ...

        def _program(self, dpid: int) -> None: ...

    def _start_election(self) -> None:
        """With coordination: run for leader on the elector's thread (tooz imported only now)."""
        url = self.coordination
        if url is None:
            return
        member = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.elector = Elector(url, member.encode(), lambda c: self.send_event(self.name, EventLeadership(c)))
        try:
            self.elector.start()
        except ImportError as err:
            raise SystemExit(
                f"controller.coordination needs tooz and its driver ({err}): pip install 'vmn[ha]'"
            ) from err
        LOG.info("coordination %s: running for leader as %s", redacted(url), member)

    def _writable(self, dpid: int) -> bool:
        """True if this instance may change ``dpid`` now; a leader whose lease ran out steps down here."""
        if not self.roles.writable(dpid):
            return False
        if self.elector is None or self.elector.lease_valid(time.monotonic()):
            return True
        self._step_down("coordination lease expired", self.roles.deposed())
        return False

    @set_ev_cls(EventLeadership)
    def on_leadership(self, ev: EventLeadership) -> None:
        change = ev.change
        if change.kind == "elected":
            if self.elector is None or not self.elector.lease_valid(time.monotonic()):
                return  # lost again before this thread heard of it; "deposed" follows
            self._elected_at = time.monotonic()
            self.metrics.elections.inc()
            self.metrics.leader.set(1)
            verdict = self.roles.elected(change.wall_ms)
            LOG.info(
                "leader: claiming %d switches as master, generation %d", len(verdict.requests), self.roles.generation
            )
            self._act(verdict)
        elif change.kind == "deposed":
            verdict = self.roles.deposed()
            if verdict.step_down:
                self._step_down(change.detail, verdict)

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    def on_role_reply(self, ev: Any) -> None:
        msg = ev.msg
        role = ofmsg.ROLE_NAMES.get(msg.role, EQUAL)
        if role == MASTER and self.roles.leader:
            LOG.info("switch %016x: master (generation %d)", msg.datapath.id, msg.generation_id)
        self._act(self.roles.replied(msg.datapath.id, role, msg.generation_id))

    def _role_error(self, msg: Any) -> bool:
        """Handle a refused role request or a change refused to a slave; False if ``msg`` is neither."""
        dpid = msg.datapath.id
        if (msg.type, msg.code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE):
            LOG.error("switch %016x refused a change: this connection is slave (fenced by the switch)", dpid)
            return True
        if (msg.type, msg.code) != (ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE):
            return False
        request = ofmsg.role_of_request(bytes(msg.data or b""))
        if request is None:
            return False
        LOG.warning("switch %016x refused role %s generation %d as stale", dpid, *request)
        verdict = self.roles.refused(dpid, *request)
        self._act(verdict)
        if verdict.step_down and self.elector is not None:
            self.elector.resign()
        return True

    def _act(self, verdict: Verdict) -> None:
        """Send a verdict's role requests and program the switches it confirmed master."""
        if verdict.step_down:
            self._step_down("a switch refused this term as stale: a newer leader exists", verdict)
            return
        self._send_roles(verdict.requests)
        for dpid in verdict.program:
            self._program(dpid)
        self._role_metrics()

    def _step_down(self, reason: str, verdict: Verdict) -> None:
        """Stop changing every switch at once; send the verdict's role requests (slave or queries)."""
        for dpid in self.datapaths:
            self.core.release(dpid)
            self._stats.pop(dpid, None)
        self._polls.clear()
        self._elected_at = None
        self.metrics.leader.set(0)
        LOG.warning("not leader (%s): changing nothing on %d switches", reason, len(self.datapaths))
        self._send_roles(verdict.requests)
        self._role_metrics()

    def _send_roles(self, requests: tuple[RoleRequest, ...]) -> None:
        for request in requests:
            dp = self.datapaths.get(request.dpid)
            if dp is not None:
                dp.send_msg(ofmsg.role_request(dp, request.role, request.generation))

    def _check_takeover(self) -> None:
        """After an election: once every known connected switch is reconciled, record the time it took."""
        if self._elected_at is None:
            return
        known = [d for d in self.datapaths if self.core.model.knows_dpid(d)]
        if not all(d in self.core.ready for d in known):
            return
        took = time.monotonic() - self._elected_at
        self._elected_at = None
        self.metrics.takeover_seconds.observe(took)
        LOG.info("takeover done: %d switches reconciled %.3f s after the election", len(known), took)

    def _check_coordination(self) -> None:
        """Every tick: step down when the lease ran out; log and export (``vmn_coordination_up``) when the
        coordination service stops or starts answering."""
        if self.elector is None:
            return
        now = time.monotonic()
        if self.roles.leader and not self.elector.lease_valid(now):
            self._step_down("coordination lease expired", self.roles.deposed())
        up = self.elector.reachable(now)
        if up is None or up == self._coordination_up:
            return
        self._coordination_up = up
        self.metrics.coordination_up.set(1 if up else 0)
        url = redacted(self.elector.url)
        if up:
            LOG.info("coordination service %s reachable", url)
        else:
            LOG.error(
                "coordination service %s unreachable (%s): this instance does not act as leader; retrying",
                url,
                self.elector.last_error or "no answer",
            )

    def _role_metrics(self, gone: int | None = None) -> None:
        """``vmn_switch_role``: 1 for each connected switch's role, 0 for the others; a gone switch's removed."""
        if gone is not None:
            for role in (MASTER, SLAVE, EQUAL):
                try:
                    self.metrics.switch_role.remove(f"{gone:x}", role)
                except KeyError:
                    pass
        for dpid in self.datapaths:
            current = self.roles.role(dpid)
            for role in (MASTER, SLAVE, EQUAL):
                self.metrics.switch_role.labels(switch=f"{dpid:x}", role=role).set(1 if role == current else 0)

    def switch_roles(self) -> dict[int, str]:
        """This instance's confirmed OpenFlow role on each connected switch (call on the app thread)."""
        return {dpid: self.roles.role(dpid) or EQUAL for dpid in self.datapaths}
