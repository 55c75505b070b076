"""Destination labels: unicast crosses the fabric by destination switch, not by host.

The first switch a frame meets (where its sender is, or where it is routed
or load-balanced into its network) looks its destination MAC up as before,
and rewrites it to a *label MAC* that names the destination switch; every
switch on the way forwards on that label alone (one rule per destination
switch, masked on the label bits), and the destination switch writes the
host's MAC back before anything else there looks at it. So a transit switch
(a spine) holds rules per switch, not per host, and learning a host touches
only the switches where its network has edge ports.

This is PortLand's pseudo MAC (Niranjan Mysore et al., SIGCOMM 2009:
edge switches rewrite a host's MAC to a location-encoding PMAC and back,
core switches forward on a PMAC prefix) in the place where ONOS Trellis
pushes an MPLS label per destination leaf. A MAC label needs no new header:
the 802.1Q tag (the network's VLAN id, and the marks in its priority bits,
:data:`~controller.flows.pipeline.PCP_STATEFUL` and
:data:`~controller.flows.pipeline.PCP_DETOUR`) stays as it is, on patch
ports, veth cables and inside tunnels alike, so isolation, conntrack marks,
fast failover and the tunnel key (VNI) work unchanged.

A label MAC, 48 bits:

- bits 40-47: :data:`LABEL_OCTET` (``0xaa``: unicast, locally administered);
- bits 28-39: the destination switch's 12-bit label (:func:`assign_labels`);
- bits 0-27: the low 28 bits of the host's own MAC.

No MAC can be reserved for labels: a kernel draws a veth's or tap's MAC at
random among the locally administered unicast ones, so one host in 64 has a
MAC starting with ``aa``. Such a host is learned like any other and
forwarded by its own MAC on every switch on the way, as without labels: its
rules, one per host, sit above the label rules, one per switch. Two hosts
of one network on one switch whose MACs agree in the low 28 bits would
share a label MAC: those are forwarded by their own MAC too (:func:`label_key`
finds them). A frame with a label MAC that no host claims any more (its host
expired or moved on the way) is dropped at the labelled switch.

Left alone: a host whose own MAC equals another host's label MAC in the
same network (a 2^-40 chance, or a chosen MAC) draws that host's labelled
frames to itself; it could as well claim that host's MAC, as on any
learning switch, and port security (declared MACs) stops both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

LABEL_OCTET = 0xAA
"""The first byte of every label MAC (:data:`controller.config.routing.LABEL_MAC_PREFIX` rejects it for VMs)."""
LABEL_BITS = 12
HOST_BITS = 28
LABEL_SPACE = ("aa:00:00:00:00:00", "ff:00:00:00:00:00")
"""Match (value, mask) of every label MAC."""
_SWITCH_MASK = "ff:ff:f0:00:00:00"


def _mac(value: int) -> str:
    return value.to_bytes(6, "big").hex(":")


def _int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


def in_label_space(mac: str) -> bool:
    """Is ``mac`` (``aa:bb:..``) a label MAC, which no host may have?

    >>> in_label_space("aa:00:12:34:56:78"), in_label_space("02:00:00:00:00:01")
    (True, False)
    """
    return _int(mac) >> 40 == LABEL_OCTET


def label_mac(label: int, mac: str) -> str:
    """The label MAC of host ``mac`` behind the switch labelled ``label``.

    >>> label_mac(0x123, "02:00:0a:bc:de:f1")
    'aa:12:3a:bc:de:f1'
    """
    low = _int(mac) & ((1 << HOST_BITS) - 1)
    return _mac((LABEL_OCTET << 40) | (label << HOST_BITS) | low)


def switch_match(label: int) -> tuple[str, str]:
    """Match (value, mask) on ``eth_dst`` of every label MAC of the switch labelled ``label``.

    >>> switch_match(0x123)
    ('aa:12:30:00:00:00', 'ff:ff:f0:00:00:00')
    """
    return _mac((LABEL_OCTET << 40) | (label << HOST_BITS)), _SWITCH_MASK


def label_key(vlan: int, dpid: int, mac: str) -> tuple[int, int, int]:
    """What two hosts share exactly when their label MACs would be equal (network, switch, low bits)."""
    return vlan, dpid, _int(mac) & ((1 << HOST_BITS) - 1)


def assign_labels(dpids: Iterable[int]) -> dict[int, int]:
    """A 12-bit label per switch: a digest of its dpid, the next free one on a collision.

    Switches are visited in dpid order, so the same switches always get the
    same labels, and adding a switch changes no other switch's label unless
    it collides with it.

    >>> labels = assign_labels([1, 2, 0x1234])
    >>> len(set(labels.values())), all(0 <= v < 4096 for v in labels.values())
    (3, True)

    Raises
    ------
    ValueError
        If there are more than 4,096 switches.
    """
    mask = (1 << LABEL_BITS) - 1
    ordered = sorted(set(dpids))
    if len(ordered) > mask + 1:
        raise ValueError(f"{len(ordered)} switches: at most {mask + 1} can be labelled")
    taken: set[int] = set()
    out: dict[int, int] = {}
    for dpid in ordered:
        value = int.from_bytes(hashlib.blake2b(dpid.to_bytes(8, "big"), digest_size=2).digest(), "big") & mask
        while value in taken:
            value = (value + 1) & mask
        taken.add(value)
        out[dpid] = value
    return out
