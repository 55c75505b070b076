"""Labelled transit: how each switch forwards toward each destination switch, per network.

:func:`transit_by_switch` turns the routes of every network (network VLAN
-> destination switch -> switch -> :class:`~controller.fabric.protection.Hop`)
around into switch -> destination switch -> network VLAN -> hop, which the
L2 app's label rules read one switch at a time
(:meth:`~controller.fabric.view.FabricView.transit_hops`).
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.fabric.protection import Hop

Routes = Mapping[int, Mapping[int, Hop]]
"""Destination switch -> switch -> its hop toward it (one network's routes)."""


def transit_by_switch(routes_by_vlan: Mapping[int, Routes]) -> dict[int, dict[int, dict[int, Hop]]]:
    """Switch -> destination switch (ascending) -> network VLAN (ascending) -> hop; a switch's route to
    itself is left out.

    Networks that route alike share one hops mapping per destination (the view
    computes each once): such a mapping is walked once for all its networks, so
    the time goes with switches x destinations x distinct mappings, not x networks.
    """
    groups: dict[int, dict[int, tuple[Mapping[int, Hop], list[int]]]] = {}
    """Destination -> id of a hops mapping -> (the mapping, the VLANs that route by it, ascending)."""
    for vlan, routes in sorted(routes_by_vlan.items()):
        for dst, hops in routes.items():
            by_hops = groups.setdefault(dst, {})
            found = by_hops.get(id(hops))
            if found is None:
                by_hops[id(hops)] = (hops, [vlan])
            else:
                found[1].append(vlan)
    out: dict[int, dict[int, dict[int, Hop]]] = {}
    for dst, by_hops in sorted(groups.items()):
        for hops, vlans in by_hops.values():
            for dpid, hop in hops.items():
                if dpid != dst:
                    out.setdefault(dpid, {}).setdefault(dst, {}).update(dict.fromkeys(vlans, hop))
        if len(by_hops) > 1:  # VLANs of several mappings: put back in VLAN order
            for by_dst in out.values():
                if dst in by_dst:
                    by_dst[dst] = dict(sorted(by_dst[dst].items()))
    return out
