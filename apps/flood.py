"""Table ``flood``: broadcast and unknown unicast, confined to the network.

Each switch a network crosses sends the frame out of its flood-tree trunk
ports (still tagged) and then, untagged, out of the network's edge ports.
The tree is loop-free, so a ring never storms; OpenFlow never outputs a
frame back to its ingress port. Between hosts the tree is a full mesh of
tunnels among the hosts that have members (head-end replication, as
Neutron's ``br-tun`` and OVN do): a frame that came out of a tunnel goes on
to local trunks and edge ports only, never into another tunnel. In zero-config mode a port that just came up
is not flooded to until LLDP had two intervals to find a switch behind it.
"""

from __future__ import annotations

from apps.base import AppContext, Segments, per_switch
from controller.fabric.crossing import to_edges
from controller.fabric.view import FabricView
from controller.flows.pipeline import APP_FLOOD, T_FLOOD
from controller.flows.rules import OFPVID_PRESENT, Rule, make_match

PRIO_FLOOD = 10
PRIO_FROM_TUNNEL = 11


def flood_rules(view: FabricView, dpid: int) -> list[Rule]:
    """Flood rules of one switch: one per network that reaches it, plus the drop miss."""
    rules = [Rule(APP_FLOOD, T_FLOOD, 0)]
    cross = view.crossing(dpid)
    for net in view.model.networks:
        if dpid not in view.fabric(net.vlan).nodes and not view.network_ports(dpid, net.vlan):
            continue
        vid = OFPVID_PRESENT | net.vlan
        tree, edges = view.tree_ports(dpid, net.vlan), to_edges(view.flood_ports(dpid, net.vlan))
        rules.append(
            Rule(APP_FLOOD, T_FLOOD, PRIO_FLOOD, make_match(vlan_vid=vid), cross.to_trunks(tree, net.vlan) + edges)
        )
        local = cross.to_trunks([p for p in tree if p not in cross.tunnels], net.vlan) + edges
        rules += [
            Rule(APP_FLOOD, T_FLOOD, PRIO_FROM_TUNNEL, make_match(in_port=t, vlan_vid=vid), local)
            for t in sorted(cross.tunnels)
            if net.vlan in view.trunk_vlans(dpid, t)
        ]
    return rules


class Flood:
    """Table ``flood`` of every switch."""

    name = "flood"
    app_id = APP_FLOOD
    static_compile = True
    """``compile`` reads only the view: the core may reuse its rules for an equal view (:mod:`controller.precompile`)."""

    def __init__(self, ctx: AppContext) -> None:
        pass

    def compile(self, view: FabricView) -> Segments:
        return per_switch("flood", view, flood_rules)
