"""Link discovery and liveness: LLDP probes out, heard probes in, silent links expire.

A link is added on the first of our probes heard across it and removed
after three LLDP intervals of silence (or at once when a port goes down,
see :class:`~controller.fabric.topology.Topology`). After a stall of the
controller itself (ticks more than two intervals apart) links get a fresh
grace period: their probes went unheard because nobody was listening, not
because they are down. Declared ``links`` are compared with discovered ones;
each new mismatch is logged once and the count exported.
"""

from __future__ import annotations

import logging
from typing import Optional

from controller.config.model import Model
from controller.effects import Frame
from controller.fabric.lldp import build_probe, parse_probe
from controller.fabric.topology import LinkKey, Topology
from controller.fabric.view import MAX_PHYSICAL_PORT, FabricView, link_mismatches
from controller.metrics import Metrics

LOG = logging.getLogger("vmn.links")


def describe(link: LinkKey) -> str:
    return f"{link.a_dpid:016x}:{link.a_port} <-> {link.b_dpid:016x}:{link.b_port}"


class LinkMonitor:
    """Liveness of the topology's links; LLDP probes signed with ``secret``."""

    def __init__(self, topology: Topology, metrics: Metrics, secret: bytes) -> None:
        self.topology = topology
        self.metrics = metrics
        self.secret = secret
        self._seen: dict[LinkKey, float] = {}
        self._mismatches: set[str] = set()
        self._last_tick: Optional[float] = None
        self._next_probe = 0.0

    def probes(self, now: float, interval: float, view: FabricView) -> list[Frame]:
        """The probes due at ``now`` (every ``interval`` s): one per live port that is not a VM's.

        Switches whose reconcile waits for these very links are probed too.
        """
        if now < self._next_probe:
            return []
        self._next_probe = now + interval
        out = []
        for dpid in view.dpids:
            vm_ports = {p for p, (_, vm) in view.edge_ports(dpid).items() if vm is not None}
            for port in sorted(self.topology.live_ports(dpid)):
                if port < MAX_PHYSICAL_PORT and port not in vm_ports:
                    out.append((dpid, port, build_probe(dpid, port, self.secret)))
        return out

    def heard(self, now: float, dpid: int, in_port: int, data: bytes) -> Optional[LinkKey]:
        """An LLDP frame arrived on ``dpid``/``in_port``; the link it proves, if it is new."""
        origin = parse_probe(data, self.secret)
        if origin is None or origin == (dpid, in_port) or origin[0] not in self.topology.ports:
            return None
        link = LinkKey.of(origin[0], origin[1], dpid, in_port)
        self._seen[link] = now
        if not self.topology.add_link(link):
            return None
        LOG.info("link up %s", describe(link))
        return link

    def expire(self, now: float, interval: float) -> set[LinkKey]:
        """Drop links whose probes stopped for three intervals; returns them."""
        if self._last_tick is not None and now - self._last_tick > 2 * interval:
            for link in self.topology.links:
                self._seen[link] = max(self._seen.get(link, 0.0), now)
        self._last_tick = now
        deadline = now - 3 * interval - 0.5
        gone = {link for link in self.topology.links if self._seen.get(link, 0.0) < deadline}
        for link in sorted(gone):
            self.topology.links.discard(link)
            LOG.info("link down %s (probes stopped)", describe(link))
        return gone

    def changed(self, model: Model, view: FabricView) -> None:
        """The link set changed: export it and log declared/discovered mismatches once each."""
        self.metrics.links_up.set(len(self.topology.links))
        missing, extra = link_mismatches(model, view)
        self.metrics.link_mismatches.set(len(missing) + len(extra))
        now = {f"declared link not discovered: {t}" for t in missing}
        now |= {f"discovered link not declared: {t}" for t in extra}
        for text in sorted(now - self._mismatches):
            LOG.warning(text)
        self._mismatches = now
