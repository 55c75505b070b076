"""The router app: gateways and routing between the networks a router joins, in table ``route``.

Rules: :mod:`apps.router.rules`; MACs of VMs without a declared ``mac``:
:mod:`apps.router.resolve`. Routing happens at the first switch a packet
meets; the fabric carries each routed network to the switches of its
router's other networks (:meth:`controller.fabric.view.FabricView.fabric`),
so the routed frame is forwarded from there like any frame of its new
network.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from apps.base import AppContext, PacketIn, Reaction, Segments
from apps.router.resolve import Resolver, targets
from apps.router.rules import PRIO_ARP, TRAP_LEN, Hop, Tables, router_hops, switch_rules
from controller.config.model import Model, Vm
from controller.effects import DumpedFlow
from controller.fabric.view import FabricView
from controller.flows.pipeline import APP_ROUTER, METER_PACKET_IN, T_LEARN, T_ROUTE
from controller.flows.rules import OFPP_CONTROLLER, OFPVID_PRESENT, Output, Rule, make_match
from controller.packets import ETH_ARP

PRIO_KNOWN = PRIO_ARP + 1
"""A found MAC's marker: its ARP replies, trapped like the others (read back by :meth:`RouterApp.adopt`)."""


class RouterApp:
    """Gateway ARP/ping responders, routes, and ARP resolution of routed VMs without a declared MAC."""

    name = "router"
    app_id = APP_ROUTER

    def __init__(self, ctx: AppContext) -> None:
        following = ctx.pipeline.next_table(T_ROUTE)
        after_learn = ctx.pipeline.next_table(T_LEARN)
        assert following is not None and after_learn is not None, "the pipeline has no learn or forward table"
        self.next = Tables(following, after_learn)
        self.metrics = ctx.metrics
        self.resolver = Resolver(ctx.model, ctx.metrics)
        self._export(ctx.model)

    def _export(self, model: Model) -> None:
        for router in model.routers:
            self.metrics.routed_networks.labels(router=router.name).set(len(router.networks))

    def hops(self, model: Model) -> dict[str, list[Hop]]:
        """Every router's routes (prefix -> network and MAC) under the MACs known now."""
        return {r.name: router_hops(model, r, self.resolver.mac) for r in model.routers}

    def compile(self, view: FabricView) -> Segments:
        model = view.model
        hops = self.hops(model)
        segments: Segments = {}
        for dpid in view.dpids:
            networks = {net.name: net for net, _ in view.edge_ports(dpid).values()}
            rules = switch_rules(model, [networks[n] for n in sorted(networks)], hops, self.next)
            rules += self._markers(view, dpid)
            segments[("router", dpid)] = {dpid: frozenset(rules)}
        return segments

    def _markers(self, view: FabricView, dpid: int) -> list[Rule]:
        """The found MACs of VMs on ``dpid``, as rules a restarted controller reads back."""
        switch = view.model.switch_by_dpid.get(dpid)
        out = []
        for (network, ip), mac in sorted(self.resolver.markers().items()):
            vm = next((v for v in view.model.vms if v.network == network and v.ip is not None and v.ip.ip == ip), None)
            net = view.model.network_by_name[network]
            if vm is None or switch is None or vm.switch != switch.name or net.gateway is None:
                continue
            match = make_match(
                vlan_vid=OFPVID_PRESENT | net.vlan,
                eth_type=ETH_ARP,
                arp_op=2,
                arp_tpa=str(net.gateway.ip),
                arp_spa=str(ip),
                arp_sha=mac,
            )
            trap = (Output(OFPP_CONTROLLER, TRAP_LEN),)
            out.append(Rule(APP_ROUTER, T_ROUTE, PRIO_KNOWN, match, trap, meter=METER_PACKET_IN))
        return out

    def reload(self, model: Model) -> None:
        self.metrics.routed_networks.clear()
        self.resolver.reconfigure(model)
        self._export(model)

    def tick(self, now: float, view: FabricView, ready: Collection[int]) -> Reaction:
        frames, changed = self.resolver.tick(now, view, ready)
        return Reaction(frames=tuple(frames), recompute=changed)

    def packet_in(self, now: float, view: FabricView, event: PacketIn) -> Reaction:
        """An ARP reply to a gateway: a routed VM's MAC."""
        return Reaction(recompute=self.resolver.reply(event.dpid, event.in_port, event.data, view))

    def adopt(self, view: FabricView, dpid: int, dump: Sequence[DumpedFlow]) -> Reaction:
        """MACs found by a previous controller, from the marker rules of a switch's flow dump."""
        if not self.resolver.adopt(dump, PRIO_KNOWN, APP_ROUTER, T_ROUTE):
            return Reaction()
        return Reaction(dict(self.compile(view)))

    def assume_all_found(self, mac_of: Callable[[Vm], str]) -> None:
        """Treat every VM to resolve as answering from ``mac_of(vm)`` (``vmn trace``: as if ARP had answered)."""
        for key, vm in targets(self.resolver.model).items():
            self.resolver.found.setdefault(key, mac_of(vm))
