"""A read-only snapshot of model + topology that apps compile rules from.

It answers the questions every app asks: which edge ports of a switch
belong to which network, which VM sits on a port, which links carry a
network, and the next hop from one switch toward another. Answers are
computed once per snapshot and are deterministic.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, TypeVar

import networkx as nx

from controller.config.model import Model, Network, PortRef, Vm
from controller.fabric.admission import LinkPolicy
from controller.fabric.crossing import PLAIN, Crossing
from controller.fabric.labels import assign_labels
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
from controller.fabric.transit import transit_by_switch
from controller.fabric.trees import ports_on_tree, prune_tree
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
    entries: frozenset[int] = frozenset()
    """Where its frames enter the fabric: its members and the switches routed into it
    (each labels its unicast frames, :mod:`controller.fabric.labels`)."""


H = TypeVar("H", bound=Hashable)


class Interner(Protocol):
    """What :meth:`FabricView.intern` is: an equal value in, the one shared object out."""

    def __call__(self, value: H, /) -> H: ...


def no_interning(value: H, /) -> H:
    """An :class:`Interner` that shares nothing."""
    return value


_NO_PATH: tuple[frozenset[LinkKey], frozenset[int]] = (frozenset(), frozenset())

_NOWHERE = NetworkFabric(frozenset(), frozenset(), frozenset(), frozenset())
"""The fabric of a network that is on no connected switch."""


def port_names(model: Model) -> frozenset[str]:
    """Every port the file refers to by interface name (VMs', mirrors', links' and uplinks' ports).

    These are the model's :data:`~controller.config.model.PortRef` fields
    (``tests/unit/test_precompile.py`` checks none is left out).
    """
    refs: list[PortRef] = [vm.port for vm in model.vms]
    refs += [m.port for m in model.mirrors]
    refs += [end.port for link in model.links for end in (link.a, link.b)]
    refs += [u.port for u in model.uplinks]
    return frozenset(r for r in refs if isinstance(r, str))


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
        self._routes_memo: dict[tuple[int, frozenset[int]], tuple[dict[int, Hop], set[LinkKey]]] = {}
        self.memo: dict[Hashable, object] = {}
        """Per-snapshot memo for apps: what many rules share (keys start with the app's name)."""
        self._interned: dict[Hashable, Hashable] = {}
        self._paths_memo: dict[int, dict[int, tuple[frozenset[LinkKey], frozenset[int]]]] = {}
        self._closure_memo: dict[
            tuple[frozenset[int], frozenset[int], frozenset[LinkKey]], tuple[frozenset[int], frozenset[LinkKey]]
        ] = {}

    def intern(self, value: H) -> H:
        """The first object equal to ``value`` handed to this snapshot: equal match fields,
        actions and rules built for many ports or switches then share one object (memory).

        Values must be immutable; they live as long as the snapshot.
        """
        return self._interned.setdefault(value, value)  # type: ignore[return-value]

    @cached_property
    def key(self) -> tuple[object, ...]:
        """What this view's answers depend on besides :attr:`model`: equal keys (same model) answer alike.

        The connected switches, the links, :attr:`probation`, :attr:`moves`,
        and of each switch's ports only what is read: the numbers (zero-config
        edge ports) and, where the file names ports, the numbers of those names
        (every port with an overlay, whose tunnel ports go by name). A port's
        up state is not read: a port that goes down takes its links along.
        Used to reuse compiled rules for an equal view (:mod:`controller.precompile`).
        """
        named = port_names(self.model) | {p for _, p in self.moves.values() if isinstance(p, str)}
        ports: list[tuple[int, frozenset[object]]] = []
        for dpid, infos in sorted(self.ports.items()):
            if self.model.zero_config or self.model.overlay is not None:
                ports.append((dpid, frozenset((p.port_no, p.name) for p in infos.values())))
            elif named:
                ports.append((dpid, frozenset((p.port_no, p.name) for p in infos.values() if p.name in named)))
            else:
                ports.append((dpid, frozenset()))
        return (tuple(ports), self.links, self.probation, tuple(sorted(self.moves.items(), key=repr)))

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
            return prune_tree(self._spanning_tree, members)
        gateways = sorted({self._gateways[m] for m in members if m in self._gateways})
        mesh: set[LinkKey] = set()
        if len(gateways) > 1:
            for i, a in enumerate(gateways):
                for b in gateways[i + 1 :]:
                    link = self.graph.edges[a, b]["link"] if self.graph.has_edge(a, b) else None
                    if link in self.tunnels:
                        mesh.add(link)
        anchors = members | frozenset(d for link in mesh for d in (link.a_dpid, link.b_dpid))
        return prune_tree(self._spanning_tree, anchors) | frozenset(mesh)

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
        return list(self._ports_by_vlan.get(dpid, {}).get(vlan, ()))

    @cached_property
    def _ports_by_vlan(self) -> Mapping[int, Mapping[int, list[int]]]:
        """Switch -> network VLAN -> its edge ports there, ascending (``edge_ports`` indexed once)."""
        out: dict[int, dict[int, list[int]]] = {d: {} for d in self._edges}
        for dpid, edges in self._edges.items():
            for port, (net, _) in edges.items():
                out[dpid].setdefault(net.vlan, []).append(port)
        return out

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

    def _paths_toward(self, dst: int) -> Mapping[int, tuple[frozenset[LinkKey], frozenset[int]]]:
        """Switch -> (links, switches after it) of its shortest path to ``dst``; computed once per ``dst``."""
        found = self._paths_memo.get(dst)
        if found is None:
            parents = self._parents_toward.get(dst, {})
            found = self._paths_memo[dst] = {}
            for src in parents:
                links, nodes, node = set(), set(), src
                while (parent := parents.get(node)) is not None:
                    links.add(edge_link(self.graph, node, parent))
                    nodes.add(parent)
                    node = parent
                found[src] = (frozenset(links), frozenset(nodes))
        return found

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
        seen: set[int] = set()
        for fab in self._fabrics.values():
            for hops in fab.routes.values():
                if id(hops) in seen:  # networks that route alike share their hops (``_routes_memo``): once each
                    continue
                seen.add(id(hops))
                for dpid, hop in hops.items():
                    keys.setdefault(dpid, set()).update(backup_keys(hop))
        return {dpid: assign_group_ids(k, APP_L2 << 24) for dpid, k in sorted(keys.items()) if k}

    def fabric(self, vlan: int) -> NetworkFabric:
        return self._fabrics.get(vlan, _NOWHERE)

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
        nodes, links = self._closure(members, frozenset(reach), tree)
        routes: dict[int, Mapping[int, Hop]] = {}
        prefer = frozenset(nodes)
        for dst in sorted(members):
            found = self._routes_memo.get((dst, prefer))
            if found is None:  # networks on the same switches route alike: computed once
                found = self._routes_memo[(dst, prefer)] = routes_toward(
                    self.destination_tree(dst), nodes - {dst}, prefer
                )
            hops, used = found
            routes[dst] = hops
            links |= used
        return NetworkFabric(members, frozenset(nodes), frozenset(links), tree, routes, frozenset(reach))

    def _closure(
        self, members: frozenset[int], reach: frozenset[int], tree: frozenset[LinkKey]
    ) -> tuple[set[int], set[LinkKey]]:
        """(switches, links) of a network: ``reach``, ``tree`` and every shortest path from one of those switches
        to a member, closed over; once per distinct arguments (networks on the same switches close alike)."""
        key = (members, reach, tree)
        found = self._closure_memo.get(key)
        if found is None:
            nodes = set(reach) | {d for link in tree for d in (link.a_dpid, link.b_dpid)}
            links = set(tree)
            changed = True
            while changed:  # close over shortest paths from every node to every member
                changed = False
                for dst in sorted(members):
                    paths = self._paths_toward(dst)
                    for src in sorted(nodes):
                        path_links, path_nodes = paths.get(src, _NO_PATH)
                        links.update(path_links)
                        if not path_nodes <= nodes:
                            nodes |= path_nodes
                            changed = True
            found = self._closure_memo[key] = (frozenset(nodes), frozenset(links))
        return set(found[0]), set(found[1])

    @cached_property
    def labels(self) -> Mapping[int, int]:
        """Switch -> its destination label (:func:`controller.fabric.labels.assign_labels`), declared and connected."""
        return assign_labels({s.dpid for s in self.model.switches} | set(self.dpids))

    def transit_hops(self, dpid: int) -> Mapping[int, Mapping[int, Hop]]:
        """How ``dpid`` forwards labelled frames: destination switch -> network VLAN -> hop (sorted)."""
        return self._transit.get(dpid, {})

    @cached_property
    def _transit(self) -> Mapping[int, Mapping[int, Mapping[int, Hop]]]:
        return transit_by_switch({vlan: fab.routes for vlan, fab in self._fabrics.items()})

    def trunk_vlans(self, dpid: int, port: int) -> list[int]:
        """VLANs a trunk port carries: networks whose paths, backup paths or flood tree use its link."""
        return list(self._trunk_vlans.get((dpid, port), ()))

    @cached_property
    def _trunk_vlans(self) -> Mapping[tuple[int, int], list[int]]:
        out: dict[tuple[int, int], set[int]] = {}
        for vlan, fab in self._fabrics.items():
            for link in fab.links:
                out.setdefault((link.a_dpid, link.a_port), set()).add(vlan)
                out.setdefault((link.b_dpid, link.b_port), set()).add(vlan)
        return {end: sorted(vlans) for end, vlans in out.items()}

    def tree_ports(self, dpid: int, vlan: int) -> list[int]:
        """Trunk ports of ``dpid`` on the flood tree of network ``vlan``."""
        key = ("view-tree-ports", vlan)  # each switch's ports on the tree, found once per network
        if (by_switch := self.memo.get(key)) is None:
            by_switch = self.memo[key] = ports_on_tree(self.fabric(vlan).tree)
        return list(by_switch.get(dpid, ()))  # type: ignore[attr-defined]
