"""Which source MACs are learned, and the learned-host table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from apps.l2.hosts import HostTable
from controller.fabric.view import FabricView, Host


@dataclass(frozen=True)
class LearnDecision:
    """What a packet-in means for the host table."""

    kind: Literal["new", "move", "known", "ignore"]
    host: Host | None = None
    reason: str = ""


def learn_decision(view: FabricView, hosts: HostTable, dpid: int, in_port: int, vlan: int, mac: str) -> LearnDecision:
    """Decide whether a source MAC seen at ``dpid``/``in_port`` on ``vlan`` is learned.

    Ignores group (multicast/broadcast) and zero source MACs, frames from
    trunks or from ports not in that VLAN's network, a MAC declared for
    another VM's port (no hijacking it from an undeclared one; a VM being migrated has two), and new hosts beyond
    ``max_hosts_per_port`` on one port. A known MAC on a new edge port is a move.
    """
    if int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
        return LearnDecision("ignore", reason="group or zero source MAC")
    edge = view.edge_ports(dpid).get(in_port)
    if edge is None or edge[0].vlan != vlan:
        return LearnDecision("ignore", reason="not an edge port of this network")
    homes = view.declared_macs.get(mac)
    if homes is not None and (dpid, in_port) not in homes:
        return LearnDecision("ignore", reason="MAC declared for another VM's port")
    host = Host(vlan, mac, dpid, in_port)
    old = hosts.get((vlan, mac))
    if old == host:
        return LearnDecision("known", host)
    if hosts.on_port(dpid, in_port) >= view.model.controller.max_hosts_per_port:
        return LearnDecision("ignore", reason="port host limit reached")
    return LearnDecision("move" if old else "new", host)
