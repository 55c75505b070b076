"""The one seam deciding how a network crosses between switches.

Inside a switch's pipeline every frame carries its network's VLAN tag
(pushed at an edge port by ``ingress``). Today a network crosses an
inter-switch link as that tag (IEEE 802.1Q trunk); VMs send and receive
untagged. Apps build trunk and edge actions only through these functions,
so an overlay can replace them for tunnel ports (a VNI instead of a tag)
without touching the apps.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from controller.effects import DumpedFlow
from controller.flows.pipeline import T_INGRESS
from controller.flows.rules import OFPVID_PRESENT, Action, Match, Output, PopVlan, make_match


def from_trunk(port: int, vlan: int) -> Match:
    """Match of network ``vlan``'s frames arriving on trunk ``port``."""
    return make_match(in_port=port, vlan_vid=OFPVID_PRESENT | vlan)


def to_trunks(ports: Iterable[int]) -> tuple[Action, ...]:
    """Send a frame of the pipeline (tagged) on to other switches through trunk ``ports``."""
    return tuple(Output(p) for p in ports)


def to_edges(ports: Iterable[int]) -> tuple[Action, ...]:
    """Deliver a frame of the pipeline to VMs on edge ``ports`` (untagged). Put it after any trunk output."""
    outs = tuple(Output(p) for p in ports)
    return ((PopVlan(),) + outs) if outs else ()


def trunk_ports_in_dump(dump: Collection[DumpedFlow]) -> frozenset[int]:
    """Ports that a dump's ingress rules treat as trunks (a network's tag accepted, any source).

    A tag with VLAN id 0 is a priority tag, which edge ports accept (or drop
    when another tag follows it): it makes no trunk.
    """
    out = set()
    for flow in dump:
        if flow.table != T_INGRESS:
            continue
        port, vid = flow.match.get("in_port"), flow.match.get("vlan_vid")
        if (
            isinstance(port, int)
            and isinstance(vid, int)
            and vid & OFPVID_PRESENT
            and vid & 0x0FFF
            and "eth_src" not in flow.match
        ):
            out.add(port)
    return frozenset(out)
