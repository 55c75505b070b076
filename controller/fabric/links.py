"""Link discovery and liveness: LLDP probes out, heard probes in, silent links expire.

Probes go out of the ports that may be trunks (see
:mod:`controller.fabric.admission`), signed and stamped with the time they
were sent. A heard probe counts only while it is as fresh as a live link
needs (:func:`liveness`): a probe captured once and replayed later proves
nothing. A link is added on the first of our probes heard across it, if
the network file allows it, and removed after three LLDP intervals of
silence (or at once when a port goes down, see
:class:`~controller.fabric.topology.Topology`). A link the file does not
allow is *refused*: it is never added to the topology (so it displaces no
link in use), and while its probes are heard it is logged once and counted
in ``vmn_link_mismatches``, with the declared links not discovered.

After a stall of the controller itself (ticks more than two intervals
apart) links get a fresh grace period: their probes went unheard because
nobody was listening, not because they are down.
"""

from __future__ import annotations

import logging

from controller.effects import Frame
from controller.fabric.lldp import build_probe, parse_probe
from controller.fabric.topology import LinkKey, Topology
from controller.fabric.view import FabricView
from controller.metrics import Metrics

LOG = logging.getLogger("vmn.links")


def describe(link: LinkKey) -> str:
    return f"{link.a_dpid:016x}:{link.a_port} <-> {link.b_dpid:016x}:{link.b_port}"


def liveness(interval: float) -> float:
    """Seconds a link lives without a probe heard, and the oldest probe that still proves one."""
    return 3 * interval + 0.5


class LinkMonitor:
    """Liveness of the topology's links; LLDP probes signed with ``secret``."""

    def __init__(self, topology: Topology, metrics: Metrics, secret: bytes) -> None:
        self.topology = topology
        self.metrics = metrics
        self.secret = secret
        self._seen: dict[LinkKey, float] = {}
        """When a probe was last heard across each link in use or refused."""
        self.refused: dict[LinkKey, str] = {}
        """Links heard recently that the network file does not allow -> why."""
        self._mismatches: set[str] = set()
        self._last_tick: float | None = None
        self._next_probe = 0.0

    def probes(self, now: float, interval: float, view: FabricView) -> list[Frame]:
        """The probes due at ``now`` (every ``interval`` s): one per live port that may be a trunk."""
        if now < self._next_probe:
            return []
        self._next_probe = now + interval
        policy = view.link_policy
        return [
            (dpid, port, build_probe(dpid, port, self.secret, now))
            for dpid in view.dpids
            for port in sorted(self.topology.live_ports(dpid))
            if policy.may_be_trunk(dpid, port)
        ]

    def heard(self, now: float, dpid: int, in_port: int, data: bytes, view: FabricView) -> LinkKey | None:
        """An LLDP frame arrived on ``dpid``/``in_port``; the link it proves, if it is new and allowed.

        A refused link is recorded (and reported, when new or refused for a new reason) instead.
        """
        probe = parse_probe(data, self.secret)
        if probe is None or (probe.dpid, probe.port) == (dpid, in_port) or probe.dpid not in self.topology.ports:
            return None
        if not 0.0 <= now - probe.sent_at <= liveness(view.model.controller.lldp_interval):
            return None
        link = LinkKey.of(probe.dpid, probe.port, dpid, in_port)
        self._seen[link] = now
        reason = view.link_policy.refusal(link)
        if reason is not None:
            if self.refused.get(link) != reason:
                self.refused[link] = reason
                self.changed(view)
            return None
        if not self.topology.add_link(link):
            return None
        LOG.info("link up %s", describe(link))
        return link

    def expire(self, now: float, interval: float) -> tuple[set[LinkKey], bool]:
        """Drop links (and forget refused links) whose probes stopped for three intervals.

        Returns the links dropped, and whether any refused link was forgotten.
        """
        if self._last_tick is not None and now - self._last_tick > 2 * interval:
            for link in self.topology.links | self.refused.keys():
                self._seen[link] = max(self._seen.get(link, 0.0), now)
        self._last_tick = now
        deadline = now - liveness(interval)
        gone = {link for link in self.topology.links if self._seen.get(link, 0.0) < deadline}
        for link in sorted(gone):
            self.topology.links.discard(link)
            self._seen.pop(link, None)
            LOG.info("link down %s (probes stopped)", describe(link))
        forgotten = [link for link in self.refused if self._seen.get(link, 0.0) < deadline]
        for link in forgotten:
            del self.refused[link]
            self._seen.pop(link, None)
        return gone, bool(forgotten)

    def readmit(self, view: FabricView) -> bool:
        """Judge links in use and refused ones again (the network file changed); whether links changed.

        Links the file no longer allows are dropped at once; refused links
        it now allows are added, most recently heard last (it wins a port).
        """
        policy = view.link_policy
        changed = False
        for link in sorted(self.topology.links):
            reason = policy.refusal(link)
            if reason is not None:
                self.topology.links.discard(link)
                self.refused[link] = reason
                changed = True
                LOG.info("link down %s (%s)", describe(link), reason)
        for link in sorted(self.refused, key=lambda l: (self._seen.get(l, 0.0), l)):
            reason = policy.refusal(link)
            if reason is not None:
                self.refused[link] = reason
            else:
                del self.refused[link]
                if self.topology.add_link(link):
                    changed = True
                    LOG.info("link up %s", describe(link))
        return changed

    def changed(self, view: FabricView) -> None:
        """The link set changed: export it, log each new mismatch once (declared not found, found but refused)."""
        self.metrics.links_up.set(len(self.topology.links))
        policy = view.link_policy
        now = {f"declared link not discovered: {text}" for text in policy.missing(self.topology.links)}
        now |= {
            f"discovered link not used ({reason}): {policy.describe(link)}" for link, reason in self.refused.items()
        }
        self.metrics.link_mismatches.set(len(now))
        for text in sorted(now - self._mismatches):
            LOG.warning(text)
        self._mismatches = now
