"""Flood trees as link sets: pruning to a network's switches, and each switch's ports on a tree."""

from __future__ import annotations

from collections.abc import Iterable

from controller.fabric.topology import LinkKey


def prune_tree(tree: frozenset[LinkKey], members: frozenset[int]) -> frozenset[LinkKey]:
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


def ports_on_tree(tree: Iterable[LinkKey]) -> dict[int, list[int]]:
    """Switch -> its ports on the links of ``tree``, ascending (a switch off the tree: absent).

    >>> ports_on_tree([LinkKey.of(1, 10, 2, 11), LinkKey.of(2, 12, 3, 10)])
    {1: [10], 2: [11, 12], 3: [10]}
    """
    found: dict[int, list[int]] = {}
    for link in tree:
        found.setdefault(link.a_dpid, []).append(link.a_port)
        if link.b_dpid != link.a_dpid:  # a loop on one switch counts once, as LinkKey.port_on sees it
            found.setdefault(link.b_dpid, []).append(link.b_port)
    return {d: sorted(ports) for d, ports in sorted(found.items())}
