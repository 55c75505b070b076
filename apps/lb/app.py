"""The load balancer app: rules and groups from the model, health and backend locations at run time.

Rules: :mod:`apps.lb.rules`; health checks: :mod:`apps.lb.health` (pure
state machine) driven by :mod:`apps.lb.runtime`; probe frames:
:mod:`apps.lb.probe`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence

from apps.base import AppContext, PacketIn, Reaction, Segments
from apps.lb.rules import bucket_backends, lb_group, lb_rules
from apps.lb.runtime import LbRuntime, LbUpdate, Location
from controller.config.model import LoadBalancer, Model
from controller.fabric.view import FabricView
from controller.flows.pipeline import APP_LB, T_LB
from controller.flows.rules import GroupEntry, Rule
from controller.metrics import StatCounter


def _reaction(update: LbUpdate) -> Reaction:
    return Reaction(frames=tuple(update.frames), recompute=update.changed)


class LoadBalancerApp:
    """VIPs, select groups, health probes and their trapped replies, connection counts."""

    name = "lb"
    app_id = APP_LB

    def __init__(self, ctx: AppContext) -> None:
        self.runtime = LbRuntime(ctx.model, ctx.metrics, ctx.now)
        self.connections: StatCounter[tuple[str, str]] = StatCounter(ctx.metrics.lb_connections)
        following = ctx.pipeline.next_table(T_LB)
        assert following is not None, "the pipeline has no table after lb"
        self.after_lb = following

    def _members(self, view: FabricView, dpid: int) -> list[tuple[LoadBalancer, int]]:
        vlans = {net.name: net.vlan for net, _ in view.edge_ports(dpid).values()}
        return [(lb, vlans[lb.network]) for lb in view.model.load_balancers if lb.network in vlans]

    def compile(self, view: FabricView) -> Segments:
        segments: Segments = {}
        for dpid in view.dpids:
            rules = {Rule(APP_LB, T_LB, 0, goto=self.after_lb)}
            for lb, vlan in self._members(view, dpid):
                rules.update(lb_rules(lb, vlan, self.runtime, dpid, self.after_lb))
            segments[("lb", dpid)] = {dpid: frozenset(rules)}
        return segments

    def groups(self, view: FabricView) -> dict[int, frozenset[GroupEntry]]:
        """The select group of each balancer on each switch of its network."""
        return {
            dpid: frozenset(lb_group(lb, vlan, self.runtime) for lb, vlan in self._members(view, dpid))
            for dpid in view.dpids
        }

    def refresh(self, view: FabricView) -> None:
        """Locate backends whose VM declares a MAC (they move only with ports or the model)."""
        self.runtime.locate_declared(view)

    def reload(self, model: Model) -> None:
        self.runtime.reconfigure(model)

    def tick(self, now: float, view: FabricView, ready: Collection[int]) -> Reaction:
        return _reaction(self.runtime.tick(now, view, ready))

    def packet_in(self, now: float, view: FabricView, event: PacketIn) -> Reaction:
        """A trapped health-probe reply, or an ARP reply to a VIP."""
        return _reaction(self.runtime.packet_in(now, event.dpid, event.in_port, event.data))

    def group_stats(self, dpid: int, groups: Mapping[int, GroupEntry], buckets: Mapping[int, Sequence[int]]) -> None:
        """Bucket counts -> ``vmn_lb_backend_connections_total`` (each new connection meets its group once)."""
        counts = bucket_backends(self.runtime.model.load_balancers, groups, buckets)
        self.connections.update(dpid, counts, {key: key for key in counts})

    def assume_located(self, network: str, ip: str, location: Location) -> None:
        """Treat backend ``ip`` of ``network`` as found at ``location`` (``vmn trace``: as if ARP had answered)."""
        self.runtime.located[(network, ipaddress.IPv4Address(ip))] = location
