"""Finding the MACs of routed VMs that declare an ``ip`` but no ``mac``, by ARP from their gateway.

As the load balancer locates its backends (:mod:`apps.lb.runtime`), the
controller speaks as the gateway: it packets-out an ARP request from the
gateway's MAC and address to the VM's declared port, and the route table
traps the answer (an ARP reply to the gateway address) back. Requests are
rate-limited per VM: every :data:`RETRY` seconds while the MAC is unknown,
every :data:`REFRESH` seconds once known; after :data:`MAX_MISSES`
unanswered refreshes in a row the MAC is forgotten (the VM was replaced or
is gone) and routes to it drop until it answers again.

A found MAC is also written into a rule of the route table (an ARP reply
from that ip and MAC, trapped like any other), so a restarted controller
adopts it from the switch's flow dump instead of routing nothing to the VM
until its next answer. Nothing here touches a socket: methods return frames
to send and whether the routes changed.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from apps.lb.probe import build_arp_request, parse_probe_reply
from controller.config.model import Model, Network, Vm
from controller.config.routing import gateway_mac
from controller.effects import DumpedFlow, Frame
from controller.fabric.view import FabricView
from controller.metrics import Metrics

LOG = logging.getLogger("vmn.router")
RETRY = 1.0
"""Seconds between ARP requests to a VM whose MAC is not known."""
REFRESH = 30.0
"""Seconds between ARP requests to a VM whose MAC is known (a refresh)."""
MAX_MISSES = 3
"""Unanswered refreshes in a row after which a MAC is forgotten."""

Ip = ipaddress.IPv4Address
Key = tuple[str, Ip]
"""(network name, ip)."""


def targets(model: Model) -> dict[Key, Vm]:
    """The VMs to resolve: on a router's network, with an ``ip`` and without a ``mac``."""
    return {
        (vm.network, vm.ip.ip): vm
        for vm in model.vms
        if vm.ip is not None and vm.mac is None and vm.network in model.router_of
    }


@dataclass
class Resolver:
    """MACs of the routed VMs without a declared one: (network, ip) -> MAC."""

    model: Model
    metrics: Metrics
    found: dict[Key, str] = field(default_factory=dict)
    _due: dict[Key, float] = field(default_factory=dict)
    _misses: dict[Key, int] = field(default_factory=dict)
    _targets: dict[Key, Vm] = field(default_factory=dict)
    _declared: dict[Key, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reconfigure(self.model)

    def reconfigure(self, model: Model) -> None:
        """Adopt a reloaded model; MACs of VMs that stay targets are kept."""
        self.model = model
        wanted = self._targets = targets(model)
        self._declared = {(v.network, v.ip.ip): v.mac for v in model.vms if v.ip is not None and v.mac is not None}
        self.found = {k: m for k, m in self.found.items() if k in wanted}
        self._due = {k: t for k, t in self._due.items() if k in wanted}
        self._misses = {k: n for k, n in self._misses.items() if k in wanted}
        self._export()

    def _export(self) -> None:
        self.metrics.router_next_hops.set(len(self.found))

    def mac(self, network: str, ip: Ip) -> str | None:
        """The MAC of ``ip`` in ``network``: the declared one, else the one ARP found (None: unknown)."""
        return self._declared.get((network, ip)) or self.found.get((network, ip))

    def tick(self, now: float, view: FabricView, ready: Collection[int]) -> tuple[list[Frame], bool]:
        """ARP requests that are due, and whether a MAC was forgotten (the routes change)."""
        frames: list[Frame] = []
        changed = False
        for key, vm in sorted(self._targets.items()):
            if now < self._due.get(key, 0.0):
                continue
            net = self.model.network_by_name[vm.network]
            switch = self.model.switch_by_name.get(vm.switch)
            port = view.port_number(switch.dpid, vm.port) if switch is not None else None
            if switch is None or switch.dpid not in ready or port is None or net.gateway is None:
                continue
            if key in self.found:
                misses = self._misses.get(key, 0) + 1
                self._misses[key] = misses
                if misses > MAX_MISSES:
                    LOG.warning(
                        "router: %s of %s stopped answering ARP; forgetting %s", key[1], key[0], self.found[key]
                    )
                    del self.found[key]
                    self._misses.pop(key, None)
                    self.metrics.router_arp.labels(result="lost").inc()
                    changed = True
            frames.append((switch.dpid, port, _request(net, key[1])))
            self._due[key] = now + (REFRESH if key in self.found else RETRY)
        if changed:
            self._export()
        return frames, changed

    def reply(self, dpid: int, port: int, data: bytes, view: FabricView) -> bool:
        """A trapped ARP reply to a gateway; True if it taught a new or changed MAC."""
        answer = parse_probe_reply(data)
        if answer is None or answer.kind != "arp-reply" or answer.vlan is None:
            return False
        net = self.model.network_by_vlan.get(answer.vlan)
        if net is None:
            return False
        key = (net.name, answer.src_ip)
        vm = self._targets.get(key)
        if vm is None or not self._at(vm, dpid, port, view):
            return False
        self._misses.pop(key, None)
        if self.found.get(key) == answer.src_mac:
            return False
        LOG.info("router: %s of %s is at %s (%016x port %d)", answer.src_ip, net.name, answer.src_mac, dpid, port)
        self.found[key] = answer.src_mac
        self.metrics.router_arp.labels(result="resolved").inc()
        self._export()
        return True

    def _at(self, vm: Vm, dpid: int, port: int, view: FabricView) -> bool:
        """Whether ``dpid``/``port`` is ``vm``'s declared port (only the VM itself answers for its ip)."""
        switch = self.model.switch_by_name.get(vm.switch)
        return switch is not None and switch.dpid == dpid and view.port_number(dpid, vm.port) == port

    def adopt(self, dump: Sequence[DumpedFlow], marker: int, app_id: int, table: int) -> bool:
        """MACs recorded in marker rules (priority ``marker``) of a flow dump; True if any was new."""
        wanted = self._targets
        learned = False
        for flow in dump:
            if flow.cookie >> 56 != app_id or flow.table != table or flow.priority != marker:
                continue
            vid, ip, mac = (flow.match.get(k) for k in ("vlan_vid", "arp_spa", "arp_sha"))
            if not (isinstance(vid, int) and isinstance(ip, str) and isinstance(mac, str)):
                continue
            net = self.model.network_by_vlan.get(vid & 0x0FFF)
            key = (net.name, Ip(ip)) if net is not None else None
            if key is not None and key in wanted and key not in self.found:
                self.found[key] = mac.lower()
                self._due[key] = 0.0  # refresh at once
                learned = True
        if learned:
            self._export()
        return learned

    def markers(self) -> Mapping[Key, str]:
        """The MACs to record in marker rules."""
        return dict(self.found)


def _request(net: Network, ip: Ip) -> bytes:
    assert net.gateway is not None
    return build_arp_request(gateway_mac(net.vlan), net.gateway.ip, ip)
