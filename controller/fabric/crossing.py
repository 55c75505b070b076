"""The one seam deciding how a network crosses between switches.

Inside a switch's pipeline every frame carries its network's VLAN tag
(pushed at an edge port by ``ingress``, popped by ``output`` as it is
delivered). Today a network crosses an inter-switch link as that tag
(IEEE 802.1Q trunk); VMs send and receive untagged. Apps build trunk and edge actions only through these functions,
so an overlay can replace them for tunnel ports (a VNI instead of a tag)
without touching the apps.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from controller.effects import DumpedFlow
from controller.flows.pipeline import APP_INGRESS, REG_OUT_PORT, T_EGRESS, T_INGRESS, T_OUTPUT
from controller.flows.rules import (
    OFPVID_PRESENT,
    Action,
    Clone,
    Match,
    Output,
    PopVlan,
    Resubmit,
    Rule,
    SetField,
    make_match,
)

PRIO_OUTPUT = 10


def from_trunk(port: int, vlan: int) -> Match:
    """Match of network ``vlan``'s frames arriving on trunk ``port``."""
    return make_match(in_port=port, vlan_vid=OFPVID_PRESENT | vlan)


def to_trunks(ports: Iterable[int]) -> tuple[Action, ...]:
    """Send a frame of the pipeline (tagged) on to other switches through trunk ``ports``."""
    return tuple(Output(p) for p in ports)


def to_edges(ports: Iterable[int]) -> tuple[Action, ...]:
    """Deliver a frame of the pipeline to VMs on edge ``ports``. Put it after any trunk output.

    Each port's copy goes through the delivery tables (``egress`` .. ``output``:
    that port's ``acl_out`` and conntrack, then out untagged), with the port in
    :data:`~controller.flows.pipeline.REG_OUT_PORT`. Every copy but the last is
    a ``clone``, so what one port's delivery does to its frame (pop the tag,
    conntrack) never reaches the next port's.
    """
    handoffs = [(SetField(REG_OUT_PORT, p), Resubmit(T_EGRESS)) for p in ports]
    if not handoffs:
        return ()
    return tuple(Clone(h) for h in handoffs[:-1]) + handoffs[-1]


def edge_output(port: int, vlan: int) -> Rule:
    """The last step of a delivery to edge ``port`` of network ``vlan``: untagged, out of the port."""
    return Rule(
        APP_INGRESS,
        T_OUTPUT,
        PRIO_OUTPUT,
        make_match(**{REG_OUT_PORT: port}, vlan_vid=OFPVID_PRESENT | vlan),
        (PopVlan(), Output(port)),
    )


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
