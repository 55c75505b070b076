"""The pure controller core: events in, per-switch flow batches out.

The os-ken shim calls one method per event and sends the :class:`Batch`
objects it gets back; nothing here touches a socket. Time comes from the
``clock`` passed in.

A switch is *ready* once its flow dump has been reconciled; until then its
changes are only recorded, since the reconcile will send them all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Collection, Mapping, Optional, Sequence

from apps.base import App, Segments
from apps.flood import Flood, flood_rules
from apps.ingress import Ingress
from apps.l2.rules import PRIO_HOST, L2Switch, decide, host_key, host_rules, port_full_key, port_full_rules
from apps.acl.compile import AclFirewall, rule_origins
from apps.lb.rules import LoadBalancerApp, bucket_backends
from controller.metrics import StatCounter
from controller.fabric.view import MAX_PHYSICAL_PORT, FabricView, link_mismatches
from controller.flows.flowstate import Diff, FlowState, merge_diffs as _merge_into
from apps.l2.hosts import HostTable
from controller.metrics import Metrics
from controller.config.model import Model
from controller.packets import parse_eth
from controller.flows.pipeline import APP_INGRESS, APP_L2, APP_NAMES, T_INGRESS, T_LEARN, check_rules
from apps.lb.runtime import Frame, LbRuntime
from controller.flows.rules import OFPVID_PRESENT, GroupEntry, Rule, app_of_cookie
from controller.fabric.lldp import build_probe, parse_probe
from controller.fabric.topology import LinkKey, PortInfo, Topology

LOG = logging.getLogger("vmn.core")


@dataclass(frozen=True)
class DumpedFlow:
    """What the core reads back from a switch's flow dump."""

    cookie: int
    table: int = 0
    priority: int = 0
    match: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """One switch's change: set groups, delete flows by exact cookie, add rules, delete groups.

    Flows are sent atomically (one bundle) where the switch supports it;
    groups are set before (flows may point at them) and deleted after.
    """

    dpid: int
    deletes: tuple[int, ...]
    adds: tuple[Rule, ...]
    group_sets: tuple[GroupEntry, ...] = ()
    group_deletes: tuple[int, ...] = ()

    @staticmethod
    def of(dpid: int, deletes: Collection[int], adds: Collection[Rule],
           groups: Optional["GroupDiff"] = None) -> "Batch":
        sets, dels = groups if groups is not None else ((), ())
        return Batch(dpid, tuple(sorted(deletes)),
                     tuple(sorted(adds, key=lambda r: (r.table, r.priority, r.cookie))),
                     tuple(sorted(sets, key=lambda g: g.group_id)), tuple(sorted(dels)))

    def __bool__(self) -> bool:
        return bool(self.deletes or self.adds or self.group_sets or self.group_deletes)


GroupDiff = tuple[Collection[GroupEntry], Collection[int]]
"""Groups to add or modify, and group ids to delete."""


def _dumped_trunk_ports(present: Collection[DumpedFlow]) -> frozenset[int]:
    """Ports that a dump's ingress rules treat as trunks (tagged frames accepted)."""
    out = set()
    for flow in present:
        if app_of_cookie(flow.cookie) != APP_INGRESS or flow.table != T_INGRESS:
            continue
        port, vid = flow.match.get("in_port"), flow.match.get("vlan_vid")
        if isinstance(port, int) and isinstance(vid, int) and vid & OFPVID_PRESENT and "eth_src" not in flow.match:
            out.add(port)
    return frozenset(out)


def default_apps(lb: LbRuntime) -> list[App]:
    return [Ingress(), AclFirewall(), LoadBalancerApp(lb), L2Switch(), Flood()]


class Core:
    """Holds model, topology, learned hosts and desired flows; returns batches."""

    def __init__(self, model: Model, metrics: Optional[Metrics] = None,
                 clock: Callable[[], float] = time.monotonic,
                 apps: Optional[Sequence[App]] = None, verify: bool = False,
                 probe_secret: bytes = b"") -> None:
        self.model = model
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.lb = LbRuntime(model, self.metrics, clock())
        self.apps = list(apps) if apps is not None else default_apps(self.lb)
        self.verify = verify
        self.probe_secret = probe_secret
        """Key that authenticates our LLDP probes (the shim passes a random one)."""
        self.topology = Topology()
        self.hosts = HostTable()
        self.flows = FlowState()
        self.ready: set[int] = set()
        self._link_seen: dict[LinkKey, float] = {}
        self._mismatches: set[str] = set()
        self._port_up_at: dict[tuple[int, int], float] = {}
        self._view: Optional[FabricView] = None
        self.acl_hits: StatCounter[int] = StatCounter(self.metrics.acl_rule_hits)
        self.lb_connections: StatCounter[tuple[str, str]] = StatCounter(self.metrics.lb_connections)
        self._origins: tuple[Optional[Model], Mapping[int, tuple[str, ...]]] = (None, {})
        self.groups: dict[int, dict[int, GroupEntry]] = {}
        self._deferred: dict[int, tuple[Collection[DumpedFlow], frozenset[int], float]] = {}
        """Reconciles waiting for links: dpid -> (dumped flows, trunk ports without a link, deadline)."""
        """Groups wanted per switch: dpid -> group id -> group."""
        self.outbox: list[Frame] = []
        """Frames to packet-out (health probes); the shim sends and clears it."""
        self._last_tick: Optional[float] = None
        self.queued: list[Batch] = []
        """Batches for other switches that a reconcile caused; the shim sends and clears it."""

    # -- snapshot and recompute --------------------------------------------
    def view(self) -> FabricView:
        if self._view is None:
            self._view = FabricView(self.model, self.topology, self._probation())
        return self._view

    def _probation(self) -> frozenset[tuple[int, int]]:
        """Zero-config ports up for less than two LLDP intervals (not flooded to yet)."""
        if not self.model.zero_config:
            return frozenset()
        since = self.clock() - 2 * self.model.controller.lldp_interval
        return frozenset(k for k, t in self._port_up_at.items() if t > since)

    def tick(self) -> list[Batch]:
        """Periodic housekeeping: expire silent links, end port probation, health checks.

        After a stall of the controller itself (ticks more than two LLDP
        intervals apart) links get a fresh grace period: their probes went
        unheard because nobody was listening, not because they are down.
        """
        now = self.clock()
        if self._last_tick is not None and now - self._last_tick > 2 * self.model.controller.lldp_interval:
            for link in self.topology.links:
                self._link_seen[link] = max(self._link_seen.get(link, 0.0), now)
        self._last_tick = now
        batches = self.expire_links()
        lb = self.lb.tick(self.clock(), self.view(), self.ready)
        self.outbox += lb.frames
        if lb.changed or (self._view is not None and self._view.probation != self._probation()):
            batches += self.recompute()
        return batches + self._finish_deferred()

    def _invalidate(self) -> None:
        self._view = None

    def compile_all(self) -> Segments:
        """Every segment of every app for the current snapshot."""
        view = self.view()
        segments: Segments = {}
        for app in self.apps:
            segments.update(app.compile(view, self.hosts))
        if self.verify:
            for dpid in view.dpids:
                check_rules(r for seg in segments.values() for r in seg.get(dpid, ()))
        return segments

    def recompute(self) -> list[Batch]:
        """Recompute everything; batches for what changed on ready switches.

        Hosts whose port is no longer an edge port of their network (it became
        a trunk, or left the network on reload) are forgotten first.
        """
        self._invalidate()
        view = self.view()
        for key, host in list(self.hosts.items()):
            edge = view.edge_ports(host.dpid).get(host.port)
            if host.dpid in view.ports and (edge is None or edge[0].vlan != host.vlan):
                self.hosts.remove(*key)
        self._update_host_gauge()
        self.lb.locate_declared(view)
        diffs = self.flows.replace_all(self.compile_all())
        return self._batches(diffs, self._replace_groups(self.compile_groups()))

    def compile_groups(self) -> dict[int, dict[int, GroupEntry]]:
        """Every group of every app that has groups, per switch."""
        wanted: dict[int, dict[int, GroupEntry]] = {}
        for app in self.apps:
            groups_of = getattr(app, "groups", None)
            if groups_of is None:
                continue
            for dpid, entries in groups_of(self.view()).items():
                wanted.setdefault(dpid, {}).update({g.group_id: g for g in entries})
        return wanted

    def _replace_groups(self, wanted: dict[int, dict[int, GroupEntry]]) -> dict[int, GroupDiff]:
        out: dict[int, GroupDiff] = {}
        for dpid in sorted(set(wanted) | set(self.groups)):
            old, new = self.groups.get(dpid, {}), wanted.get(dpid, {})
            sets = [g for gid, g in sorted(new.items()) if old.get(gid) != g]
            dels = [gid for gid in sorted(old) if gid not in new]
            if sets or dels:
                out[dpid] = (sets, dels)
        self.groups = {d: g for d, g in wanted.items() if g}
        return out

    def _batches(self, diffs: Mapping[int, Diff], groups: Optional[Mapping[int, GroupDiff]] = None) -> list[Batch]:
        groups = groups or {}
        out = [Batch.of(dpid, [r.cookie for r in diffs[dpid].deletes] if dpid in diffs else [],
                        diffs[dpid].adds if dpid in diffs else [], groups.get(dpid))
               for dpid in sorted(set(diffs) | set(groups)) if dpid in self.ready]
        self._update_flow_gauges(diffs)
        return out

    def _update_flow_gauges(self, diffs: Mapping[int, Diff]) -> None:
        """Refresh ``vmn_flows_installed`` for the apps whose rules changed."""
        for dpid, diff in diffs.items():
            counts = self.flows.app_counts(dpid)
            for app in {r.app for r in diff.adds} | {r.app for r in diff.deletes}:
                self.metrics.flows_installed.labels(switch=f"{dpid:x}", app=APP_NAMES[app]).set(counts.get(app, 0))

    # -- switch lifecycle --------------------------------------------------
    def switch_up(self, dpid: int, ports: Collection[PortInfo]) -> list[Batch]:
        """A switch connected (or reconnected) with ``ports``; await its reconcile."""
        if not self.model.knows_dpid(dpid):
            LOG.warning("switch %016x is not in the network file; not programming it", dpid)
        self.ready.discard(dpid)
        self._deferred.pop(dpid, None)
        self.topology.add_switch(dpid, ports)
        now = self.clock()
        self._forget_port_times(dpid)
        self._port_up_at.update({(dpid, p.port_no): now for p in ports if p.up})
        self.metrics.switches_connected.set(len(self.topology.ports))
        return self.recompute()

    def reconcile(self, dpid: int, present: Collection[DumpedFlow]) -> Batch:
        """Bring a switch holding flows ``present`` to the desired state.

        Hosts whose learn rules the switch still holds are adopted first (a
        restarted controller keeps what its predecessor learned). Then flows
        whose cookie is wanted stay untouched (counters and age survive),
        others are deleted by exact cookie, and missing rules are added.

        If the dump has trunk rules on ports where no link is known yet (a
        restarted controller has not rediscovered them), the reconcile waits,
        and the switch keeps forwarding on the flows it has, until LLDP finds
        those links or three LLDP intervals pass; :meth:`lldp_in` and
        :meth:`tick` then return the batch. Meanwhile this returns an empty one.
        """
        missing = _dumped_trunk_ports(present) - self.view().trunk_ports(dpid)
        if missing and dpid not in self._deferred:
            deadline = self.clock() + 3 * self.model.controller.lldp_interval + 0.5
            self._deferred[dpid] = (present, missing, deadline)
            LOG.info("switch %016x: reconcile waits for links on ports %s", dpid,
                     ", ".join(map(str, sorted(missing))))
            return Batch.of(dpid, [], [])
        self._deferred.pop(dpid, None)
        return self._reconcile_now(dpid, present)

    def _finish_deferred(self) -> list[Batch]:
        """Reconciles whose links were found again, or whose wait is over.

        Hosts of all of them are adopted first, so no switch drops the rules
        for hosts behind another that is about to be reconciled.
        """
        now = self.clock()
        done = {dpid: present for dpid, (present, ports, deadline) in sorted(self._deferred.items())
                if now >= deadline or not ports - self.view().trunk_ports(dpid)}
        for dpid in done:
            del self._deferred[dpid]
        diffs: dict[int, Diff] = {}
        for dpid, present in done.items():
            _merge_into(diffs, self._adopt_hosts(dpid, present))
        out = [self._reconcile_now(dpid, present, adopt=False) for dpid, present in done.items()]
        return out + self._batches({d: x for d, x in diffs.items() if d not in done})

    def _reconcile_now(self, dpid: int, present: Collection[DumpedFlow], adopt: bool = True) -> Batch:
        started = self.clock()
        if adopt:
            diffs = self._adopt_hosts(dpid, present)
            self.queued += self._batches({d: x for d, x in diffs.items() if d != dpid})
        cookies = {f.cookie for f in present}
        self._trust_flooded_ports(dpid, cookies)
        wanted = {r.cookie: r for r in self.flows.rules(dpid)}
        self.ready.add(dpid)
        groups = (list(self.groups.get(dpid, {}).values()), ())
        batch = Batch.of(dpid, cookies - set(wanted), [r for c, r in wanted.items() if c not in cookies], groups)
        LOG.info("switch %016x reconciled: %d flows kept, %d stale removed, %d added", dpid,
                 len(cookies) - len(batch.deletes), len(batch.deletes), len(batch.adds))
        self.metrics.reconcile_seconds.observe(self.clock() - started)
        return batch

    def _trust_flooded_ports(self, dpid: int, cookies: set[int]) -> None:
        """End probation on ``dpid`` if the switch already floods exactly as without it.

        A restarted controller then keeps flooding where its predecessor did.
        """
        if not any(k[0] == dpid for k in self.view().probation):
            return
        trusted = FabricView(self.model, self.topology)
        if all(r.cookie in cookies for r in flood_rules(trusted, dpid)):
            self._forget_port_times(dpid)
            self._invalidate()  # probation only shapes this switch's flood rules
            self.flows.replace(("flood", dpid), {dpid: frozenset(flood_rules(self.view(), dpid))})

    def _forget_port_times(self, dpid: int) -> None:
        for key in [k for k in self._port_up_at if k[0] == dpid]:
            del self._port_up_at[key]

    def _adopt_hosts(self, dpid: int, present: Collection[DumpedFlow]) -> dict[int, Diff]:
        """Learn the hosts whose learn rules ``present`` holds; the flow changes on every switch."""
        diffs: dict[int, Diff] = {}
        for flow in present:
            if app_of_cookie(flow.cookie) != APP_L2 or flow.table != T_LEARN or flow.priority != PRIO_HOST:
                continue
            vid, mac, port = (flow.match.get(k) for k in ("vlan_vid", "eth_src", "in_port"))
            if not (isinstance(vid, int) and isinstance(mac, str) and isinstance(port, int)):
                continue
            decision = decide(self.view(), self.hosts, dpid, port, vid & 0x0FFF, mac)
            if decision.kind == "new" and decision.host is not None:
                self.hosts.put(decision.host)
                _merge_into(diffs, self.flows.replace(host_key(decision.host),
                                                      host_rules(self.view(), decision.host)))
                LOG.info("host %s adopted on vlan %d at %016x port %d", mac, vid & 0x0FFF, dpid, port)
        self._update_host_gauge()
        return diffs

    def switch_down(self, dpid: int) -> list[Batch]:
        self.ready.discard(dpid)
        self._deferred.pop(dpid, None)
        if self.topology.remove_switch(dpid):
            self._links_changed()
        self.metrics.switches_connected.set(len(self.topology.ports))
        return self.recompute()

    def port_changed(self, dpid: int, port: PortInfo, deleted: bool = False) -> list[Batch]:
        """A port was added, modified or deleted; links on a dead port go at once."""
        known = self.topology.ports.get(dpid, {}).get(port.port_no)
        if known == port and not deleted:
            return []
        if port.up and not (known and known.up):
            self._port_up_at[(dpid, port.port_no)] = self.clock()
        LOG.info("switch %016x port %d %s", dpid, port.port_no,
                 "deleted" if deleted else ("up" if port.up else "down"))
        gone = (self.topology.delete_port(dpid, port.port_no) if deleted
                else self.topology.set_port(dpid, port))
        for link in sorted(gone):
            LOG.info("link down %016x:%d <-> %016x:%d (port down)", link.a_dpid, link.a_port,
                     link.b_dpid, link.b_port)
        if gone:
            self._links_changed()
        return self.recompute()

    # -- learning ----------------------------------------------------------
    def packet_in(self, dpid: int, in_port: int, data: bytes) -> list[Batch]:
        """A packet copied to the controller by the learn table."""
        eth = parse_eth(data)
        if eth is None or eth.vlan is None:
            return []
        decision = decide(self.view(), self.hosts, dpid, in_port, eth.vlan, eth.src)
        if decision.kind in ("known", "ignore") or decision.host is None:
            return []
        host = decision.host
        old = self.hosts.put(host)
        event = "moved" if old else "learned"
        self.metrics.host_events.labels(event=event).inc()
        self._update_host_gauge()
        LOG.info("host %s %s on vlan %d at %016x port %d", host.mac, event, host.vlan, dpid, in_port)
        diffs = self.flows.replace(host_key(host), host_rules(self.view(), host))
        if old is not None:
            _merge_into(diffs, self._port_cap(old.dpid, old.port))
        _merge_into(diffs, self._port_cap(dpid, in_port))
        return self._batches(diffs)

    def _port_cap(self, dpid: int, port: int) -> dict[int, Diff]:
        """Lock learning on a port at its host cap; unlock it below."""
        key = port_full_key(dpid, port)
        full = self.hosts.on_port(dpid, port) >= self.model.controller.max_hosts_per_port
        if full and not self.flows.segment(key):
            LOG.warning("port %d of %016x reached %d hosts: learning stopped there",
                        port, dpid, self.model.controller.max_hosts_per_port)
        return self.flows.replace(key, port_full_rules(dpid, port) if full else {})

    def flow_removed(self, dpid: int, cookie: int, match: Mapping[str, object], idle: bool) -> list[Batch]:
        """A flow left a switch; an idle learn rule means its host fell silent."""
        if not idle or app_of_cookie(cookie) != APP_L2:
            return []
        vid, mac = match.get("vlan_vid"), match.get("eth_src")
        if not isinstance(vid, int) or not isinstance(mac, str):
            return []
        host = self.hosts.get((vid & 0x0FFF, mac))
        if host is None or host.dpid != dpid:
            return []
        self.hosts.remove(host.vlan, host.mac)
        self.metrics.host_events.labels(event="expired").inc()
        self._update_host_gauge()
        LOG.info("host %s expired on vlan %d", host.mac, host.vlan)
        diffs = self.flows.replace(host_key(host), {})
        _merge_into(diffs, self._port_cap(host.dpid, host.port))
        return self._batches(diffs)

    def _update_host_gauge(self) -> None:
        counts = self.hosts.count_by_vlan()
        for net in self.model.networks:
            self.metrics.hosts_learned.labels(network=net.name).set(counts.get(net.vlan, 0))

    # -- configuration -----------------------------------------------------
    def reload(self, model: Model) -> list[Batch]:
        """Switch to a new validated model and send only the difference."""
        self.model = model
        self.lb.reconfigure(model)
        return self.recompute()

    def lb_packet_in(self, dpid: int, in_port: int, data: bytes) -> list[Batch]:
        """A trapped health-probe reply (or ARP reply to a VIP)."""
        update = self.lb.packet_in(self.clock(), dpid, in_port, data)
        self.outbox += update.frames
        return self.recompute() if update.changed else []

    # -- statistics --------------------------------------------------------
    def acl_stats(self, dpid: int, packets: Mapping[int, int]) -> int:
        """A switch's ACL flow packet counts (cookie -> packets); returns packets newly counted."""
        if self._origins[0] is not self.model:
            app = next((a for a in self.apps if isinstance(a, AclFirewall)), None)
            plan = self.view().acl_plan
            origins = app.compiler.origins(self.model, plan) if app else rule_origins(self.model, plan)
            self._origins = (self.model, origins)
        return self.acl_hits.update(dpid, packets, self._origins[1])

    def group_stats(self, dpid: int, buckets: Mapping[int, Sequence[int]]) -> int:
        """A switch's group bucket packet counts (group id -> per bucket); returns connections counted.

        A load balancer's bucket counts the new connections sent to its backend.
        """
        counts = bucket_backends(self.model.load_balancers, self.groups.get(dpid, {}), buckets)
        return self.lb_connections.update(dpid, counts, {key: key for key in counts})

    # -- links -------------------------------------------------------------
    def probes(self) -> list[tuple[int, int, bytes]]:
        """LLDP probes to send now: (dpid, port, frame) for each probed port of ready switches.

        Declared VM ports are not probed; in zero-config every port is.
        """
        view = self.view()
        out = []
        for dpid in view.dpids:  # also switches whose reconcile waits for these very links
            vm_ports = {p for p, (_, vm) in view.edge_ports(dpid).items() if vm is not None}
            for port in sorted(self.topology.live_ports(dpid)):
                if port < MAX_PHYSICAL_PORT and port not in vm_ports:
                    out.append((dpid, port, build_probe(dpid, port, self.probe_secret)))
        return out

    def lldp_in(self, dpid: int, in_port: int, data: bytes) -> list[Batch]:
        """An LLDP frame arrived; one of our probes means a link."""
        origin = parse_probe(data, self.probe_secret)
        if origin is None or origin == (dpid, in_port) or origin[0] not in self.topology.ports:
            return []
        link = LinkKey.of(origin[0], origin[1], dpid, in_port)
        self._link_seen[link] = self.clock()
        if not self.topology.add_link(link):
            return []
        LOG.info("link up %016x:%d <-> %016x:%d", link.a_dpid, link.a_port, link.b_dpid, link.b_port)
        self._links_changed()
        return self.recompute() + self._finish_deferred()

    def expire_links(self) -> list[Batch]:
        """Drop links whose probes stopped for three intervals."""
        deadline = self.clock() - 3 * self.model.controller.lldp_interval - 0.5
        gone = {l for l in self.topology.links if self._link_seen.get(l, 0.0) < deadline}
        if not gone:
            return []
        for link in sorted(gone):
            self.topology.links.discard(link)
            LOG.info("link down %016x:%d <-> %016x:%d (probes stopped)", link.a_dpid, link.a_port,
                     link.b_dpid, link.b_port)
        self._links_changed()
        return self.recompute()

    def _links_changed(self) -> None:
        self.metrics.links_up.set(len(self.topology.links))
        self._invalidate()
        missing, extra = link_mismatches(self.model, self.view())
        self.metrics.link_mismatches.set(len(missing) + len(extra))
        now = {f"declared link not discovered: {t}" for t in missing}
        now |= {f"discovered link not declared: {t}" for t in extra}
        for text in sorted(now - self._mismatches):
            LOG.warning(text)
        self._mismatches = now
