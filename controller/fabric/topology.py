"""The live topology: connected switches, their ports and the links between them.

A networkx graph of datapath ids; each edge carries the port numbers of
both ends. All path and tree computations break ties by dpid, so the same
topology always gives the same paths, whatever order events arrived in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import networkx as nx

MAX_PHYSICAL_PORT = 0xFFFFFF00
"""OpenFlow port numbers from here up are reserved (LOCAL, CONTROLLER, ...), never a cable."""


@dataclass(frozen=True)
class PortInfo:
    """A switch port as last reported by the switch."""

    port_no: int
    name: str
    up: bool = True


@dataclass(frozen=True, order=True)
class LinkKey:
    """One inter-switch link, ends ordered so ``(a_dpid, a_port) < (b_dpid, b_port)``."""

    a_dpid: int
    a_port: int
    b_dpid: int
    b_port: int

    @staticmethod
    def of(dpid1: int, port1: int, dpid2: int, port2: int) -> LinkKey:
        if (dpid1, port1) <= (dpid2, port2):
            return LinkKey(dpid1, port1, dpid2, port2)
        return LinkKey(dpid2, port2, dpid1, port1)

    def port_on(self, dpid: int) -> int:
        return self.a_port if dpid == self.a_dpid else self.b_port


class Topology:
    """Mutable live view; the core owns it and snapshots what apps need."""

    def __init__(self) -> None:
        self.ports: dict[int, dict[int, PortInfo]] = {}
        self.links: set[LinkKey] = set()

    def copy(self) -> Topology:
        """An independent copy (ports and links)."""
        other = Topology()
        other.ports = {d: dict(p) for d, p in self.ports.items()}
        other.links = set(self.links)
        return other

    # -- mutation ---------------------------------------------------------
    def add_switch(self, dpid: int, ports: Iterable[PortInfo]) -> None:
        self.ports[dpid] = {p.port_no: p for p in ports}

    def remove_switch(self, dpid: int) -> set[LinkKey]:
        """Forget a switch and its links; return the links removed."""
        self.ports.pop(dpid, None)
        gone = {link for link in self.links if dpid in (link.a_dpid, link.b_dpid)}
        self.links -= gone
        return gone

    def set_port(self, dpid: int, port: PortInfo) -> set[LinkKey]:
        """Record a port's state; a port going down takes its links with it (returned)."""
        self.ports.setdefault(dpid, {})[port.port_no] = port
        return set() if port.up else self.remove_links_at(dpid, port.port_no)

    def delete_port(self, dpid: int, port_no: int) -> set[LinkKey]:
        self.ports.get(dpid, {}).pop(port_no, None)
        return self.remove_links_at(dpid, port_no)

    def remove_links_at(self, dpid: int, port_no: int) -> set[LinkKey]:
        gone = {
            link
            for link in self.links
            if (link.a_dpid, link.a_port) == (dpid, port_no) or (link.b_dpid, link.b_port) == (dpid, port_no)
        }
        self.links -= gone
        return gone

    def add_link(self, link: LinkKey) -> bool:
        """Add a link between two known switches; return whether it is new."""
        if link in self.links or link.a_dpid not in self.ports or link.b_dpid not in self.ports:
            return False
        # A port is cabled to one peer: a new sighting replaces older links there.
        self.remove_links_at(link.a_dpid, link.a_port)
        self.remove_links_at(link.b_dpid, link.b_port)
        self.links.add(link)
        return True

    # -- queries ----------------------------------------------------------
    def live_ports(self, dpid: int) -> Mapping[int, PortInfo]:
        return {n: p for n, p in self.ports.get(dpid, {}).items() if p.up}

    def trunk_ports(self, dpid: int) -> frozenset[int]:
        return frozenset(link.port_on(dpid) for link in self.links if dpid in (link.a_dpid, link.b_dpid))

    def graph(self) -> nx.Graph:
        """Switch graph; parallel links collapse to the one with the lowest ports."""
        g = nx.Graph()
        g.add_nodes_from(sorted(self.ports))
        for link in sorted(self.links):
            if not g.has_edge(link.a_dpid, link.b_dpid):
                g.add_edge(link.a_dpid, link.b_dpid, link=link)
        return g


def resolve_port(ports: Mapping[int, PortInfo], ref: int | str) -> int | None:
    """The OpenFlow number of a declared port (a number, or an interface name among ``ports``)."""
    if isinstance(ref, int):
        return ref
    for info in ports.values():
        if info.name == ref:
            return info.port_no
    return None


def bfs_parents(graph: nx.Graph, root: int) -> dict[int, int | None]:
    """Parent of every node reachable from ``root`` in a BFS visiting neighbours in dpid order.

    The path from any node to ``root`` follows parents, so paths toward one
    destination share suffixes (a packet forwarded hop by hop stays on its path).

    >>> g = nx.cycle_graph([1, 2, 3, 4])
    >>> bfs_parents(g, 1)
    {1: None, 2: 1, 4: 1, 3: 2}
    """
    parents: dict[int, int | None] = {root: None}
    frontier = [root]
    while frontier:
        nxt: list[int] = []
        for node in frontier:
            for nbr in sorted(graph.neighbors(node)):
                if nbr not in parents:
                    parents[nbr] = node
                    nxt.append(nbr)
        frontier = nxt
    return parents


def edge_link(graph: nx.Graph, u: int, v: int) -> LinkKey:
    link: LinkKey = graph.edges[u, v]["link"]
    return link
