"""The router app: gateways and routing between the networks a router joins, in table ``route``;
a router's uplink (source NAT, floating IPs) on the uplink's switch.

Rules: :mod:`apps.router.rules` and :mod:`apps.router.uplink`; MACs of VMs
without a declared ``mac``: :mod:`apps.router.resolve`; upstream gateways'
MACs: :mod:`apps.router.upstream`. Routing happens at the first switch a packet
meets; the fabric carries each routed network to the switches of its
router's other networks (:meth:`controller.fabric.view.FabricView.fabric`),
so the routed frame is forwarded from there like any frame of its new
network.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from apps.base import AppContext, PacketIn, Reaction, Segments
from apps.l2.rules import forward_rules
from apps.router import uplink as uplinks
from apps.router.resolve import Resolver, targets
from apps.router.rules import PRIO_ARP, TRAP_LEN, Hop, Tables, router_hops, switch_rules
from apps.router.upstream import Upstream
from controller.config.model import Model, Vm
from controller.config.routing import gateway_mac
from controller.effects import DumpedFlow
from controller.fabric.view import FabricView
from controller.flows.pipeline import APP_ROUTER, METER_PACKET_IN, T_LEARN, T_ROUTE, T_UPLINK_IN
from controller.flows.rules import OFPP_CONTROLLER, OFPVID_PRESENT, Output, Rule, make_match
from controller.metrics import StatCounter
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
        self.upstream = Upstream(ctx.model, ctx.metrics)
        self._counters: dict[str, StatCounter[int]] = {
            "dropped": StatCounter(ctx.metrics.uplink_dropped),
            "floating": StatCounter(ctx.metrics.floating_ip_packets),
            "nat": StatCounter(ctx.metrics.uplink_nat_connections),
        }
        self._counted: dict[int, dict[int, uplinks.Counted]] = {}
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
            rules += [
                uplinks.default_route_rule(networks[n], self.next.after_learn)
                for n in sorted(networks)
                if n in model.uplink_of
            ]
            rules += self._markers(view, dpid)
            segments[("router", dpid)] = {dpid: frozenset(rules)}
        self._counted = {}
        for router in model.routers:
            segments.update(self._uplink(view, router.name))
        return segments

    def _uplink(self, view: FabricView, name: str) -> Segments:
        """The segments of router ``name``'s uplink: NAT on its switch, the way there on the others."""
        model = view.model
        router = next(r for r in model.routers if r.name == name)
        up = model.uplink_by_name.get(router.uplink) if router.uplink is not None else None
        switch = model.switch_by_name.get(up.switch) if up is not None else None
        if up is None or switch is None or switch.dpid not in view.ports:
            return {}
        dpid = switch.dpid
        port = view.port_number(dpid, up.port)
        if port is None:
            return {}
        ex = uplinks.exit_of(model, router, port, self.upstream.mac(up.name), self.resolver.mac)
        assert ex is not None
        nets = [model.network_by_name[n] for n in router.networks]
        here = uplinks.inbound_rules(ex, self.next.after_learn) + uplinks.outbound_rules(ex, nets)
        marker = uplinks.marker_rule(ex)
        if marker is not None:
            here.append(marker)
        out: dict[int, set[Rule]] = {dpid: set(here)}
        for net in nets:
            vid = OFPVID_PRESENT | net.vlan
            for hop_dpid, hop in sorted(view.routes(net.vlan, dpid).items()):
                if hop_dpid != dpid:
                    rules = forward_rules(view, hop_dpid, hop, vid, gateway_mac(net.vlan), APP_ROUTER)
                    out.setdefault(hop_dpid, set()).update(rules)
        self._counted[dpid] = {**self._counted.get(dpid, {}), **uplinks.counted(ex, here)}
        return {("uplink", name): {d: frozenset(r) for d, r in sorted(out.items())}}

    def flow_stats(self, dpid: int, packets: Mapping[int, int]) -> None:
        """Packet counts of the uplink rules -> drops, floating-IP packets, NATed connections."""
        counted = self._counted.get(dpid, {})
        for kind, counter in self._counters.items():
            labels = {cookie: values for cookie, (k, values) in counted.items() if k == kind}
            counter.update(dpid, packets, labels)

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
        self.upstream.reconfigure(model)
        self._export(model)

    def tick(self, now: float, view: FabricView, ready: Collection[int]) -> Reaction:
        frames, changed = self.resolver.tick(now, view, ready)
        frames += self.upstream.tick(now, view, ready)
        return Reaction(frames=tuple(frames), recompute=changed)

    def packet_in(self, now: float, view: FabricView, event: PacketIn) -> Reaction:
        """An ARP reply to a gateway (a routed VM's MAC) or to an uplink (the upstream gateway's)."""
        if event.table == T_UPLINK_IN:
            return Reaction(recompute=self.upstream.reply(event.dpid, event.in_port, event.data, view))
        return Reaction(recompute=self.resolver.reply(event.dpid, event.in_port, event.data, view))

    def adopt(self, view: FabricView, dpid: int, dump: Sequence[DumpedFlow]) -> Reaction:
        """MACs found by a previous controller, from the marker rules of a switch's flow dump."""
        vms = self.resolver.adopt(dump, PRIO_KNOWN, APP_ROUTER, T_ROUTE)
        gateways = self.upstream.adopt(dump, uplinks.PRIO_KNOWN_GATEWAY, APP_ROUTER, T_UPLINK_IN, view)
        if not (vms or gateways):
            return Reaction()
        return Reaction(dict(self.compile(view)))

    def assume_upstream(self, mac: str) -> None:
        """Treat every uplink's upstream gateway as answering from ``mac`` (``vmn trace``)."""
        for up in self.upstream.model.uplinks:
            self.upstream.found.setdefault(up.name, mac)

    def assume_all_found(self, mac_of: Callable[[Vm], str]) -> None:
        """Treat every VM to resolve as answering from ``mac_of(vm)`` (``vmn trace``: as if ARP had answered)."""
        for key, vm in targets(self.resolver.model).items():
            self.resolver.found.setdefault(key, mac_of(vm))
