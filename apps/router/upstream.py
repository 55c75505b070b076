"""Finding each uplink's upstream gateway MAC by ARP, and noticing when it stops answering.

The controller speaks as the router on the uplink: it packets-out an ARP
request from the uplink's MAC and address for the upstream ``gateway`` out
of the uplink port, and table ``uplink_in`` traps the answer back (an ARP
reply from the gateway's address to the uplink's). Requests go every
:data:`RETRY` seconds until it answers, then every :data:`REFRESH` seconds.
After :data:`MAX_MISSES` unanswered refreshes in a row the gateway is
reported down (a warning, ``vmn_uplink_gateway_up`` 0) but its last MAC is
kept: traffic keeps flowing to a gateway that forwards but has stopped
answering ARP, and a new MAC is taken as soon as one answers.

A found MAC is also written into a rule (:func:`apps.router.uplink.marker_rule`)
so a restarted controller adopts it from the flow dump. Nothing here touches
a socket: methods return frames to send and whether the rules change.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from apps.lb.probe import build_arp_request, parse_probe_reply
from controller.config.model import Model, Uplink
from controller.config.uplinks import uplink_mac
from controller.effects import DumpedFlow, Frame
from controller.fabric.view import FabricView
from controller.metrics import Metrics

LOG = logging.getLogger("vmn.router")
RETRY = 1.0
"""Seconds between ARP requests to an upstream gateway whose MAC is not known."""
REFRESH = 10.0
"""Seconds between ARP requests to an upstream gateway whose MAC is known."""
MAX_MISSES = 3
"""Unanswered refreshes in a row after which the gateway is reported down."""


@dataclass
class Upstream:
    """The upstream gateways' MACs: uplink name -> MAC."""

    model: Model
    metrics: Metrics
    found: dict[str, str] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)
    _misses: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reconfigure(self.model)

    def reconfigure(self, model: Model) -> None:
        """Adopt a reloaded model; an uplink whose gateway address is unchanged keeps its MAC."""
        old = {u.name: u for u in self.model.uplinks}
        self.model = model
        keep = {u.name for u in model.uplinks if u.name in old and _same_peer(old[u.name], u)}
        self.found = {k: m for k, m in self.found.items() if k in keep}
        self._due = {k: t for k, t in self._due.items() if k in keep}
        self._misses = {k: n for k, n in self._misses.items() if k in keep}
        self.metrics.uplink_gateway_up.clear()
        for up in model.uplinks:
            self._export(up.name)

    def _export(self, name: str) -> None:
        up = name in self.found and self._misses.get(name, 0) <= MAX_MISSES
        self.metrics.uplink_gateway_up.labels(uplink=name).set(1 if up else 0)

    def mac(self, uplink: str) -> str | None:
        """The upstream gateway's MAC of ``uplink`` (None: not found yet)."""
        return self.found.get(uplink)

    def tick(self, now: float, view: FabricView, ready: Collection[int]) -> list[Frame]:
        """The ARP requests that are due."""
        frames: list[Frame] = []
        for up in self.model.uplinks:
            if now < self._due.get(up.name, 0.0):
                continue
            switch = self.model.switch_by_name.get(up.switch)
            port = view.port_number(switch.dpid, up.port) if switch is not None else None
            if switch is None or switch.dpid not in ready or port is None:
                continue
            if up.name in self.found:
                misses = self._misses[up.name] = self._misses.get(up.name, 0) + 1
                if misses == MAX_MISSES + 1:
                    LOG.warning(
                        "uplink %s: upstream gateway %s stopped answering ARP (still sending to %s)",
                        up.name,
                        up.gateway,
                        self.found[up.name],
                    )
                    self._export(up.name)
            frames.append((switch.dpid, port, build_arp_request(uplink_mac(up.name), up.ip.ip, up.gateway)))
            self._due[up.name] = now + (REFRESH if up.name in self.found else RETRY)
        return frames

    def reply(self, dpid: int, port: int, data: bytes, view: FabricView) -> bool:
        """A trapped ARP reply on an uplink; True if it taught a new or changed MAC."""
        answer = parse_probe_reply(data)
        if answer is None or answer.kind != "arp-reply" or answer.vlan is not None:
            return False
        up = next((u for u in self.model.uplinks if self._at(u, dpid, port, view)), None)
        if up is None or answer.src_ip != up.gateway:
            return False
        if self._misses.get(up.name, 0) > MAX_MISSES:
            LOG.info("uplink %s: upstream gateway %s answers again", up.name, up.gateway)
        self._misses.pop(up.name, None)
        changed = self.found.get(up.name) != answer.src_mac
        if changed:
            LOG.info("uplink %s: upstream gateway %s is at %s", up.name, up.gateway, answer.src_mac)
            self.found[up.name] = answer.src_mac
        self._export(up.name)
        return changed

    def _at(self, up: Uplink, dpid: int, port: int, view: FabricView) -> bool:
        switch = self.model.switch_by_name.get(up.switch)
        return switch is not None and switch.dpid == dpid and view.port_number(dpid, up.port) == port

    def adopt(self, dump: Sequence[DumpedFlow], marker: int, app_id: int, table: int, view: FabricView) -> bool:
        """Upstream MACs recorded in marker rules (priority ``marker``) of a flow dump; True if any was new."""
        learned = False
        for flow in dump:
            if flow.cookie >> 56 != app_id or flow.table != table or flow.priority != marker:
                continue
            port, ip, mac = (flow.match.get(k) for k in ("in_port", "arp_spa", "arp_sha"))
            if not (isinstance(port, int) and isinstance(ip, str) and isinstance(mac, str)):
                continue
            for up in self.model.uplinks:
                if str(up.gateway) == ip and up.name not in self.found and self._port_of(up, view) == port:
                    self.found[up.name] = mac.lower()
                    self._due[up.name] = 0.0  # refresh at once
                    self._export(up.name)
                    learned = True
        return learned

    def _port_of(self, up: Uplink, view: FabricView) -> int | None:
        switch = self.model.switch_by_name.get(up.switch)
        return view.port_number(switch.dpid, up.port) if switch is not None else None


def _same_peer(a: Uplink, b: Uplink) -> bool:
    return (a.switch, a.port, a.gateway) == (b.switch, b.port, b.gateway)
