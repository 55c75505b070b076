"""An immutable copy of the controller's live state, taken on the app thread.

The API server runs on threads of its own; it never reads the core while
the app thread changes it. Instead :func:`take` runs on the app thread
(posted there as an event, see :mod:`controller.api.bridge`) and copies
what the API shows into a :class:`Snapshot`: the frozen model, the
connected switches and their ports, the discovered links, the flows and
groups the core wants, learned hosts and load-balancer backends. Rules,
groups, ports and the model are frozen values, so copying the containers
is enough.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from apps.l2.app import L2Switch
from apps.lb.app import LoadBalancerApp
from apps.lb.runtime import Location
from controller.config.model import Model, PortRef
from controller.core import Core
from controller.fabric.topology import LinkKey, PortInfo, resolve_port
from controller.fabric.view import Host
from controller.flows.rules import GroupEntry, Rule


@dataclass(frozen=True)
class BackendState:
    """One load-balancer backend: health (None: not checked by this controller) and where it was found."""

    lb: str
    ip: ipaddress.IPv4Address
    up: bool | None
    location: Location | None


@dataclass(frozen=True)
class Snapshot:
    """The controller's state at one instant; nothing in it changes afterwards.

    ``ports`` holds the connected switches (dpid -> ports as last reported);
    ``ready`` those whose flows were reconciled (they hold ``flows``);
    ``flows`` and ``groups`` are what the core wants on each connected switch
    (empty when taken without them); ``flow_counts`` how many flows that is;
    ``roles`` this instance's OpenFlow role on each connected switch
    (``master``, ``slave``, ``equal``; see :mod:`controller.ha`).
    """

    model: Model
    config_path: str | None
    ports: Mapping[int, tuple[PortInfo, ...]]
    ready: frozenset[int]
    links: frozenset[LinkKey]
    flows: Mapping[int, frozenset[Rule]]
    groups: Mapping[int, tuple[GroupEntry, ...]]
    hosts: tuple[Host, ...]
    backends: tuple[BackendState, ...]
    flow_counts: Mapping[int, int]
    roles: Mapping[int, str] = field(default_factory=dict)

    def switch_name(self, dpid: int) -> str:
        """The file's name of switch ``dpid``, or its dpid in hex (zero-config, undeclared)."""
        switch = self.model.switch_by_dpid.get(dpid)
        return switch.name if switch else f"{dpid:016x}"

    def dpid_of(self, switch: str) -> int | None:
        """The dpid a switch name (or a dpid, decimal or 0x hex) stands for; None if unknown."""
        declared = self.model.switch_by_name.get(switch)
        if declared is not None:
            return declared.dpid
        try:
            dpid = int(switch, 0)
        except ValueError:
            try:
                dpid = int(switch, 16)
            except ValueError:
                return None
        return dpid if dpid in self.ports or dpid in self.model.switch_by_dpid else None

    def port_number(self, switch: str, ref: PortRef) -> tuple[int, int] | None:
        """(dpid, OpenFlow port) of a declared port on a connected switch; None if not there."""
        declared = self.model.switch_by_name.get(switch)
        if declared is None or declared.dpid not in self.ports:
            return None
        number = resolve_port({p.port_no: p for p in self.ports[declared.dpid]}, ref)
        return None if number is None else (declared.dpid, number)


def take(core: Core, config_path: str | None, flows: bool = True, roles: Mapping[int, str] | None = None) -> Snapshot:
    """Copy ``core``'s live state. Call it on the thread that owns ``core`` (the app thread).

    Without ``flows`` the (possibly large) flow and group sets are left out
    and only counted, which keeps the app thread's share of a page poll small.
    ``roles`` (default: ``equal`` everywhere) is the shim's role per switch.
    """
    topology = core.topology
    connected = sorted(topology.ports)
    hosts: tuple[Host, ...] = ()
    backends: tuple[BackendState, ...] = ()
    for app in core.apps:
        if isinstance(app, L2Switch):
            hosts = tuple(sorted(app.hosts.values(), key=lambda h: (h.vlan, h.mac)))
        if isinstance(app, LoadBalancerApp):
            health = app.runtime.checker.health()
            backends = tuple(
                BackendState(
                    lb.name,
                    b.ip,
                    health[(lb.name, b.ip)].up if (lb.name, b.ip) in health else None,
                    app.runtime.located.get((lb.network, b.ip)),
                )
                for lb in core.model.load_balancers
                for b in lb.backends
            )
    return Snapshot(
        model=core.model,
        config_path=config_path,
        ports={d: tuple(topology.ports[d][p] for p in sorted(topology.ports[d])) for d in connected},
        ready=frozenset(core.ready),
        links=frozenset(topology.links),
        flows={d: core.flows.rules(d) for d in connected} if flows else {},
        groups={d: tuple(core.groups.get(d, {}).values()) for d in connected} if flows else {},
        hosts=hosts,
        backends=backends,
        flow_counts={d: sum(core.flows.app_counts(d).values()) for d in connected},
        roles={d: (roles or {}).get(d, "equal") for d in connected},
    )
