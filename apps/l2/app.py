"""The L2 switching app: learned hosts, their rules, expiry, the per-port cap and adoption.

See :mod:`apps.l2.rules` for the rules and :mod:`apps.l2.learning` for
which source MACs are learned.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from logging import INFO, WARNING
from typing import Any

from apps.base import NOTHING, AppContext, FlowRemoved, PacketIn, Reaction, SegKey, Segments, per_switch
from apps.l2.hosts import HostTable
from apps.l2.learning import learn_decision
from apps.l2.rules import PRIO_HOST, backup_group, host_key, host_rules, port_full_key, port_full_rules, static_rules
from controller.config.model import Model
from controller.effects import DumpedFlow
from controller.fabric.view import FabricView, Host
from controller.flows.pipeline import APP_L2, T_LEARN
from controller.flows.rules import GroupEntry, Rule
from controller.packets import parse_eth

LOG = logging.getLogger("vmn.l2")


class L2Switch:
    """MAC learning from the learn table's packet-ins; proactive rules per learned host."""

    name = "l2"
    app_id = APP_L2

    def __init__(self, ctx: AppContext) -> None:
        self.metrics = ctx.metrics
        self.model = ctx.model
        self.lines = ctx.lines
        following = ctx.pipeline.next_table(T_LEARN)
        assert following is not None, "the pipeline has no table after learn"
        self.after_learn = following
        self.hosts = HostTable()
        self._full: set[tuple[int, int]] = set()
        self._event_counters: dict[str, Any] = {}
        self._host_gauges: dict[str, Any] = {}

    # -- compile ---------------------------------------------------------------
    def compile(self, view: FabricView) -> Segments:
        segments = per_switch("l2", view, lambda v, d: static_rules(v, d, self.after_learn))
        for host in self.hosts.values():
            segments[host_key(host)] = self._rules(view, host)
        cap = self.model.controller.max_hosts_per_port
        for (dpid, port), count in sorted(self.hosts.per_port().items()):
            if count >= cap and dpid in view.ports:
                segments[port_full_key(dpid, port)] = port_full_rules(dpid, port, self.after_learn)
        return segments

    def groups(self, view: FabricView) -> dict[int, frozenset[GroupEntry]]:
        """The backup groups wanted on each switch (whether or not a host uses them yet)."""
        return {
            dpid: frozenset(backup_group(k, gid) for k, gid in view.backup_groups(dpid).items()) for dpid in view.dpids
        }

    def refresh(self, view: FabricView) -> None:
        """Forget hosts whose port went away: down, deleted, its switch disconnected, or no longer
        an edge port of their network (now a trunk, or changed by a reload). They are learned
        again wherever they show up next.
        """
        for key, host in list(self.hosts.items()):
            port = view.ports.get(host.dpid, {}).get(host.port)
            edge = view.edge_ports(host.dpid).get(host.port)
            if port is None or not port.up or edge is None or edge[0].vlan != host.vlan:
                self.hosts.remove(*key)
                self.lines.log(
                    LOG,
                    INFO,
                    "host %s forgotten on vlan %d: %016x port %d is %s",
                    host.mac,
                    host.vlan,
                    host.dpid,
                    host.port,
                    "gone" if port is None else "down" if not port.up else "no longer its edge",
                )
        self._full = {k for k in self._full if self.hosts.on_port(*k) >= self.model.controller.max_hosts_per_port}
        self._update_host_gauge()

    def reload(self, model: Model) -> None:
        self.model = model

    # -- events ----------------------------------------------------------------
    def packet_in(self, now: float, view: FabricView, event: PacketIn) -> Reaction:
        """A frame copied by the learn table: learn or move its source MAC."""
        eth = parse_eth(event.data)
        if eth is None or eth.vlan is None:
            return NOTHING
        decision = learn_decision(view, self.hosts, event.dpid, event.in_port, eth.vlan, eth.src)
        if decision.kind in ("known", "ignore") or decision.host is None:
            return NOTHING
        host = decision.host
        old = self.hosts.put(host)
        what = "moved" if old else "learned"
        self._host_event(what)
        self._update_host_gauge(host.vlan)
        self.lines.log(
            LOG, INFO, "host %s %s on vlan %d at %016x port %d", host.mac, what, host.vlan, host.dpid, host.port
        )
        segments = self._with_label_partners(view, [host] + ([old] if old else []))
        if old is not None:
            segments.update(self._port_cap(old.dpid, old.port))
        segments.update(self._port_cap(host.dpid, host.port))
        return Reaction(segments)

    def flow_removed(self, now: float, view: FabricView, event: FlowRemoved) -> Reaction:
        """An idle learn rule means its host fell silent: expire it everywhere."""
        vid, mac = event.match.get("vlan_vid"), event.match.get("eth_src")
        if not event.idle or not isinstance(vid, int) or not isinstance(mac, str):
            return NOTHING
        host = self.hosts.get((vid & 0x0FFF, mac))
        if host is None or host.dpid != event.dpid:
            return NOTHING
        self.hosts.remove(host.vlan, host.mac)
        self._host_event("expired")
        self._update_host_gauge()
        self.lines.log(LOG, INFO, "host %s expired on vlan %d", host.mac, host.vlan)
        return Reaction(
            {host_key(host): {}, **self._with_label_partners(view, [host]), **self._port_cap(host.dpid, host.port)}
        )

    def adopt(self, view: FabricView, dpid: int, dump: Sequence[DumpedFlow]) -> Reaction:
        """Learn the hosts whose learn rules the switch still holds (a restarted controller keeps them)."""
        adopted: list[Host] = []
        for flow in dump:
            if flow.cookie >> 56 != APP_L2 or flow.table != T_LEARN or flow.priority != PRIO_HOST:
                continue
            vid, mac, port = (flow.match.get(k) for k in ("vlan_vid", "eth_src", "in_port"))
            if not (isinstance(vid, int) and isinstance(mac, str) and isinstance(port, int)):
                continue
            decision = learn_decision(view, self.hosts, dpid, port, vid & 0x0FFF, mac)
            if decision.kind == "new" and decision.host is not None:
                self.hosts.put(decision.host)
                adopted.append(decision.host)
                self.lines.log(LOG, INFO, "host %s adopted on vlan %d at %016x port %d", mac, vid & 0x0FFF, dpid, port)
        self._update_host_gauge()
        return Reaction(self._with_label_partners(view, adopted))

    # -- helpers ---------------------------------------------------------------
    def _rules(self, view: FabricView, host: Host) -> dict[int, frozenset[Rule]]:
        return host_rules(view, host, self.after_learn, self.hosts.label_unique(host))

    def _with_label_partners(
        self, view: FabricView, hosts: Sequence[Host]
    ) -> dict[SegKey, Mapping[int, frozenset[Rule]]]:
        """Segments of the known ``hosts`` and of every host sharing a label key with one of them.

        Whether a host is labelled depends on the others with its label key
        (:meth:`HostTable.label_unique`), so a change to one changes theirs.
        """
        out: dict[SegKey, Mapping[int, frozenset[Rule]]] = {}
        for host in hosts:
            for partner in self.hosts.sharing_label(host):
                out[host_key(partner)] = self._rules(view, partner)
            if self.hosts.get((host.vlan, host.mac)) == host:
                out[host_key(host)] = self._rules(view, host)
        return out

    def _port_cap(self, dpid: int, port: int) -> dict[SegKey, Mapping[int, frozenset[Rule]]]:
        """Lock learning on a port at its host cap; unlock it below."""
        cap = self.model.controller.max_hosts_per_port
        full = self.hosts.on_port(dpid, port) >= cap
        if full and (dpid, port) not in self._full:
            self.lines.log(LOG, WARNING, "port %d of %016x reached %d hosts: learning stopped there", port, dpid, cap)
        if full:
            self._full.add((dpid, port))
        else:
            self._full.discard((dpid, port))
        return {port_full_key(dpid, port): port_full_rules(dpid, port, self.after_learn) if full else {}}

    def _host_event(self, event: str) -> None:
        """Count a host event in ``vmn_host_events_total`` (the labelled child looked up once)."""
        counter = self._event_counters.get(event)
        if counter is None:
            counter = self._event_counters[event] = self.metrics.host_events.labels(event=event)
        counter.inc()

    def _update_host_gauge(self, vlan: int | None = None) -> None:
        """Set ``vmn_hosts_learned`` of every network, or only of the networks on ``vlan`` (a learned host)."""
        counts = self.hosts.count_by_vlan()
        for net in self.model.networks:
            if vlan is None or net.vlan == vlan:
                gauge = self._host_gauges.get(net.name)
                if gauge is None:
                    gauge = self._host_gauges[net.name] = self.metrics.hosts_learned.labels(network=net.name)
                gauge.set(counts.get(net.vlan, 0))
