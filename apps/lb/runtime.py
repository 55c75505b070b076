"""Runtime state of the load balancers: backend health and where each backend is.

Wraps :class:`apps.lb.health.HealthChecker` with what it needs from
the fabric: a backend's MAC and port. A backend VM with a declared ``mac``
is located from the file; any other is located by ARP (a request from the
VIP to its port, or to every edge port of its network when no VM has its
ip) and the trapped reply. Probes go out as packet-outs straight to the
backend's port. Nothing here touches a socket: methods return frames to
send, and whether the balancers' rules must be recomputed.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from apps.lb.health import HealthChecker, Transition
from apps.lb.probe import build_arp_request, parse_probe_reply, vip_mac
from controller.config.model import LoadBalancer, Model, Vm
from controller.effects import Frame
from controller.fabric.view import FabricView
from controller.metrics import Metrics

LOG = logging.getLogger("vmn.lb")
PROBE_PORT_BASE = 0xA000
PROBE_PORT_MASK = 0xFC00
PROBE_PORTS = range(PROBE_PORT_BASE, PROBE_PORT_BASE + 0x400)
"""Source ports of TCP probes: one maskable block (40960-41983), trapped by one rule."""

Ip = ipaddress.IPv4Address


BackendKey = tuple[str, Ip]
"""(network name, backend ip)."""


@dataclass(frozen=True)
class Location:
    mac: str
    dpid: int
    port: int


@dataclass
class LbUpdate:
    """What an event produced: frames to send, and whether rules must be recomputed."""

    frames: list[Frame] = field(default_factory=list)
    changed: bool = False

    def merge(self, other: LbUpdate) -> LbUpdate:
        self.frames += other.frames
        self.changed |= other.changed
        return self


class LbRuntime:
    """Backend health and locations for the balancers of one model."""

    def __init__(self, model: Model, metrics: Metrics, now: float) -> None:
        self.metrics = metrics
        self.model = model
        self.checker = HealthChecker(model.load_balancers, now, PROBE_PORTS)
        self.located: dict[BackendKey, Location] = {}
        """(network, backend ip) -> where it is: addresses are per network, as isolation is."""
        self._export_all()

    def reconfigure(self, model: Model) -> None:
        """Adopt a reloaded model; backends that stay keep their health."""
        self.model = model
        self.checker.reconfigure(model.load_balancers)
        wanted = {(lb.network, b.ip) for lb in model.load_balancers for b in lb.backends}
        self.located = {key: loc for key, loc in self.located.items() if key in wanted}
        self._export_all()

    def up_backends(self, lb_name: str) -> frozenset[Ip]:
        return self.checker.up_backends(lb_name)

    def _export_all(self) -> None:
        for (lb, ip), health in sorted(self.checker.health().items()):
            self.metrics.lb_backend_up.labels(lb=lb, backend=str(ip)).set(1 if health.up else 0)

    def _record_transitions(self, transitions: Collection[Transition]) -> bool:
        for t in transitions:
            LOG.warning("lb %s backend %s %s: %s", t.lb, t.backend, "up" if t.up else "down", t.reason)
            self.metrics.lb_backend_up.labels(lb=t.lb, backend=str(t.backend)).set(1 if t.up else 0)
        return bool(transitions)

    # -- locating ------------------------------------------------------------
    def locate_declared(self, view: FabricView) -> bool:
        """Locate backends whose VM declares a MAC; True if anything changed."""
        changed = False
        for lb in self.model.load_balancers:
            for backend in lb.backends:
                vm = self._vm_of(lb, backend.ip)
                if vm is None or vm.mac is None:
                    continue
                switch = self.model.switch_by_name[vm.switch]
                port = view.port_number(switch.dpid, vm.port)
                if port is None:
                    continue
                loc = Location(vm.mac, switch.dpid, port)
                if self.located.get((lb.network, backend.ip)) != loc:
                    self.located[(lb.network, backend.ip)] = loc
                    changed = True
        return changed

    def _vm_of(self, lb: LoadBalancer, ip: Ip) -> Vm | None:
        return next((v for v in self.model.vms if v.ip is not None and v.ip.ip == ip and v.network == lb.network), None)

    def _arp_targets(self, view: FabricView, lb: LoadBalancer, ip: Ip, ready: Collection[int]) -> list[Frame]:
        frame = build_arp_request(vip_mac(str(lb.vip)), lb.vip, ip)
        vm = self._vm_of(lb, ip)
        out = []
        for dpid in sorted(ready):
            for port, (net, port_vm) in sorted(view.edge_ports(dpid).items()):
                if net.name != lb.network:
                    continue
                if vm is None or port_vm is vm:
                    out.append((dpid, port, frame))
        return out

    # -- events ----------------------------------------------------------------
    def tick(self, now: float, view: FabricView, ready: Collection[int]) -> LbUpdate:
        """Expire unanswered probes and send the due ones (ARP first where unlocated).

        Declared locations are refreshed by :meth:`locate_declared` on every
        recompute (they change only with ports or the model), not here.
        """
        update = LbUpdate(changed=self._record_transitions(self.checker.expire(now)))
        by_name = {lb.name: lb for lb in self.model.load_balancers}
        for probe in self.checker.due(now):
            loc = self.located.get((by_name[probe.lb].network, probe.backend))
            if loc is not None and loc.dpid in ready:
                update.frames.append((loc.dpid, loc.port, probe.frame(loc.mac)))
                continue
            targets = self._arp_targets(view, by_name[probe.lb], probe.backend, ready)
            if not targets:
                self.checker.unsent(probe)  # its switch is not connected: no verdict
            update.frames += targets  # unlocated: ARP now; this probe times out
        return update

    def packet_in(self, now: float, dpid: int, port: int, data: bytes) -> LbUpdate:
        """A trapped probe reply: locate by ARP, record TCP/ICMP check results."""
        reply = parse_probe_reply(data)
        update = LbUpdate()
        if reply is None:
            return update
        if reply.kind == "arp-reply":
            ip = ipaddress.IPv4Address(reply.src_ip)
            network = next((n.name for n in self.model.networks if n.vlan == reply.vlan), None)
            if any(b.ip == ip and lb.network == network for lb in self.model.load_balancers for b in lb.backends):
                assert network is not None
                loc = Location(reply.src_mac, dpid, port)
                if self.located.get((network, ip)) != loc:
                    LOG.info(
                        "lb backend %s of %s located at %016x port %d (%s)", ip, network, dpid, port, reply.src_mac
                    )
                    self.located[(network, ip)] = loc
                    update.changed = True
            return update
        result = self.checker.reply(now, reply)
        if result is None:
            return update
        if result.latency is not None:
            self.metrics.lb_check_latency.labels(lb=result.lb, backend=str(result.backend)).observe(result.latency)
        if result.reset is not None:
            update.frames.append((dpid, port, result.reset))
        update.changed = self._record_transitions([result.transition] if result.transition else [])
        return update
