"""A core driven by fake switches whose flow tables hold exactly what the core sent.

Every event goes to the real :class:`~controller.core.Core` (built with the
model's apps, rules checked against the pipeline); the
:class:`~controller.effects.Effects` it returns are *applied* to simulated
switch tables (deletes by exact cookie, adds, group sets and deletes, as
OVS would), and after each event the installed tables must equal the
desired state of every ready switch, or :class:`Diverged` is raised. So
``vmn trace`` and the unit tests run packets through what was really sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping

from controller.compose import build_core
from controller.config.model import Model
from controller.core import Core
from controller.effects import DumpedFlow, Effects
from controller.fabric.lldp import build_probe
from controller.fabric.topology import LinkKey, PortInfo
from controller.fabric.tunnels import tunnel_links
from controller.flows.pipeline import T_INGRESS
from controller.flows.rules import GroupEntry, Rule
from controller.tools.portplan import FIRST_NAMED_PORT, placeholder_name, port_numbers
from controller.tools.sim import SimConntrack, SimNetwork, conntracks_of_hosts

__all__ = ["FIRST_NAMED_PORT", "Diverged", "FakeFabric", "port_numbers"]


class Diverged(AssertionError):
    """What a switch holds differs from what the core wants there."""


class FakeFabric:
    """A core plus the flow and group tables of its (fake) switches."""

    def __init__(self, model: Model, clock: Callable[[], float] = time.monotonic, core: Core | None = None) -> None:
        self.core: Core = core or build_core(model, clock=clock, verify=True)
        self.core.prepare()  # as the shim does: connects use precompiled rules, checked against a compile (verify)
        self.flows: dict[int, dict[int, Rule]] = {}
        """dpid -> cookie -> rule, as installed."""
        self.groups: dict[int, dict[int, GroupEntry]] = {}
        self.frames: list[tuple[int, int, bytes]] = []
        """Every frame the core asked to packet-out, in order."""

    @staticmethod
    def from_model(model: Model, clock: Callable[[], float] = time.monotonic, core: Core | None = None) -> FakeFabric:
        """Every declared switch up with the ports the file names, every declared link up.

        Ports are numbered as :func:`~controller.tools.portplan.port_numbers`
        says; a named port is called by its name, a numbered one by a
        placeholder no interface can have. ``core`` replaces the one built
        with the model's apps (tests of other app sets).
        """
        fabric = FakeFabric(model, clock, core)
        numbers = port_numbers(model)
        for switch in model.switches:
            infos = [
                PortInfo(no, ref if isinstance(ref, str) else placeholder_name(no))
                for (name, ref), (_, no) in numbers.items()
                if name == switch.name
            ]
            fabric.connect(switch.dpid, sorted(infos, key=lambda p: p.port_no))
        for link in model.links:
            a, b = numbers[(link.a.switch, link.a.port)], numbers[(link.b.switch, link.b.port)]
            fabric.link_up(LinkKey.of(a[0], a[1], b[0], b[1]))
        for tunnel in sorted(tunnel_links(model, fabric.core.topology.ports)):
            fabric.link_up(tunnel)
        return fabric

    # -- applying ----------------------------------------------------------
    def apply(self, effects: Effects) -> Effects:
        """Install ``effects`` on the fake switches, check them against the core; return them."""
        for batch in effects.batches:
            groups = self.groups.setdefault(batch.dpid, {})
            groups.update({g.group_id: g for g in batch.group_sets})
            flows = self.flows.setdefault(batch.dpid, {})
            for cookie in batch.deletes:
                flows.pop(cookie, None)
            flows.update({r.cookie: r for r in batch.adds})
            for gid in batch.group_deletes:
                groups.pop(gid, None)
        self.frames += effects.frames
        self.check()
        return effects

    def check(self) -> None:
        """Raise :class:`Diverged` unless every ready switch holds exactly the desired flows and groups."""
        for dpid in sorted(self.core.ready):
            installed = self.flows.get(dpid, {})
            wanted = {r.cookie: r for r in self.core.flows.rules(dpid)}
            if installed.keys() != wanted.keys():
                missing = [wanted[c] for c in sorted(wanted.keys() - installed.keys())]
                extra = [installed[c] for c in sorted(installed.keys() - wanted.keys())]
                raise Diverged(
                    f"switch {dpid:x}: {len(missing)} wanted rules missing ({missing[:2]}), "
                    f"{len(extra)} extra ({extra[:2]})"
                )
            if self.groups.get(dpid, {}) != self.core.groups.get(dpid, {}):
                raise Diverged(f"switch {dpid:x}: groups differ")

    # -- events --------------------------------------------------------------
    def connect(
        self, dpid: int, ports: Iterable[PortInfo], held: Collection[Rule] = (), foreign: Collection[int] = ()
    ) -> Effects:
        """A switch connects with ``ports``, holding ``held`` (and flows of unknown cookies ``foreign``)."""
        self.flows[dpid] = {}
        out = self.apply(self.core.switch_up(dpid, list(ports)))
        return out + self.reconcile(dpid, held, foreign)

    def reconcile(self, dpid: int, held: Collection[Rule], foreign: Collection[int] = ()) -> Effects:
        """Reconcile ``dpid`` whose tables hold ``held`` plus flows with the cookies ``foreign``."""
        self.flows[dpid] = {r.cookie: r for r in held}
        self.groups[dpid] = {}
        dump = [DumpedFlow(r.cookie, r.table, r.priority, dict(r.match)) for r in held]
        effects = self.core.reconcile(dpid, dump + [DumpedFlow(c) for c in foreign])
        for cookie in foreign:
            self.flows[dpid].pop(cookie, None)  # deleted by the batch if the core is right
        return self.apply(effects)

    def disconnect(self, dpid: int) -> Effects:
        return self.apply(self.core.switch_down(dpid))

    def port_changed(self, dpid: int, port: PortInfo, deleted: bool = False) -> Effects:
        return self.apply(self.core.port_changed(dpid, port, deleted))

    def lldp_in(self, dpid: int, port: int, frame: bytes) -> Effects:
        """An LLDP frame arrives on ``dpid``/``port`` (the ingress table's trap)."""
        return self.apply(self.core.packet_in(dpid, T_INGRESS, port, frame))

    def probe(self, dpid: int, port: int) -> bytes:
        """The probe the core sends out of ``dpid``/``port`` now (signed, stamped with its clock)."""
        return build_probe(dpid, port, self.core.links.secret, self.core.clock())

    def link_up(self, link: LinkKey) -> Effects:
        """Our probe from one end of ``link`` is heard at the other."""
        return self.lldp_in(link.b_dpid, link.b_port, self.probe(link.a_dpid, link.a_port))

    def packet_in(self, dpid: int, table: int, port: int, data: bytes) -> Effects:
        return self.apply(self.core.packet_in(dpid, table, port, data))

    def flow_removed(self, dpid: int, rule: Rule, idle: bool = True) -> Effects:
        """``rule`` leaves ``dpid`` (by its idle timeout when ``idle``) and the core hears of it."""
        return self.apply(self.core.flow_removed(dpid, rule.cookie, dict(rule.match), idle))

    def tick(self) -> Effects:
        return self.apply(self.core.tick())

    def recompute(self) -> Effects:
        return self.apply(self.core.recompute())

    def reload(self, model: Model) -> Effects:
        effects = self.apply(self.core.reload(model))
        self.core.prepare()
        return effects

    # -- packets -------------------------------------------------------------
    def network(
        self,
        conntrack: SimConntrack | None = None,
        down: Collection[tuple[int, int]] = (),
        cables: Collection[LinkKey] = (),
        host_conntracks: Mapping[int, SimConntrack] | None = None,
    ) -> SimNetwork:
        """The simulated network of the installed tables, over the topology's links.

        ``cables`` are wires the topology does not use (a relaying host between
        two ports); frames output there cross them like any link.
        ``host_conntracks``: each switch's host conntrack (see :class:`SimNetwork`); by
        default, with ``hosts`` in the file, one per host. Tunnels in use cross as tunnels.
        """
        model = self.core.model
        if host_conntracks is None and model.hosts:
            host_conntracks = conntracks_of_hosts({s.dpid: s.host for s in model.switches if s.host is not None})
        return SimNetwork(
            {d: frozenset(r.values()) for d, r in self.flows.items()},
            set(self.core.topology.links) | set(cables),
            conntrack=conntrack or SimConntrack(),
            groups={d: list(g.values()) for d, g in self.groups.items()},
            down=down,
            host_conntracks=host_conntracks,
            tunnels=self.core.view().tunnels,
        )
