"""The os-ken shim: the only place that talks to datapaths.

Each handler turns an os-ken event into one call on :class:`Core` and sends
the :class:`~controller.effects.Effects` it returns. It knows no app and no
table: packet-ins go to the core with their table id, and the metric's
reason is the pipeline's. Handlers run on the app's single event thread;
signals, timers and the API server (:mod:`controller.api`, ``EventCall``)
post events to that thread instead of calling the core.

With ``controller.coordination`` several instances run and only the leader
changes switches: the role requests, leadership events and the guard on
every change are the :class:`~controller.ha.shim.HaShim` mixin's.

Run: ``VMN_CONFIG=net.yaml osken-manager controller.app``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from os_ken.base import app_manager
from os_ken.controller import event, ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3 as ofp
from prometheus_client import start_http_server

from controller import ofmsg
from controller.api import server as api_server
from controller.api.bridge import ControllerBridge
from controller.compose import AppError, build_core, check_apps
from controller.config import ConfigError, load_model
from controller.config.model import ControllerSettings, Model
from controller.effects import DumpedFlow, Effects, Frame
from controller.eventq import EventSlots
from controller.fabric.topology import PortInfo
from controller.flows.pipeline import METER_PACKET_IN
from controller.ha.elector import Elector
from controller.ha.roles import Roles
from controller.ha.shim import HaShim
from controller.loglines import Lines
from controller.metrics import Metrics
from controller.ratelimit import TokenBucket, meter_burst
from controller.rx import Shedder

LOG = logging.getLogger("vmn")
CONFIG_ENV = "VMN_CONFIG"
METRICS_PORT_ENV = "VMN_METRICS_PORT"
API_PORT_ENV = "VMN_API_PORT"
COORDINATION_ENV = "VMN_COORDINATION"
"""Overrides ``controller.coordination`` (this instance's address of the service); empty: the file's."""
T = TypeVar("T")
TICK_SECONDS = 0.1
"""Housekeeping period: health-check timing resolution; LLDP goes out every ``lldp_interval``."""
EVENT_BATCH = 32
"""A receive thread waiting for room in the app's event queue is woken once this many slots are free."""


class EventReload(event.EventBase):
    """Ask the app thread to reload the network file."""


class EventTick(event.EventBase):
    """Periodic work on the app thread: the core's tick, statistics polls, the file watch."""


class EventCall(event.EventBase):
    """Run ``fn`` on the app thread for another thread (the API server); its outcome goes to ``future``."""

    def __init__(self, fn: Callable[[], Any], future: Future[Any]) -> None:
        super().__init__()
        self.fn = fn
        self.future = future


class VmnController(HaShim, app_manager.OSKenApp):
    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events_sem = EventSlots(self.events.maxsize, EVENT_BATCH)  # os-ken's, with batched wake-ups
        self.config_path = os.environ.get(CONFIG_ENV)
        model = self._initial_model()
        self.metrics = Metrics()
        self.lines = Lines(batching=True)
        """Apps' per-host lines, written together while packet-ins queue up (:mod:`controller.loglines`)."""
        try:
            self.core = build_core(model, self.metrics, probe_secret=os.urandom(16), lines=self.lines)
        except AppError as err:
            LOG.error("%s: %s", self.config_path, err)
            raise SystemExit(f"invalid network file {self.config_path}") from err
        self._prepare()
        self.datapaths: dict[int, Any] = {}
        self._buckets: dict[int, TokenBucket] = {}
        self._stats: dict[int, list[DumpedFlow]] = {}
        self._ports_pending: dict[int, list[PortInfo]] = {}
        self._bundle_id = 0
        self._pin_counters: dict[tuple[int, int], Any] = {}
        """(dpid, table) -> the packet-in counter child (``labels()`` costs a lock and a dict build per call)."""
        self._shed_seen: dict[int, int] = {}
        self._counters: dict[tuple[int, str], Any] = {}
        self._polls: dict[tuple[int, int], tuple[int, dict[int, int]]] = {}
        """(dpid, xid) of a pending flow-stats request -> (app id, counts so far)."""
        self._next_poll = 0.0
        self._config_stamp = self._stamp()
        self.coordination = os.environ.get(COORDINATION_ENV) or model.controller.coordination
        self.roles = Roles(coordinated=self.coordination is not None)
        self.elector: Elector | None = None
        self._elected_at: float | None = None
        self._coordination_up: bool | None = None
        self.metrics.leader.set(0 if self.roles.coordinated else 1)
        self._ticker = hub.spawn(self._tick_loop)
        self._start_metrics(model.controller)
        self.api: api_server.ApiServer | None = None
        self._start_api(model.controller)

    def start(self) -> Any:
        """os-ken starts the app (registered by now, so the elector's events reach it); then run for leader."""
        started = super().start()
        self._start_election()
        return started

    def stop(self) -> None:
        """Leave the election first (a leader's lock is released: another takes over at once)."""
        if self.elector is not None:
            self.elector.stop()
        super().stop()
        self.lines.flush()

    def _start_metrics(self, settings: ControllerSettings) -> None:
        """Serve /metrics; ``VMN_METRICS_PORT`` overrides the file (0 disables)."""
        port = int(os.environ.get(METRICS_PORT_ENV, settings.metrics_port))
        if not port:
            return
        try:
            start_http_server(port, settings.metrics_host, self.metrics.registry)
        except OSError as err:
            LOG.error("metrics exporter not started on %s:%d: %s", settings.metrics_host, port, err)
            return
        LOG.info("metrics on http://%s:%d/metrics", settings.metrics_host, port)

    def _start_api(self, settings: ControllerSettings) -> None:
        """Serve the REST API and web view; ``VMN_API_PORT`` overrides the file (0 disables)."""
        port = int(os.environ.get(API_PORT_ENV, settings.api_port))
        if not port:
            return
        try:
            self.api = api_server.start(ControllerBridge(self), settings.metrics_host, port)
        except OSError as err:
            LOG.error("API not started on %s:%d: %s", settings.metrics_host, port, err)
            return
        LOG.info("API and web view on http://%s:%d/", settings.metrics_host, port)

    def run_on_app_thread(self, fn: Callable[[], T], timeout: float) -> T:
        """Run ``fn`` on the app thread and return its result (called from other threads).

        Raises TimeoutError after ``timeout`` seconds, or what ``fn`` raised.
        """
        future: Future[T] = Future()
        self.send_event(self.name, EventCall(fn, future))
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()  # not run later if it has not started
            raise

    @set_ev_cls(EventCall)
    def on_call(self, ev: EventCall) -> None:
        if not ev.future.set_running_or_notify_cancel():
            return
        try:
            ev.future.set_result(ev.fn())
        except Exception as err:  # handed to the caller's thread
            ev.future.set_exception(err)

    def _initial_model(self) -> Model:
        if not self.config_path:
            LOG.info("no %s: zero-config learning switch on every port", CONFIG_ENV)
            return Model.zero()
        try:
            model = load_model(self.config_path)
        except ConfigError as err:
            for line in err.errors:
                LOG.error("%s: %s", self.config_path, line)
            raise SystemExit(f"invalid network file {self.config_path}") from err
        LOG.info(
            "network file %s: %d switches, %d vms, %d networks",
            self.config_path,
            len(model.switches),
            len(model.vms),
            len(model.networks),
        )
        return model

    def _prepare(self) -> None:
        """Compile ahead the rules of the declared switches not connected (their connect then only sends)."""
        started = self.core.clock()
        count = self.core.prepare()
        if count:
            LOG.info("%d rules ready for switches not connected (%.3f s)", count, self.core.clock() - started)

    def _tick_loop(self) -> None:
        while self.is_active:
            hub.sleep(TICK_SECONDS)
            self.send_event(self.name, EventTick())

    @set_ev_cls(EventTick)
    def on_tick(self, ev: EventTick) -> None:
        self.lines.flush()
        self._send(self.core.tick())
        self._count_shed()
        self._poll_stats()
        self._check_takeover()
        self._check_coordination()
        stamp = self._stamp()
        if stamp != self._config_stamp:
            self._config_stamp = stamp
            LOG.info("network file %s changed on disk", self.config_path)
            self.reload()

    def _stamp(self) -> tuple[int, int] | None:
        """(mtime in ns, size) of the network file, or None (no file, or unreadable)."""
        if not self.config_path:
            return None
        try:
            st = os.stat(self.config_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _count_shed(self) -> None:
        """Move each receive loop's count of shed repeats into ``vmn_packet_in_shed_total``."""
        for dpid, dp in self.datapaths.items():
            shedder = getattr(dp, "shedder", None)
            if shedder is None:
                continue
            seen = self._shed_seen.get(dpid, 0)
            if shedder.shed_count > seen:
                self.metrics.packet_in_shed.labels(switch=f"{dpid:x}").inc(shedder.shed_count - seen)
                self._shed_seen[dpid] = shedder.shed_count

    def _packet_out(self, frames: tuple[Frame, ...]) -> None:
        for dpid, port, frame in frames:
            dp = self.datapaths.get(dpid)
            if dp is not None and self._writable(dpid):
                dp.send_msg(ofmsg.packet_out(dp, port, frame))

    def _poll_stats(self) -> None:
        """Every ``stats_interval``, ask each switch for the packet counts of the apps that read them."""
        now = self.core.clock()
        if now < self._next_poll:
            return
        self._next_poll = now + self.core.model.controller.stats_interval
        pending = {(dpid, app) for (dpid, _), (app, _) in self._polls.items()}
        for dpid in sorted(self.core.ready):
            dp = self.datapaths.get(dpid)
            if dp is None:
                continue
            for app_id in self.core.flow_stats_apps():
                if (dpid, app_id) not in pending:
                    msg = ofmsg.flow_stats_request(dp, app_id)
                    dp.send_msg(msg)
                    self._polls[(dpid, msg.xid)] = (app_id, {})
            if self.core.groups.get(dpid):
                dp.send_msg(ofmsg.group_stats_request(dp))

    @set_ev_cls(ofp_event.EventOFPGroupStatsReply, MAIN_DISPATCHER)
    def on_group_stats(self, ev: Any) -> None:
        """Bucket packet counts; a reply split over several messages carries whole groups."""
        buckets = {g.group_id: [b.packet_count for b in g.bucket_stats] for g in ev.msg.body}
        self.core.group_stats(ev.msg.datapath.id, buckets)

    # -- sending -----------------------------------------------------------
    def apply(self, effects: Effects) -> None:
        """Send what the core returned for a call made on the app thread (the API's ``migrate``)."""
        self._send(effects)

    def _send(self, effects: Effects) -> None:
        """Send each switch's batch, then the frames."""
        for batch in effects.batches:
            dp = self.datapaths.get(batch.dpid)
            if dp is None or not batch or not self._writable(batch.dpid):
                continue
            for group in batch.group_sets:
                for msg in ofmsg.group_set(dp, group):
                    dp.send_msg(msg)
            if batch.deletes or batch.adds:
                self._bundle_id = (self._bundle_id + 1) & 0xFFFFFFFF
                dp.send(ofmsg.batch_bytes(dp, self._bundle_id, batch.deletes, batch.adds))
            for group_id in batch.group_deletes:
                dp.send_msg(ofmsg.group_delete(dp, group_id))
            if batch.deletes:
                self._flow_mod_counter(batch.dpid, "delete").inc(len(batch.deletes))
            if batch.adds:
                self._flow_mod_counter(batch.dpid, "add").inc(len(batch.adds))
        self._packet_out(effects.frames)

    def _flow_mod_counter(self, dpid: int, command: str) -> Any:
        """The ``vmn_flow_mods_total`` child of (switch, command), looked up once."""
        counter = self._counters.get((dpid, command))
        if counter is None:
            counter = self._counters[(dpid, command)] = self.metrics.flow_mods.labels(
                switch=f"{dpid:x}", command=command
            )
        return counter

    # -- switch lifecycle --------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def on_features(self, ev: Any) -> None:
        dp = ev.msg.datapath
        self.datapaths[dp.id] = dp
        self._ports_pending[dp.id] = []
        self._shed_seen.pop(dp.id, None)
        if hasattr(dp, "shedder"):  # controller.rx's datapath (installed by the launcher)
            dp.shedder = Shedder(
                frozenset(t.table_id for t in self.core.pipeline.tables if t.trap and t.trap.per_source)
            )
            dp.direct_send = True  # this thread writes its own sends: no hand-off to the send thread
            dp.cache_matches = True  # a packet-in's match parsed once per port, not per packet-in
        LOG.info("switch %016x connected from %s", dp.id, dp.address)
        dp.send_msg(ofmsg.port_desc_request(dp))
        self._act(self.roles.connected(dp.id))

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def on_port_desc(self, ev: Any) -> None:
        dp = ev.msg.datapath
        pending = self._ports_pending.setdefault(dp.id, [])
        pending.extend(ofmsg.port_infos(ev.msg.body))
        if ev.msg.flags & ofp.OFPMPF_REPLY_MORE:
            return
        ports = self._ports_pending.pop(dp.id)
        self._send(self.core.switch_up(dp.id, ports))
        self._program(dp.id)

    def _program(self, dpid: int) -> None:
        """Once a switch's ports are known and it is writable: packet-in meter, then its flow dump to reconcile."""
        dp = self.datapaths.get(dpid)
        if dp is None or dpid in self._ports_pending or dpid in self._stats or dpid in self.core.ready:
            return
        if not self.core.model.knows_dpid(dpid) or not self._writable(dpid):
            return
        self._send_meter(dp)
        self._stats[dpid] = []
        dp.send_msg(ofmsg.flow_stats_request(dp))

    def _send_meter(self, dp: Any) -> None:
        """The packet-in meter at ``packet_in_rate`` with a burst of one second's worth (:mod:`controller.ratelimit`)."""
        rate = self.core.model.controller.packet_in_rate
        for msg in ofmsg.meter_mods(dp, METER_PACKET_IN, rate, meter_burst(rate)):
            dp.send_msg(msg)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def on_flow_stats(self, ev: Any) -> None:
        dp = ev.msg.datapath
        if (dp.id, ev.msg.xid) in self._polls:
            self._on_app_stats(dp.id, ev.msg)
            return
        cookies = self._stats.get(dp.id)
        if cookies is None:
            return
        cookies.extend(DumpedFlow(s.cookie, s.table_id, s.priority, ofmsg.match_fields(s.match)) for s in ev.msg.body)
        if ev.msg.flags & ofp.OFPMPF_REPLY_MORE:
            return
        del self._stats[dp.id]
        self._send(self.core.reconcile(dp.id, cookies))

    def _on_app_stats(self, dpid: int, msg: Any) -> None:
        app_id, counts = self._polls[(dpid, msg.xid)]
        for stat in msg.body:
            counts[stat.cookie] = counts.get(stat.cookie, 0) + stat.packet_count
        if msg.flags & ofp.OFPMPF_REPLY_MORE:
            return
        del self._polls[(dpid, msg.xid)]
        self.core.flow_stats(dpid, app_id, counts)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def on_dead(self, ev: Any) -> None:
        dp, dpid = ev.datapath, ev.datapath.id
        if dpid is None or self.datapaths.get(dpid) is not dp:
            return
        del self.datapaths[dpid]
        self._polls = {k: v for k, v in self._polls.items() if k[0] != dpid}
        self._stats.pop(dpid, None)
        self.roles.disconnected(dpid)
        self._role_metrics(dpid)
        LOG.info("switch %016x disconnected", dpid)
        self._send(self.core.switch_down(dpid))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def on_port_status(self, ev: Any) -> None:
        msg = ev.msg
        (port,) = ofmsg.port_infos([msg.desc])
        deleted = msg.reason == ofp.OFPPR_DELETE
        self._send(self.core.port_changed(msg.datapath.id, port, deleted))

    # -- packets -----------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def on_packet_in(self, ev: Any) -> None:
        msg = ev.msg
        dpid = msg.datapath.id
        counter = self._pin_counters.get((dpid, msg.table_id))
        if counter is None:
            trap = self.core.pipeline.trap(msg.table_id)
            reason = trap.reason if trap is not None else f"table{msg.table_id}"
            counter = self._pin_counters[(dpid, msg.table_id)] = self.metrics.packet_in.labels(
                switch=f"{dpid:x}", reason=reason
            )
        counter.inc()
        shedder = getattr(msg.datapath, "shedder", None)
        bucket = self._buckets.get(dpid)
        if bucket is None:
            bucket = self._buckets[dpid] = TokenBucket(self.core.model.controller.packet_in_rate)
        if not bucket.take(self.core.clock()):
            self.metrics.packet_in_dropped.labels(switch=f"{dpid:x}").inc()
            if shedder is not None:
                shedder.handled(msg.buf)
            return
        effects = self.core.packet_in(dpid, msg.table_id, msg.match["in_port"], msg.data)
        if shedder is not None:  # its queued repeats were shed; the next one is heard
            shedder.handled(msg.buf)
        self._send(effects)
        self._flush_lines_if_idle()

    def _flush_lines_if_idle(self) -> None:
        """Write the pending log lines once no other event waits (under a burst: one record for many lines)."""
        if self.lines and self.events.empty():
            self.lines.flush()

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def on_flow_removed(self, ev: Any) -> None:
        msg = ev.msg
        idle = msg.reason == ofp.OFPRR_IDLE_TIMEOUT
        self._send(self.core.flow_removed(msg.datapath.id, msg.cookie, ofmsg.match_fields(msg.match), idle))
        self._flush_lines_if_idle()

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    def on_error(self, ev: Any) -> None:
        msg = ev.msg
        if self._role_error(msg):
            return
        if (msg.type, msg.code) in (
            (ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_METER_EXISTS),
            (ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_GROUP_EXISTS),
        ):
            return  # the add of an add-then-modify pair
        LOG.warning(
            "switch %016x error type %s code %s: %s",
            msg.datapath.id,
            msg.type,
            msg.code,
            bytes(msg.data[:64]).hex() if msg.data else "",
        )

    # -- configuration -----------------------------------------------------
    def on_sighup(self) -> None:
        """Called from the signal handler: hand the reload to the event thread."""
        self.send_event(self.name, EventReload())

    @set_ev_cls(EventReload)
    def on_reload(self, ev: EventReload) -> None:
        self.reload()

    def reload(self) -> Model | None:
        """Reload the network file; keep the running config if it is invalid."""
        if not self.config_path:
            LOG.info("reload: no %s, nothing to reload", CONFIG_ENV)
            return None
        self._config_stamp = self._stamp()
        try:
            model = load_model(self.config_path)
            check_apps(model)
        except (ConfigError, AppError) as err:
            for line in err.errors if isinstance(err, ConfigError) else [str(err)]:
                LOG.error("reload rejected: %s: %s", self.config_path, line)
            self.metrics.config_reloads.labels(result="invalid").inc()
            return None
        if model.controller.apps != self.core.model.controller.apps:
            LOG.warning("reload: controller.apps changed; the app set changes at the next restart")
        if model.controller.coordination != self.core.model.controller.coordination:
            LOG.warning("reload: controller.coordination changed; it takes effect at the next restart")
        rate = self.core.model.controller.packet_in_rate
        self._send(self.core.reload(model))
        self._prepare()
        if (
            model.controller.packet_in_rate != rate
        ):  # the meters and buckets follow; the OVS queue at the next provision
            self._buckets.clear()
            for dpid in sorted(self.core.ready):
                dp = self.datapaths.get(dpid)
                if dp is not None and self._writable(dpid):
                    self._send_meter(dp)
        self.metrics.config_reloads.labels(result="ok").inc()
        LOG.info("reload: %s applied", self.config_path)
        return model
