"""The tracer and the planner fed with the live state of a :class:`Snapshot`.

:func:`live_fabric` hands ``vmn trace``'s tracer (:mod:`controller.tools.trace`)
the flows and groups the controller has installed on its ready switches,
over the links it discovered, with ports numbered as the switches report
them: a trace then follows exactly what the switches hold, learned
locations and backend health included.

:func:`plan` computes what a new network file would change: a fresh core
for the new file meets the live switches, ports and links, and adopts the
hosts they hold from their flows, as a restarted controller does
(:meth:`~controller.core.Core.reconcile`); backends located by ARP keep
their locations. Its wanted flows are compared with the live ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from apps.lb.app import LoadBalancerApp
from controller.api.snapshot import Snapshot
from controller.config.model import Model, PortRef
from controller.flows.rules import Rule
from controller.tools.fakefabric import FakeFabric
from controller.tools.portplan import declared_ports
from controller.tools.trace import Fabric, Proto, TraceResult, trace


class _QuietThreads(logging.Filter):
    """Drops the records of threads that are replaying state into a scratch core."""

    def __init__(self) -> None:
        super().__init__("vmn.api.quiet")
        self.threads: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in self.threads


_QUIET = _QuietThreads()


@contextmanager
def quiet() -> Iterator[None]:
    """Silence this thread's log records meanwhile: a scratch core's events are not the controller's."""
    for handler in logging.getLogger().handlers:
        if _QUIET not in handler.filters:
            handler.addFilter(_QUIET)
    ident = threading.get_ident()
    _QUIET.threads.add(ident)
    try:
        yield
    finally:
        _QUIET.threads.discard(ident)


def live_ports(snap: Snapshot, model: Model) -> dict[tuple[str, PortRef], tuple[int, int]]:
    """(switch name, declared port) -> (dpid, OpenFlow port) for every declared port that is there."""
    out: dict[tuple[str, PortRef], tuple[int, int]] = {}
    for switch, refs in declared_ports(model).items():
        for ref in refs:
            at = snap.port_number(switch, ref)
            if at is not None:
                out[(switch, ref)] = at
    return out


def live_fabric(snap: Snapshot) -> Fabric:
    """A tracer's fabric holding the snapshot's flows on its ready switches, over its links."""
    fake = FakeFabric(snap.model)
    fake.flows = {d: {r.cookie: r for r in snap.flows.get(d, frozenset())} for d in sorted(snap.ready)}
    fake.groups = {d: {g.group_id: g for g in snap.groups.get(d, ())} for d in sorted(snap.ready)}
    for dpid, ports in snap.ports.items():
        fake.core.topology.add_switch(dpid, ports)
    fake.core.topology.links = set(snap.links)
    return Fabric(snap.model, fake, live_ports(snap, snap.model))


def live_trace(snap: Snapshot, src_vm: str, dst_ip: str, proto: Proto, port: int | None) -> TraceResult:
    """Trace one packet (and its reply) through the live flows.

    Raises ValueError for an unknown VM, a bad address, or a VM whose port
    is not on a connected switch.
    """
    fabric = live_fabric(snap)
    vm = snap.model.vm_by_name.get(src_vm)
    if vm is not None and (vm.switch, vm.port) not in fabric.ports:
        raise ValueError(f"vm {src_vm!r}: port {vm.switch}:{vm.port} is not on a connected switch")
    try:
        return trace(fabric, src_vm, dst_ip, proto, port)
    except KeyError as err:  # the destination's port is not connected
        raise ValueError(f"the destination of the trace is not on a connected switch ({err})") from None


@dataclass(frozen=True)
class SwitchPlan:
    """What a new file changes on one switch: flows removed and added."""

    dpid: int
    name: str
    removed: tuple[Rule, ...]
    added: tuple[Rule, ...]


def planned_flows(snap: Snapshot, model: Model) -> dict[int, frozenset[Rule]]:
    """The flows a controller running ``model`` would want on the snapshot's connected switches."""
    fake = FakeFabric(model)
    for dpid in sorted(snap.ports):
        fake.connect(dpid, snap.ports[dpid])
    for link in sorted(snap.links):
        fake.link_up(link)
    balancer = next((a for a in fake.core.apps if isinstance(a, LoadBalancerApp)), None)
    if balancer is not None:
        networks = {lb.name: lb.network for lb in model.load_balancers}
        for backend in snap.backends:
            if backend.location is not None and backend.lb in networks:
                balancer.assume_located(networks[backend.lb], str(backend.ip), backend.location)
    for dpid in sorted(snap.ports):
        fake.reconcile(dpid, snap.flows.get(dpid, frozenset()) if dpid in snap.ready else ())
    fake.recompute()
    return {dpid: fake.core.flows.rules(dpid) for dpid in sorted(snap.ports)}


def plan(snap: Snapshot, model: Model) -> list[SwitchPlan]:
    """Per connected switch (dpid order), the flows ``model`` would remove and add; nothing is applied."""
    with quiet():
        after = planned_flows(snap, model)
    out = []
    for dpid in sorted(snap.ports):
        before = snap.flows.get(dpid, frozenset())
        removed = tuple(sorted(before - after[dpid], key=_order))
        added = tuple(sorted(after[dpid] - before, key=_order))
        out.append(SwitchPlan(dpid, snap.switch_name(dpid), removed, added))
    return out


def _order(rule: Rule) -> tuple[int, int, int]:
    return (rule.table, -rule.priority, rule.cookie)
