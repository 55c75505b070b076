"""The one seam deciding how a network crosses between switches.

Inside a switch's pipeline every frame carries its network's VLAN tag
(pushed at an edge port by ``ingress``, popped by ``output`` as it is
delivered). A network crosses an inter-switch link as that tag (IEEE
802.1Q trunk); VMs send and receive untagged. Apps build trunk and edge
actions only through these functions and :class:`Crossing`.

Between hosts (``hosts`` in the file) a network crosses a tunnel keyed by
its VNI: the sender sets the tunnel key (``set_field:VNI->tun_id``; VXLAN
RFC 7348 and Geneve RFC 8926 carry it as the 24-bit VNI) and the receiver
admits a tunnel's frames only with the VNI of a network the tunnel
carries. The 802.1Q tag stays on the inner frame: its VLAN id must agree
with the VNI, and its priority bits carry the pipeline's marks
(:data:`~controller.flows.pipeline.PCP_STATEFUL`, a stateful rule allowed
this connection; :data:`~controller.flows.pipeline.PCP_DETOUR`, on a backup
path) to the delivering host as they cross a trunk, so stateful ACLs,
load balancing and fast failover hold across hosts unchanged (as OVN's
Geneve option carries its logical ports).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Crossing:
    """How networks cross the trunk ports of one switch: ``tunnels`` are tunnel ports.

    ``keys`` maps a network's VLAN id to its VNI (absent: the VLAN id, as for
    a mirror's VLAN).
    """

    tunnels: frozenset[int] = frozenset()
    keys: Mapping[int, int] = field(default_factory=dict, hash=False, compare=False)

    def key(self, vlan: int) -> int:
        """The VNI of network ``vlan`` on tunnels."""
        return self.keys.get(vlan, vlan)

    def from_trunk(self, port: int, vlan: int) -> Match:
        """Match of network ``vlan``'s frames arriving on trunk or tunnel ``port``."""
        if port in self.tunnels:
            return make_match(in_port=port, tunnel_id=self.key(vlan), vlan_vid=OFPVID_PRESENT | vlan)
        return from_trunk(port, vlan)

    def keyed(self, vlan: int, ports: Iterable[int]) -> tuple[Action, ...]:
        """Set network ``vlan``'s VNI when any of ``ports`` (about to be output to) is a tunnel.

        Put it before outputs or a group whose buckets may output to those ports;
        the key is ignored by every port that is not a tunnel.
        """
        return (SetField(TUNNEL_KEY, self.key(vlan)),) if self.tunnels & set(ports) else ()

    def to_trunks(self, ports: Iterable[int], vlan: int) -> tuple[Action, ...]:
        """Send a frame of network ``vlan`` (tagged) on through trunk or tunnel ``ports``."""
        out = list(ports)
        return self.keyed(vlan, out) + to_trunks(out)


TUNNEL_KEY = "tunnel_id"
"""The OXM field of the tunnel key (OVS ``tun_id``): a network's VNI on the wire."""
PLAIN = Crossing()
"""The crossing of a switch without tunnels."""


def to_edges(ports: Iterable[int]) -> tuple[Action, ...]:
    """Deliver a frame of the pipeline to VMs on edge ``ports``. Put it after any trunk output.

    Each port's copy goes through the delivery tables (``egress`` .. ``output``:
    that port's ``acl_out`` and conntrack, then out untagged), with the port in
    :data:`~controller.flows.pipeline.REG_OUT_PORT`. Every copy but the last is
    a ``clone``, so what one port's delivery does to its frame (pop the tag,
    conntrack) never reaches the next port's.
    """
    return _to_edges(tuple(ports))


@functools.lru_cache(maxsize=4096)
def _to_edges(ports: tuple[int, ...]) -> tuple[Action, ...]:
    """:func:`to_edges`, built once per port list (every learned host's forward rule asks for one)."""
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
