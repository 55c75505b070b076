"""Backup next hops for fast failover: a cut link is bypassed in the datapath.

Toward each destination switch ``D`` every switch forwards along the BFS
tree of :func:`controller.fabric.topology.bfs_parents` (its *primary* port). For a
switch ``Y`` this module picks one *backup* port, which an OpenFlow
fast-failover group takes while the primary port is down, so known unicast
keeps flowing before the controller reacts, and while it is away:

- an **exit**: a neighbour ``v`` outside ``Y``'s subtree (or ``Y``'s parent
  over a parallel cable). ``v``'s tree path never passes ``Y``, so ``v``
  delivers as usual: the loop-free alternate of RFC 5286.
- a **U-turn** into a child ``c``, where no exit exists (in a ring of four or
  more, a switch next to the destination has none). Traffic toward ``D``
  never reaches ``c`` from its parent unless that parent's link is cut, so
  ``c`` *bounces* detoured frames arriving on its primary port to its own
  backup; and ``Y`` sends frames that come back from ``c`` (``c``'s own
  traffic) back to ``c`` with ``IN_PORT`` (OpenFlow never outputs to the
  in-port).

An option's *height* is the depth of the highest tree node whose subtree
the detour leaves: an exit ``v`` leaves every subtree below the lowest
common ancestor of ``Y`` and ``v``; a U-turn through ``c`` inherits ``c``'s
height, and counts only if that is above ``Y``. Each switch takes the
highest option (then the shortest detour), so a U-turn chain that starts
below a cut link always ends outside the cut-off subtree: for any single
cut link, frames are delivered exactly once. With several links down at
once a frame may be dropped, never looped: a frame sent onto a backup is
marked and never takes a second one (see :func:`apps.l2.forward_rules`),
and the controller recomputes as soon as it hears of the cuts.

Which of equally good options a network takes prefers switches the
network already uses, so its VLAN spreads to as few trunks as possible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import networkx as nx

from controller.fabric.topology import LinkKey, edge_link

GROUP_ID_BITS = 24


@dataclass(frozen=True, order=True)
class Option:
    """One backup for a switch toward a destination: via ``link`` to ``node``."""

    height: int
    """Depth of the highest tree node whose subtree the detour leaves (smaller: better)."""
    cost: int
    """Hops from the switch to the destination along the detour."""
    uturn: bool
    node: int
    link: LinkKey


@dataclass(frozen=True)
class Hop:
    """How one switch forwards one network's frames toward one destination switch."""

    port: int
    """The primary port (first link of the shortest path)."""
    alt: int | None = None
    """The backup port a fast-failover group takes while ``port`` is down (None: unprotected)."""
    uturn: bool = False
    """``alt`` leads into a child that bounces: frames back from ``alt`` need ``IN_PORT``."""
    bounce: bool = False
    """The parent's backup is a U-turn into this switch: frames arriving on ``port`` go to ``alt``."""


BackupKind = Literal["ff", "back"]
BackupKey = tuple[BackupKind, int, int]
"""A backup group by content: ("ff", primary, backup) or ("back", primary, backup).

"ff" sends out of the backup port; "back" (for frames that arrived on the
backup port) sends back out of the in-port."""


class DestinationTree:
    """The shortest-path tree toward ``dst`` and every switch's best backup options.

    Parameters
    ----------
    graph
        The switch graph (one edge per switch pair, its lowest cable).
    cables
        Every cable at each switch: ``(link, neighbour)``, sorted.
    dst
        The destination switch.
    parents
        ``bfs_parents(graph, dst)``: a dict in BFS order.

    Examples
    --------
    >>> from controller.fabric.topology import bfs_parents
    >>> g = nx.Graph()
    >>> links = [LinkKey.of(i, 10, i % 4 + 1, 11) for i in range(1, 5)]
    >>> for link in links:
    ...     g.add_edge(link.a_dpid, link.b_dpid, link=link)
    >>> tree = DestinationTree(g, cables_of(links), 2, bfs_parents(g, 2))
    >>> opt = tree.choose(1, frozenset())   # 1 -> 2 is cut: U-turn into 4, which goes on to 3
    >>> opt.node, opt.uturn, tree.choose(4, frozenset()).node
    (4, True, 3)
    """

    def __init__(
        self,
        graph: nx.Graph,
        cables: Mapping[int, Sequence[tuple[LinkKey, int]]],
        dst: int,
        parents: Mapping[int, int | None],
    ) -> None:
        self.dst = dst
        self.parent = parents
        self._graph = graph
        self.depth: dict[int, int] = {}
        children: dict[int, list[int]] = {n: [] for n in parents}
        for node, parent in parents.items():  # BFS order: a parent comes before its children
            self.depth[node] = 0 if parent is None else self.depth[parent] + 1
            if parent is not None:
                children[parent].append(node)
        self._enter, self._leave = _euler_tour(dst, children)
        self.options: dict[int, tuple[Option, ...]] = {}
        """Per switch, its best options (equal height and cost), in a fixed order."""
        for node in sorted(parents, key=lambda n: (-self.depth[n], n)):
            if node != dst:
                self.options[node] = self._best(node, cables.get(node, ()))

    def within(self, node: int, root: int) -> bool:
        """Is ``node`` in the subtree of ``root``?"""
        return self._enter[root] <= self._enter[node] < self._leave[root]

    def primary_link(self, node: int) -> LinkKey:
        parent = self.parent[node]
        assert parent is not None
        return edge_link(self._graph, node, parent)

    def _lca_depth(self, node: int, other: int) -> int:
        up = self.parent[node]
        while up is not None and not self.within(other, up):
            up = self.parent[up]
        return self.depth[up] if up is not None else 0

    def _best(self, node: int, cables: Sequence[tuple[LinkKey, int]]) -> tuple[Option, ...]:
        primary = self.primary_link(node)
        parent = self.parent[node]
        depth = self.depth[node]
        found: list[Option] = []
        for link, nbr in cables:
            if link == primary or nbr == node or nbr not in self.depth:
                continue
            if nbr == parent:  # a parallel cable to the parent
                found.append(Option(depth - 1, depth, False, nbr, link))
            elif not self.within(nbr, node):
                found.append(Option(self._lca_depth(node, nbr), 1 + self.depth[nbr], False, nbr, link))
            elif self.parent[nbr] == node and link == self.primary_link(nbr):
                below = self.options.get(nbr)
                if below and below[0].height < depth:
                    found.append(Option(below[0].height, 1 + below[0].cost, True, nbr, link))
        if not found:
            return ()
        top = min((o.height, o.cost) for o in found)
        return tuple(sorted(o for o in found if (o.height, o.cost) == top))

    def choose(self, node: int, prefer: frozenset[int]) -> Option | None:
        """The backup of ``node``, preferring switches in ``prefer`` among equals; None if none."""
        options = self.options.get(node, ())
        if not options:
            return None
        return min(options, key=lambda o: (o.node not in prefer, o.uturn, o.node, o.link))


def _euler_tour(root: int, children: Mapping[int, list[int]]) -> tuple[dict[int, int], dict[int, int]]:
    """Enter and leave counters of a DFS: ``x`` is below ``r`` iff enter[r] <= enter[x] < leave[r]."""
    enter: dict[int, int] = {}
    leave: dict[int, int] = {}
    clock = 0
    stack: list[tuple[int, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            leave[node] = clock
            continue
        enter[node] = clock
        clock += 1
        stack.append((node, True))
        stack.extend((c, False) for c in sorted(children[node], reverse=True))
    return enter, leave


def cables_of(links: Iterable[LinkKey]) -> dict[int, list[tuple[LinkKey, int]]]:
    """Every cable at each switch as ``(link, neighbour)``, sorted by link."""
    out: dict[int, list[tuple[LinkKey, int]]] = {}
    for link in sorted(links):
        out.setdefault(link.a_dpid, []).append((link, link.b_dpid))
        out.setdefault(link.b_dpid, []).append((link, link.a_dpid))
    return out


def routes_toward(
    tree: DestinationTree, starts: Iterable[int], prefer: frozenset[int]
) -> tuple[dict[int, Hop], set[LinkKey]]:
    """How each switch forwards one network's frames toward ``tree.dst``, and the links that takes.

    Switches in ``starts`` (those the network's traffic crosses) get a
    backup; so do the switches of U-turn chains (they need theirs to bounce).
    Switches that only carry detoured frames toward the destination (the
    tree path of an exit) forward on their primary port only.
    """
    chosen: dict[int, Option | None] = {}
    plain: set[int] = set()
    bounce: set[int] = set()
    work = [(n, True) for n in sorted(starts, reverse=True)]
    while work:
        node, protect = work.pop()
        if node == tree.dst or node not in tree.options:
            continue
        if protect and node not in chosen:
            option = chosen[node] = tree.choose(node, prefer)
            if option is not None:
                work.append((option.node, option.uturn))
                if option.uturn:
                    bounce.add(option.node)
        elif node in chosen or node in plain:
            continue
        plain.add(node)
        parent = tree.parent[node]
        assert parent is not None
        work.append((parent, False))
    hops: dict[int, Hop] = {}
    links: set[LinkKey] = set()
    for node in sorted(plain | set(chosen)):
        primary = tree.primary_link(node)
        links.add(primary)
        option = chosen.get(node)
        if option is None:
            hops[node] = Hop(primary.port_on(node))
        else:
            links.add(option.link)
            hops[node] = Hop(primary.port_on(node), option.link.port_on(node), option.uturn, node in bounce)
    return hops, links


def backup_keys(hop: Hop) -> list[BackupKey]:
    """The backup groups a switch needs for ``hop``."""
    if hop.alt is None:
        return []
    keys: list[BackupKey] = [("ff", hop.port, hop.alt)]
    if hop.uturn:
        keys.append(("back", hop.port, hop.alt))
    return keys


def assign_group_ids(keys: Iterable[BackupKey], base: int) -> dict[BackupKey, int]:
    """Group ids for one switch's backup groups: ``base`` plus a 24-bit digest of the key.

    A collision takes the next free id; keys are visited in sorted order, so
    the same keys always get the same ids.

    >>> ids = assign_group_ids([("ff", 10, 11), ("back", 10, 11)], 4 << 24)
    >>> sorted(hex(i >> 24) for i in ids.values()), len(set(ids.values()))
    (['0x4', '0x4'], 2)
    """
    mask = (1 << GROUP_ID_BITS) - 1
    taken: set[int] = set()
    out: dict[BackupKey, int] = {}
    for key in sorted(set(keys)):
        low = int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=3).digest(), "big")
        while low in taken:
            low = (low + 1) & mask
        taken.add(low)
        out[key] = base | low
    return out
