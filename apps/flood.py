"""Table ``flood``: broadcast and unknown unicast, confined to the network.

Each switch a network crosses sends the frame out of its flood-tree trunk
ports (still tagged) and then, untagged, out of the network's edge ports.
The tree is loop-free, so a ring never storms; OpenFlow never outputs a
frame back to its ingress port. In zero-config mode a port that just came up
is not flooded to until LLDP had two intervals to find a switch behind it.
"""

from __future__ import annotations

from typing import Mapping

from apps.base import Segments, per_switch
from controller.fabric.view import FabricView, Host
from controller.flows.pipeline import APP_FLOOD, T_FLOOD
from controller.flows.rules import OFPVID_PRESENT, Action, Output, PopVlan, Rule, make_match

PRIO_FLOOD = 10


def flood_rules(view: FabricView, dpid: int) -> list[Rule]:
    """Flood rules of one switch: one per network that reaches it, plus the drop miss."""
    rules = [Rule(APP_FLOOD, T_FLOOD, 0)]
    for net in view.model.networks:
        if dpid not in view.fabric(net.vlan).nodes and not view.network_ports(dpid, net.vlan):
            continue
        actions: list[Action] = [Output(p) for p in view.tree_ports(dpid, net.vlan)]
        edge = view.flood_ports(dpid, net.vlan)
        if edge:
            actions.append(PopVlan())
            actions += [Output(p) for p in edge]
        rules.append(Rule(APP_FLOOD, T_FLOOD, PRIO_FLOOD,
                          make_match(vlan_vid=OFPVID_PRESENT | net.vlan), tuple(actions)))
    return rules


class Flood:
    name = "flood"

    def compile(self, view: FabricView, hosts: Mapping[tuple[int, str], Host]) -> Segments:
        return per_switch("flood", view, flood_rules)
