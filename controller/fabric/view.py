"""A read-only snapshot of model + topology that apps compile rules from.

It answers the questions every app asks: which edge ports of a switch
belong to which network, which VM sits on a port, which links carry a
network, and the next hop from one switch toward another. Answers are
computed once per snapshot and are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx

from controller.config.model import Model, Network, PortRef, Vm
from controller.fabric.admission import LinkPolicy
from controller.fabric.crossing import PLAIN, Crossing
from controller.fabric.protection import (
    BackupKey,
    DestinationTree,
    Hop,
    assign_group_ids,
    backup_keys,
    cables_of,
    routes_toward,
)
from controller.fabric.topology import MAX_PHYSICAL_PORT, LinkKey, Topology, bfs_parents, edge_link, resolve_port
from controller.flows.pipeline import APP_L2


@dataclass(frozen=True)
class Host:
    """A learned host: MAC ``mac`` of network VLAN ``vlan`` at ``dpid``/``port``."""

    vlan: int
    mac: str
    dpid: int
    port: int


@dataclass(frozen=True)
class NetworkFabric:
    """Where one network lives.

    ``members`` have its edge ports (or its router's uplink); ``nodes`` are the switches its flood
    tree and shortest paths cross (and those where packets are routed into
    it: the members of the other networks on its router); ``links`` are those its tree, paths and
    backup paths use (its VLAN is carried there and nowhere else);
    ``routes`` says, per member, how each switch forwards toward it
    (see :mod:`controller.fabric.protection`).
    """

    members: frozenset[int]
    nodes: frozenset[int]
    links: frozenset[LinkKey]
    tree: frozenset[LinkKey]
    routes: Mapping[int, Mapping[int, Hop]] = field(default_factory=dict, hash=False, compare=False)


NO_FABRIC = NetworkFabric(frozenset(), frozenset(), frozenset(), frozenset())
"""The fabric of a network that has none here (no member connected)."""


class FabricView:
    """Snapshot of the model and the live topology (copy taken at construction)."""

    def __init__(
        self,
        model: Model,
        topology: Topology,
        probation: frozenset[tuple[int, int]] = frozenset(),
        moves: Mapping[str, tuple[str, PortRef]] | None = None,
    ) -> None:
        self.model = model
        self.probation = probation
        """(dpid, port) of zero-config ports not yet flooded to: LLDP may still find a link there."""
        self.moves: Mapping[str, tuple[str, PortRef]] = dict(moves or {})
        """VMs being migrated (``vmn migrate``) -> their destination (switch, port): an edge port of
        the VM too, until the file declares it there."""
        self.ports = {d: dict(p) for d, p in topology.ports.items()}
        self.links = frozenset(topology.links)
        self._topology = topology
        self._dest_trees: dict[int, DestinationTree] = {}

    @cached_property
    def graph(self) -> nx.Graph:
        return self._topology.graph()

    @property
    def dpids(self) -> list[int]:
        """Connected switches that this model may program, in dpid order."""
        return sorted(d for d in self.ports if self.model.knows_dpid(d))

    def trunk_ports(self, dpid: int) -> frozenset[int]:
        return self._trunks.get(dpid, frozenset())

    @cached_property
    def _trunks(self) -> Mapping[int, frozenset[int]]:
        out: dict[int, set[int]] = {}
        for link in self.links:
            out.setdefault(link.a_dpid, set()).add(link.a_port)
            out.setdefault(link.b_dpid, set()).add(link.b_port)
        return {d: frozenset(p) for d, p in out.items()}

    def port_number(self, dpid: int, port: int | str) -> int | None:
        """Resolve a declared port (number or interface name) on ``dpid``."""
        return resolve_port(self.ports.get(dpid, {}), port)

    @cached_property
    def link_policy(self) -> LinkPolicy:
        """Which ports may be trunks, which discovered links may be used (:mod:`controller.fabric.admission`)."""
        return LinkPolicy.of(self.model, self.ports)

    # -- tunnels between hosts ------------------------------------------------
    @cached_property
    def tunnels(self) -> frozenset[LinkKey]:
        """The links in use that are tunnels between hosts (see :mod:`controller.fabric.tunnels`)."""
        return frozenset(self.links & set(self.link_policy.tunnels or {}))

    def crossing(self, dpid: int) -> Crossing:
        """How networks cross the trunk and tunnel ports of ``dpid`` (:class:`~controller.fabric.crossing.Crossing`)."""
        return self._crossings.get(dpid, PLAIN)

    @cached_property
    def _crossings(self) -> Mapping[int, Crossing]:
        ends: dict[int, set[int]] = {}
        for dpid, port in self.link_policy.tunnel_ends or {}:
            ends.setdefault(dpid, set()).add(port)
        keys = {net.vlan: net.key for net in self.model.networks}
        return {dpid: Crossing(frozenset(ports), keys) for dpid, ports in ends.items()}

    @cached_property
    def _local_graph(self) -> nx.Graph:
        """The switch graph without tunnels: each host's bridges and the cables between them."""
        if not self.tunnels:
            return self.graph
        g = self.graph.copy()
        g.remove_edges_from([(u, v) for u, v, link in self.graph.edges(data="link") if link in self.tunnels])
        return g

    @cached_property
    def _gateways(self) -> Mapping[int, int]:
        """Switch -> the switch that floods for its part of the fabric (its cable-joined component) over tunnels.

        That is the component's lowest-dpid switch with a tunnel in use; a
        component without one has none.
        """
        ends = {d for link in self.tunnels for d in (link.a_dpid, link.b_dpid)}
        out: dict[int, int] = {}
        for component in nx.connected_components(self._local_graph):
            gateways = sorted(ends & component)
            if gateways:
                out.update({d: gateways[0] for d in component})
        return out

    def _flood_tree(self, members: frozenset[int]) -> frozenset[LinkKey]:
        """The links a network's floods take: a loop-free tree among ``members``.

        Without tunnels, the pruned spanning tree. With tunnels, the pruned
        spanning forest of each part of the fabric joined by cables, and a
        full mesh of tunnels between the gateways of the parts that have
        members: head-end replication, where a frame from a tunnel never
        floods into another one (:func:`apps.flood.flood_rules`).
        """
        if not self.tunnels:
            return _prune_tree(self._spanning_tree, members)
        gateways = sorted({self._gateways[m] for m in members if m in self._gateways})
        mesh: set[LinkKey] = set()
        if len(gateways) > 1:
            for i, a in enumerate(gateways):
                for b in gateways[i + 1 :]:
                    link = self.graph.edges[a, b]["link"] if self.graph.has_edge(a, b) else None
                    if link in self.tunnels:
                        mesh.add(link)
        anchors = members | frozenset(d for link in mesh for d in (link.a_dpid, link.b_dpid))
        return _prune_tree(self._spanning_tree, anchors) | frozenset(mesh)

    @cached_property
    def _edges(self) -> Mapping[int, Mapping[int, tuple[Network, Vm | None]]]:
        out: dict[int, dict[int, tuple[Network, Vm | None]]] = {}
        if self.model.zero_config:
            net = self.model.networks[0]
            for dpid in self.dpids:
                trunks = self.trunk_ports(dpid)
                out[dpid] = {
                    p: (net, None) for p in sorted(self.ports[dpid]) if p < MAX_PHYSICAL_PORT and p not in trunks
                }
            return out
        for dpid in self.dpids:
            switch = self.model.switch_by_dpid[dpid]
            ports: dict[int, tuple[Network, Vm | None]] = {}
            places = [(vm, vm.port) for vm in self.model.vms_on(switch.name)]
            places += [
                (self.model.vm_by_name[name], port)
                for name, (to, port) in sorted(self.moves.items())
                if to == switch.name and name in self.model.vm_by_name
            ]
            for vm, ref in places:
                number = self.port_number(dpid, ref)
                if number is not None and number not in self.trunk_ports(dpid):
                    ports.setdefault(number, (self.model.network_by_name[vm.network], vm))
            out[dpid] = dict(sorted(ports.items()))
        return out

    def edge_ports(self, dpid: int) -> Mapping[int, tuple[Network, Vm | None]]:
        """Edge port -> (network, declared VM or None), sorted by port."""
        return self._edges.get(dpid, {})

    @cached_property
    def declared_macs(self) -> Mapping[str, frozenset[tuple[int, int]]]:
        """MAC of every declared VM with a ``mac`` -> its (dpid, port)s on connected switches.

        One place, or two while the VM is being migrated (:attr:`moves`).
        """
        out: dict[str, set[tuple[int, int]]] = {}
        for dpid in self.dpids:
            for port, (_, vm) in self.edge_ports(dpid).items():
                if vm is not None and vm.mac:
                    out.setdefault(vm.mac, set()).add((dpid, port))
        return {mac: frozenset(places) for mac, places in out.items()}

    def network_ports(self, dpid: int, vlan: int) -> list[int]:
        return [p for p, (net, _) in self.edge_ports(dpid).items() if net.vlan == vlan]

    def flood_ports(self, dpid: int, vlan: int) -> list[int]:
        """Edge ports of network ``vlan`` that floods go to (ports on probation excluded)."""
        return [p for p in self.network_ports(dpid, vlan) if (dpid, p) not in self.probation]

    @cached_property
    def _spanning_tree(self) -> frozenset[LinkKey]:
        """A spanning forest of the switch graph without tunnels (BFS from each part's lowest dpid)."""
        graph = self._local_graph
        tree: set[LinkKey] = set()
        seen: set[int] = set()
        for root in sorted(graph.nodes):
            if root in seen:
                continue
            parents = bfs_parents(graph, root)
            seen.update(parents)
            tree.update(edge_link(graph, n, p) for n, p in parents.items() if p is not None)
        return frozenset(tree)

    @cached_property
    def _parents_toward(self) -> Mapping[int, Mapping[int, int | None]]:
        return {d: bfs_parents(self.graph, d) for d in self.graph.nodes}

    def next_hop_port(self, src: int, dst: int) -> int | None:
        """Port on ``src`` of the first link of the shortest path to ``dst``; None if none."""
        parent = self._parents_toward.get(dst, {}).get(src)
        if parent is None:
            return None
        return edge_link(self.graph, src, parent).port_on(src)

    @cached_property
    def _cables(self) -> Mapping[int, list[tuple[LinkKey, int]]]:
        return cables_of(self.links)

    def destination_tree(self, dst: int) -> DestinationTree:
        """The shortest-path tree toward ``dst`` with every switch's backup options (cached)."""
        tree = self._dest_trees.get(dst)
        if tree is None:
            tree = self._dest_trees[dst] = DestinationTree(
                self.graph, self._cables, dst, self._parents_toward.get(dst, {dst: None})
            )
        return tree

    def routes(self, vlan: int, dst: int) -> Mapping[int, Hop]:
        """How each switch forwards network ``vlan``'s frames toward member ``dst`` (empty: not a member)."""
        return self.fabric(vlan).routes.get(dst, {})

    def backup_groups(self, dpid: int) -> Mapping[BackupKey, int]:
        """The backup groups the routes of all networks need on ``dpid``, with their group ids."""
        return self._backup_groups.get(dpid, {})

    @cached_property
    def _backup_groups(self) -> Mapping[int, Mapping[BackupKey, int]]:
        keys: dict[int, set[BackupKey]] = {}
        for fab in self._fabrics.values():
            for hops in fab.routes.values():
                for dpid, hop in hops.items():
                    keys.setdefault(dpid, set()).update(backup_keys(hop))
        return {dpid: assign_group_ids(k, APP_L2 << 24) for dpid, k in sorted(keys.items()) if k}

    def fabric(self, vlan: int) -> NetworkFabric:
        fab = self._fabrics.get(vlan)
        return NO_FABRIC if fab is None else fab

    @cached_property
    def _fabrics(self) -> Mapping[int, NetworkFabric]:
        return {net.vlan: self._compute_fabric(net.vlan) for net in self.model.networks}

    def _routed_from(self, vlan: int) -> frozenset[int]:
        """Switches with edge ports of the other networks on network ``vlan``'s router.

        A routed packet enters its destination network at the first switch
        (where its sender is), so that network must reach those switches too.
        """
        net = self.model.network_by_vlan.get(vlan)
        router = self.model.router_of.get(net.name) if net is not None else None
        if router is None:
            return frozenset()
        vlans = {self.model.network_by_name[n].vlan for n in router.networks} - {vlan}
        return frozenset(d for d in self.dpids for v in vlans if self.network_ports(d, v))

    def uplink_dpid(self, network: str) -> int | None:
        """The connected switch of the uplink of ``network``'s router (None: no uplink, or not connected)."""
        uplink = self.model.uplink_of.get(network)
        switch = self.model.switch_by_name.get(uplink.switch) if uplink is not None else None
        return switch.dpid if switch is not None and switch.dpid in self.ports else None

    def _compute_fabric(self, vlan: int) -> NetworkFabric:
        members = frozenset(d for d in self.dpids if self.network_ports(d, vlan))
        net = self.model.network_by_vlan.get(vlan)
        exit_dpid = self.uplink_dpid(net.name) if net is not None else None
        if exit_dpid is not None:  # the network's traffic to the outside is NATed on the uplink's switch
            members |= {exit_dpid}
        reach = members | self._routed_from(vlan)
        tree = self._flood_tree(reach)
        nodes = set(reach) | {d for link in tree for d in (link.a_dpid, link.b_dpid)}
        links = set(tree)
        changed = True
        while changed:  # close over shortest paths from every node to every member
            changed = False
            for dst in sorted(members):
                parents = self._parents_toward.get(dst, {})
                for src in sorted(nodes):
                    node = src
                    while parents.get(node) is not None:
                        parent = parents[node]
                        assert parent is not None
                        links.add(edge_link(self.graph, node, parent))
                        if parent not in nodes:
                            nodes.add(parent)
                            changed = True
                        node = parent
        routes: dict[int, Mapping[int, Hop]] = {}
        prefer = frozenset(nodes)
        for dst in sorted(members):
            hops, used = routes_toward(self.destination_tree(dst), nodes - {dst}, prefer)
            routes[dst] = hops
            links |= used
        return NetworkFabric(members, frozenset(nodes), frozenset(links), tree, routes)

    def trunk_vlans(self, dpid: int, port: int) -> list[int]:
        """VLANs a trunk port carries: networks whose paths, backup paths or flood tree use its link."""
        return sorted(
            vlan
            for vlan, fab in self._fabrics.items()
            if any(link.port_on(dpid) == port and dpid in (link.a_dpid, link.b_dpid) for link in fab.links)
        )

    def tree_ports(self, dpid: int, vlan: int) -> list[int]:
        """Trunk ports of ``dpid`` on the flood tree of network ``vlan``."""
        return sorted(link.port_on(dpid) for link in self.fabric(vlan).tree if dpid in (link.a_dpid, link.b_dpid))


def _prune_tree(tree: frozenset[LinkKey], members: frozenset[int]) -> frozenset[LinkKey]:
    """The smallest sub-forest of ``tree`` that still connects ``members``."""
    links = set(tree)
    while True:
        degree: dict[int, int] = {}
        for link in links:
            for d in (link.a_dpid, link.b_dpid):
                degree[d] = degree.get(d, 0) + 1
        leaves = {d for d, n in degree.items() if n == 1 and d not in members}
        if not leaves:
            return frozenset(links)
        links = {link for link in links if link.a_dpid not in leaves and link.b_dpid not in leaves}
