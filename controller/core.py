"""The pure controller core: a dispatcher from events to apps, and from apps' rules to batches.

The os-ken shim calls one method per event and sends the :class:`Effects`
it gets back; nothing here touches a socket. Time comes from the ``clock``
passed in. The core names no app: it compiles every app's segments, keeps
the desired flow state and groups, diffs, and hands each event to the apps
that declared the capability (see :mod:`apps.base`).

A switch is *ready* once its flow dump has been reconciled; until then its
changes are only recorded, since the reconcile will send them all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from apps.base import (
    Adopts,
    App,
    FlowRemoved,
    HasGroups,
    PacketIn,
    Reaction,
    ReadsFlowStats,
    ReadsGroupStats,
    Refreshes,
    Reloads,
    Segments,
    Ticks,
    TrapsPackets,
    WatchesFlows,
)
from controller.config.model import Model, PortRef
from controller.effects import Batch, DumpedFlow, Effects, GroupDiff
from controller.fabric.crossing import trunk_ports_in_dump
from controller.fabric.links import LinkMonitor, describe, liveness
from controller.fabric.topology import PortInfo, Topology
from controller.fabric.view import FabricView
from controller.flows.flowstate import Diff, FlowState
from controller.flows.pipeline import LINKS, Pipeline
from controller.flows.rules import GroupEntry, app_of_cookie
from controller.gc_pause import paused_gc
from controller.metrics import Metrics
from controller.pending import GATHER_SECONDS, PendingReconciles
from controller.precompile import StaticCompiler, is_static

LOG = logging.getLogger("vmn.core")


class Core:
    """Holds model, topology, the apps and the desired flows; returns :class:`Effects`."""

    def __init__(
        self,
        model: Model,
        apps: Sequence[App],
        pipeline: Pipeline,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe_secret: bytes = b"",
        verify: bool = False,
    ) -> None:
        self.model = model
        self.apps = list(apps)
        self.pipeline = pipeline
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.verify = verify
        """Also check that no two rules of a switch conflict (tests, ``vmn trace``); costs a pass."""
        self.topology = Topology()
        self.links = LinkMonitor(self.topology, self.metrics, probe_secret)
        self.flows = FlowState()
        self.groups: dict[int, dict[int, GroupEntry]] = {}
        """Groups wanted per switch: dpid -> group id -> group."""
        self.ready: set[int] = set()
        self._deferred = PendingReconciles()
        self._port_up_at: dict[tuple[int, int], float] = {}
        self._view: FabricView | None = None
        self._flow_gauges: dict[tuple[int, int], Any] = {}
        self.moves: dict[str, tuple[str, PortRef]] = {}
        """VMs being migrated -> destination (switch, port) (:meth:`migrate`)."""
        self.precompiled = StaticCompiler(self.apps, pipeline)
        """The static apps' rules by view, some compiled ahead (:meth:`prepare`)."""
        self._dynamic = [a for a in self.apps if not is_static(a)]
        by_id = {a.app_id: a for a in self.apps}
        self._trappers = {a.name: a for a in self.apps if isinstance(a, TrapsPackets)}
        self._watchers = {i: a for i, a in by_id.items() if isinstance(a, WatchesFlows)}
        self._flow_readers = {i: a for i, a in by_id.items() if isinstance(a, ReadsFlowStats)}
        self._group_readers = {i: a for i, a in by_id.items() if isinstance(a, ReadsGroupStats)}

    def app(self, name: str) -> App:
        """The enabled app called ``name``; raises KeyError."""
        for app in self.apps:
            if app.name == name:
                return app
        raise KeyError(name)

    # -- snapshot and compile ----------------------------------------------
    def view(self) -> FabricView:
        if self._view is None:
            self._view = FabricView(self.model, self.topology, self._probation(), self.moves)
        return self._view

    def _probation(self) -> frozenset[tuple[int, int]]:
        """Zero-config ports up for less than two LLDP intervals (not flooded to yet)."""
        if not self.model.zero_config:
            return frozenset()
        since = self.clock() - 2 * self.model.controller.lldp_interval
        return frozenset(k for k, t in self._port_up_at.items() if t > since)

    def _invalidate(self) -> None:
        self._view = None

    def compile_all(self, view: FabricView | None = None) -> Segments:
        """Every segment of every app for ``view`` (default: the current snapshot)."""
        view = view or self.view()
        segments: Segments = {}
        for app in self._dynamic:
            segments.update(app.compile(view))
        segments.update(self.precompiled.compile(view, self.verify))
        if self.verify:
            for dpid in view.dpids:
                self.pipeline.check_rules(r for seg in segments.values() for r in seg.get(dpid, ()))
        return segments

    def _compile_parts(self, view: FabricView) -> Iterator[Segments]:
        """Each dynamic app's segments, one app at a time, then the static apps' (kept or compiled)."""
        for app in self._dynamic:
            yield app.compile(view)
        yield self.precompiled.compile(view, self.verify)

    def prepare(self) -> int:
        """Compile ahead, for each declared switch not connected, the static apps' rules of its connect.

        Call after a network file is loaded or reloaded (after sending the
        reload's changes): when such a switch connects next, into the
        topology of now, its rules are checked, encoded and ready
        (:mod:`controller.precompile`). Returns how many rules were prepared.
        """
        count = 0
        for switch in self.model.switches:
            if switch.dpid in self.topology.ports:
                continue
            ahead = self.topology.copy()
            ahead.add_switch(switch.dpid, ())
            count += self.precompiled.prepare(FabricView(self.model, ahead, self._probation(), self.moves))
        return count

    def compile_groups(self) -> dict[int, dict[int, GroupEntry]]:
        """Every group of every app that has groups, per switch."""
        wanted: dict[int, dict[int, GroupEntry]] = {}
        for app in self.apps:
            if isinstance(app, HasGroups):
                for dpid, entries in app.groups(self.view()).items():
                    wanted.setdefault(dpid, {}).update({g.group_id: g for g in entries})
        return wanted

    def recompute(self) -> Effects:
        """Recompute everything; batches for what changed on ready switches.

        The cyclic garbage collector is paused meanwhile (:func:`paused_gc`):
        a compile makes millions of small objects without reference cycles,
        and each generation-2 collection it would trigger walks all of them
        again (about a third of a large compile's time). Each app's new rules replace
        the state's before the next app compiles (:meth:`FlowState.replace_parts`); the
        static apps' come last, kept or compiled together (:mod:`controller.precompile`)."""
        with paused_gc():
            self._invalidate()
            view = self.view()
            for app in self.apps:
                if isinstance(app, Refreshes):
                    app.refresh(view)
            diffs = self.flows.replace_parts(self._compile_parts(view))
            if self.verify:
                for dpid in view.dpids:
                    self.pipeline.check_rules(self.flows.rules(dpid))
            return self._effects(diffs, self._replace_groups(self.compile_groups()))

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

    def _effects(
        self,
        diffs: Mapping[int, Diff],
        groups: Mapping[int, GroupDiff] | None = None,
        frames: Sequence[tuple[int, int, bytes]] = (),
    ) -> Effects:
        """Batches of ``diffs`` and ``groups`` for ready switches (every added rule checked), and ``frames``."""
        groups = groups or {}
        # Each distinct rule once (equal rules check alike): the union reuses the sets' stored hashes.
        self.pipeline.check_each(self.precompiled.unchecked(set().union(*[d.adds for d in diffs.values()])))
        batches = tuple(
            Batch.of(
                dpid,
                [r.cookie for r in diffs[dpid].deletes] if dpid in diffs else [],
                diffs[dpid].adds if dpid in diffs else [],
                groups.get(dpid),
            )
            for dpid in sorted(set(diffs) | set(groups))
            if dpid in self.ready
        )
        self._update_flow_gauges(diffs)
        return Effects(batches, tuple(frames))

    def _update_flow_gauges(self, diffs: Mapping[int, Diff]) -> None:
        """Refresh ``vmn_flows_installed`` for the apps whose rules changed (each labelled child looked up once)."""
        for dpid, diff in diffs.items():
            counts = self.flows.app_counts(dpid)
            for app in {r.app for r in diff.adds} | {r.app for r in diff.deletes}:
                if (gauge := self._flow_gauges.get((dpid, app))) is None:
                    labels = {"switch": f"{dpid:x}", "app": self.pipeline.app_name(app)}
                    gauge = self._flow_gauges[(dpid, app)] = self.metrics.flows_installed.labels(**labels)
                gauge.set(counts.get(app, 0))

    def _react(self, reaction: Reaction) -> Effects:
        """Apply an app's reaction: replace its segments (or recompute) and pass its frames on."""
        if reaction.recompute:
            return self.recompute() + Effects(frames=reaction.frames)
        diffs: dict[int, Diff] = {}
        for key, rules in reaction.segments.items():
            self.flows.replace_into(key, rules, diffs)
        return self._effects({d: x for d, x in diffs.items() if x}, frames=reaction.frames)

    # -- switch lifecycle --------------------------------------------------
    def switch_up(self, dpid: int, ports: Collection[PortInfo]) -> Effects:
        """A switch connected (or reconnected) with ``ports``; await its reconcile."""
        if not self.model.knows_dpid(dpid):
            LOG.warning("switch %016x is not in the network file; not programming it", dpid)
        self.ready.discard(dpid)
        self._deferred.drop(dpid)
        self.topology.add_switch(dpid, ports)
        now = self.clock()
        self._forget_port_times(dpid)
        self._port_up_at.update({(dpid, p.port_no): now for p in ports if p.up})
        self.metrics.switches_connected.set(len(self.topology.ports))
        return self.recompute()

    def reconcile(self, dpid: int, present: Collection[DumpedFlow]) -> Effects:
        """Bring a switch holding flows ``present`` to the desired state.

        Apps adopt what the dump shows first (a restarted controller keeps
        what its predecessor learned). Then flows whose cookie is wanted stay
        untouched (counters and age survive), others are deleted by exact
        cookie, and missing rules are added.

        The reconcile waits (:mod:`controller.pending`) while another
        connected switch has not delivered its dump, and while the dump has
        trunk rules on ports where no link is known yet (a restarted
        controller has not rediscovered them), at most three LLDP intervals;
        the switch keeps forwarding on the flows it has. :meth:`packet_in`
        (LLDP), a later dump and :meth:`tick` then return the batches of the
        dumps that are due, reconciled together. A dump with trunk rules on
        a port that the network file does not let be a trunk is not trusted
        to forward meanwhile: it is reconciled at once.
        """
        view = self.view()
        dumped = trunk_ports_in_dump(present)
        forbidden = sorted(p for p in dumped if not view.link_policy.may_be_trunk(dpid, p))
        missing = frozenset(dumped - set(forbidden) - view.trunk_ports(dpid))
        if forbidden:
            LOG.warning(
                "switch %016x: its flows use ports %s as trunks, which the network file does not "
                "allow; reconciling at once",
                dpid,
                ", ".join(map(str, forbidden)),
            )
            self._deferred.drop(dpid)
            return self._reconcile({dpid: present})
        if missing:
            LOG.info("switch %016x: reconcile waits for links on ports %s", dpid, ", ".join(map(str, sorted(missing))))
        wait = liveness(self.model.controller.lldp_interval) if missing else GATHER_SECONDS
        self._deferred.put(dpid, present, missing, self.clock() + wait)
        return self._finish_deferred()

    def _finish_deferred(self) -> Effects:
        """Reconcile the waiting dumps that are due (:meth:`PendingReconciles.due`)."""
        if not self._deferred:
            return Effects()
        awaited = any(
            d not in self.ready and d not in self._deferred and self.model.knows_dpid(d) for d in self.topology.ports
        )
        done = self._deferred.due(self.clock(), self.view().trunk_ports, awaited)
        return self._reconcile(done) if done else Effects()

    def _reconcile(self, dumps: Mapping[int, Collection[DumpedFlow]]) -> Effects:
        """Reconcile several switches: all adopt first, so none drops rules another is about to adopt."""
        diffs: dict[int, Diff] = {}
        for dpid, present in dumps.items():
            for app in self.apps:
                if isinstance(app, Adopts):
                    reaction = app.adopt(self.view(), dpid, list(present))
                    for key, rules in reaction.segments.items():
                        self.flows.replace_into(key, rules, diffs)
        others = self._effects({d: x for d, x in diffs.items() if x and d not in dumps})
        return Effects(tuple(self._reconcile_now(d, p) for d, p in dumps.items())) + others

    def _reconcile_now(self, dpid: int, present: Collection[DumpedFlow]) -> Batch:
        started = self.clock()
        cookies = {f.cookie for f in present}
        self._trust_flooded_ports(dpid, cookies)
        wanted = {r.cookie: r for r in self.flows.rules(dpid)}
        self.ready.add(dpid)
        groups = (list(self.groups.get(dpid, {}).values()), ())
        batch = Batch.of(dpid, cookies - set(wanted), [r for c, r in wanted.items() if c not in cookies], groups)
        LOG.info(
            "switch %016x reconciled: %d flows kept, %d stale removed, %d added",
            dpid,
            len(cookies) - len(batch.deletes),
            len(batch.deletes),
            len(batch.adds),
        )
        self.metrics.reconcile_seconds.observe(self.clock() - started)
        return batch

    def _trust_flooded_ports(self, dpid: int, cookies: set[int]) -> None:
        """End probation on ``dpid`` if the switch already holds every rule it would have without it.

        A restarted controller then keeps flooding where its predecessor did.
        """
        if not any(k[0] == dpid for k in self.view().probation):
            return
        trusted = self.compile_all(FabricView(self.model, self.topology))
        without = {r.cookie for seg in trusted.values() for r in seg.get(dpid, ())}
        if without - {r.cookie for r in self.flows.rules(dpid)} <= cookies:
            self._forget_port_times(dpid)
            self._invalidate()
            self.flows.replace_all(self.compile_all())

    def _forget_port_times(self, dpid: int) -> None:
        for key in [k for k in self._port_up_at if k[0] == dpid]:
            del self._port_up_at[key]

    def release(self, dpid: int) -> None:
        """Another controller programs ``dpid`` now (HA): it is no longer ready; a pending reconcile is dropped.

        Its flows, topology and the apps' state stay; a later takeover
        reconciles it again from its flow dump, as after a restart.
        """
        self.ready.discard(dpid)
        self._deferred.drop(dpid)

    def switch_down(self, dpid: int) -> Effects:
        self.ready.discard(dpid)
        self._deferred.drop(dpid)
        if self.topology.remove_switch(dpid):
            self._links_changed()
        self.metrics.switches_connected.set(len(self.topology.ports))
        return self.recompute()

    def port_changed(self, dpid: int, port: PortInfo, deleted: bool = False) -> Effects:
        """A port was added, modified or deleted; links on a dead port go at once."""
        known = self.topology.ports.get(dpid, {}).get(port.port_no)
        if known == port and not deleted:
            return Effects()
        if port.up and not (known and known.up):
            self._port_up_at[(dpid, port.port_no)] = self.clock()
        LOG.info("switch %016x port %d %s", dpid, port.port_no, "deleted" if deleted else ("up" if port.up else "down"))
        gone = self.topology.delete_port(dpid, port.port_no) if deleted else self.topology.set_port(dpid, port)
        for link in sorted(gone):
            LOG.info("link down %s (port down)", describe(link))
        if gone:
            self._links_changed()
        return self.recompute()

    # -- packets and flows -------------------------------------------------
    def packet_in(self, dpid: int, table: int, in_port: int, data: bytes) -> Effects:
        """A packet a rule of ``table`` copied to the controller; handled by the table's trap owner."""
        trap = self.pipeline.trap(table)
        if trap is None:
            return Effects()
        if trap.owner == LINKS:
            return self._lldp_in(dpid, in_port, data)
        app = self._trappers.get(trap.owner)
        if app is None:
            return Effects()
        return self._react(app.packet_in(self.clock(), self.view(), PacketIn(dpid, table, in_port, data)))

    def _lldp_in(self, dpid: int, in_port: int, data: bytes) -> Effects:
        if self.links.heard(self.clock(), dpid, in_port, data, self.view()) is None:
            return Effects()
        self._links_changed()
        return self.recompute() + self._finish_deferred()

    def flow_removed(self, dpid: int, cookie: int, match: Mapping[str, object], idle: bool) -> Effects:
        """A flow left a switch; the app owning its cookie hears of it if it watches flows."""
        app = self._watchers.get(app_of_cookie(cookie))
        if app is None:
            return Effects()
        return self._react(app.flow_removed(self.clock(), self.view(), FlowRemoved(dpid, cookie, match, idle)))

    # -- time --------------------------------------------------------------
    def tick(self) -> Effects:
        """Periodic housekeeping: LLDP probes, link expiry, end of port probation, apps' ticks."""
        now = self.clock()
        interval = self.model.controller.lldp_interval
        out = Effects(frames=tuple(self.links.probes(now, interval, self.view())))
        gone, forgotten = self.links.expire(now, interval)
        if gone:
            self._links_changed()
            out += self.recompute()
        elif forgotten:
            self.links.changed(self.view())
        reaction = Reaction()
        for app in self.apps:
            if isinstance(app, Ticks):
                reaction += app.tick(now, self.view(), self.ready)
        out += self._react(reaction)
        if self._view is not None and self._view.probation != self._probation():
            out += self.recompute()
        return out + self._finish_deferred()

    def _links_changed(self) -> None:
        self._invalidate()
        self.links.changed(self.view())

    # -- configuration -----------------------------------------------------
    def reload(self, model: Model) -> Effects:
        """Switch to a new validated model and send only the difference.

        Links are judged again under the new file (declaring or removing
        ``links`` changes which discovered links may be used).
        """
        self.model = model
        self._settle_moves()
        for app in self.apps:
            if isinstance(app, Reloads):
                app.reload(model)
        self._invalidate()
        self.links.readmit(self.view())
        self._links_changed()
        return self.recompute()

    def migrate(self, vm: str, switch: str, port: PortRef) -> Effects:
        """Pre-install ``vm`` at ``switch``/``port`` (``vmn migrate``): it may send from there too.

        The destination gets the VM's edge rules (port security, network,
        delivery) while every switch still forwards to where the VM was
        learned; the first frame it sends from the destination (a RARP or
        gratuitous ARP after a live migration, or any packet) moves it
        everywhere at once, one bundle per switch (:mod:`apps.l2`). The
        migration ends when the network file declares the VM at its
        destination (a reload drops it then; a reload also drops moves of
        VMs no longer in the file).

        Raises
        ------
        ValueError
            If the VM or the switch is not in the network file.
        """
        if vm not in self.model.vm_by_name:
            raise ValueError(f"unknown VM {vm!r}")
        if switch not in self.model.switch_by_name:
            raise ValueError(f"unknown switch {switch!r}")
        self.moves[vm] = (switch, port)
        LOG.info("vm %s: migrating to %s:%s (destination pre-installed)", vm, switch, port)
        return self.recompute()

    def _settle_moves(self) -> None:
        """Forget moves that the (new) file has made true, and those of VMs it no longer has."""
        for name, (switch, port) in list(self.moves.items()):
            vm = self.model.vm_by_name.get(name)
            if vm is None or (vm.switch, vm.port) == (switch, port):
                del self.moves[name]

    # -- statistics --------------------------------------------------------
    def flow_stats_apps(self) -> list[int]:
        """App ids whose flows' packet counts the shim should poll (by cookie), every ``stats_interval``."""
        return sorted(self._flow_readers)

    def flow_stats(self, dpid: int, app_id: int, packets: Mapping[int, int]) -> None:
        """A switch's packet counts of one app's flows (cookie -> packets)."""
        app = self._flow_readers.get(app_id)
        if app is not None:
            app.flow_stats(dpid, packets)

    def group_stats(self, dpid: int, buckets: Mapping[int, Sequence[int]]) -> None:
        """A switch's group bucket packet counts (group id -> per bucket), to the groups' owners."""
        installed = self.groups.get(dpid, {})
        for app_id, app in self._group_readers.items():
            mine = {gid: g for gid, g in installed.items() if g.app == app_id}
            if mine:
                app.group_stats(dpid, mine, {gid: c for gid, c in buckets.items() if gid in mine})
