"""LLDP probes that name their origin switch and port, built and parsed with os-ken's packet library.

An LLDPDU (IEEE 802.1AB) to the nearest-bridge group ``01:80:c2:00:00:0e``,
untagged, with TLVs in this order: Chassis ID (subtype 7, locally assigned)
``dpid:<16 lower-case hex>``, Port ID (subtype 7) the decimal OpenFlow port
number, TTL 120 s, an organisation-specific TLV (OUI ``02:56:4d``,
subtype 2) carrying the time the probe was sent (the controller's own
clock, an IEEE 754 double, seconds) and an 8-byte HMAC-SHA256 tag of all
three, keyed by the SHA-256 of the controller's secret, and End. A host that forges a probe
cannot make its port look like a link, and one that replays a probe it
captured earlier is caught by its age (:class:`~controller.fabric.links.LinkMonitor`
accepts a probe only while it is as fresh as a live link's). A host that
*relays* our probes live between two ports is not caught here: see
:mod:`controller.fabric.admission`. A probe not in this form is someone
else's LLDP and is ignored.

``os_ken.lib.packet.lldp`` builds and decodes the TLVs; the frames are the
same bytes as the struct-built ones of before. Its decoder is stricter than
the old hand-written one: Chassis ID, Port ID and TTL must come first and
in that order, End must be present, and a TLV of a type it does not know
(9-126) makes it reject the whole LLDPDU; none of that happens to our own
probes. Parsing runs once per probe per port per interval (1 s by
default): not a hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence
from typing import NamedTuple, Protocol, cast

from os_ken.lib.packet import ethernet, lldp, packet

from controller.packets import mac_str

LLDP_DST = bytes.fromhex("0180c200000e")
ETH_LLDP = 0x88CC
_ETH_HEADER = 14  # bytes
_PREFIX = b"dpid:"
_LOCALLY_ASSIGNED = 7  # Chassis ID and Port ID subtype
_TTL = 120  # seconds
_OUI = b"\x02\x56\x4d"  # locally administered, "VM"
_TAG_SUBTYPE = 2  # send time + tag (1, the tag alone, is no longer accepted)
_TAG_LEN = 8  # bytes of the truncated HMAC-SHA256
_TIME = struct.Struct("!d")


class Probe(NamedTuple):
    """One of our probes: where it was sent from and when (controller clock, seconds)."""

    dpid: int
    port: int
    sent_at: float


# -- the attributes of os-ken's (untyped) decoded TLVs that this module reads --
class _EthernetLayer(Protocol):
    ethertype: int


class _LldpLayer(Protocol):
    tlvs: list[object]  # os-ken TLV objects, in wire order


class _ChassisID(Protocol):
    subtype: int
    chassis_id: bytes


class _PortID(Protocol):
    subtype: int
    port_id: bytes


class _OrgSpecific(Protocol):
    oui: bytes  # 3 bytes
    subtype: int
    info: bytes


def _tag(secret: bytes, dpid: int, port: int, sent_at: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) of the probe's fields, keyed by the SHA-256 of ``secret``.

    HMAC pads a key shorter than its block with zero bytes, so ``b"k"`` and
    ``b"k\x00"`` would sign alike; hashing the secret first keeps every two
    secrets apart.
    """
    signed = struct.pack("!QI", dpid, port) + sent_at
    return hmac.new(hashlib.sha256(secret).digest(), signed, hashlib.sha256).digest()[:_TAG_LEN]


def build_probe(
    dpid: int, port: int, secret: bytes = b"", sent_at: float = 0.0, src_mac: bytes = bytes.fromhex("0e0000000001")
) -> bytes:
    """An LLDP frame announcing ``dpid``/``port`` at time ``sent_at``, authenticated with ``secret``.

    ``src_mac`` is the 6-byte Ethernet source; raises ValueError otherwise.
    """
    when = _TIME.pack(sent_at)
    if len(src_mac) != 6:
        raise ValueError(f"not a MAC address: {src_mac!r}")
    tlvs = [
        lldp.ChassisID(subtype=_LOCALLY_ASSIGNED, chassis_id=_PREFIX + f"{dpid:016x}".encode()),
        lldp.PortID(subtype=_LOCALLY_ASSIGNED, port_id=str(port).encode()),
        lldp.TTL(ttl=_TTL),
        lldp.OrganizationallySpecific(oui=_OUI, subtype=_TAG_SUBTYPE, info=when + _tag(secret, dpid, port, when)),
        lldp.End(),
    ]
    frame = packet.Packet()
    frame.add_protocol(ethernet.ethernet(mac_str(LLDP_DST), mac_str(src_mac), ETH_LLDP))
    frame.add_protocol(lldp.lldp(tlvs))
    frame.serialize()
    return bytes(frame.data)


def parse_probe(frame: bytes, secret: bytes = b"") -> Probe | None:
    """The :class:`Probe` of one of our probes signed with ``secret``; None for anything else.

    Never raises: a truncated, malformed, tagged or non-LLDP frame gives None.

    >>> parse_probe(build_probe(5, 7, b"k", sent_at=12.5), b"k")
    Probe(dpid=5, port=7, sent_at=12.5)
    >>> parse_probe(build_probe(5, 7, b"k"), b"other") is None
    True
    """
    tlvs = _tlvs(frame)
    if tlvs is None or len(tlvs) < 2:
        return None
    dpid, port = _dpid(tlvs[0]), _port(tlvs[1])
    if dpid is None or port is None or not dpid < 2**64 or not port < 2**32:
        return None
    signed = _signed_of(tlvs)
    if len(signed) != _TIME.size + _TAG_LEN:
        return None
    when, tag = signed[: _TIME.size], signed[_TIME.size :]
    if not hmac.compare_digest(tag, _tag(secret, dpid, port, when)):
        return None
    return Probe(dpid, port, _TIME.unpack(when)[0])


def _tlvs(frame: bytes) -> Sequence[object] | None:
    """The TLVs os-ken decodes from the untagged LLDPDU in ``frame``; None if there is none.

    os-ken's ``lldp.parser`` swallows every error of a malformed LLDPDU
    (a bare ``except``) and returns no layer; its TLV checks are ``assert``
    statements, so they vanish under ``python -O``: callers check TLV types
    themselves.
    """
    try:
        eth = ethernet.ethernet.parser(frame)[0]
    except struct.error:  # shorter than an Ethernet header
        return None
    if cast(_EthernetLayer, eth).ethertype != ETH_LLDP:
        return None
    pdu = lldp.lldp.parser(frame[_ETH_HEADER:])[0]
    return None if pdu is None else cast(_LldpLayer, pdu).tlvs


def _dpid(tlv: object) -> int | None:
    """The datapath id in a Chassis ID TLV of ours (subtype 7, ``dpid:`` + 16 hex digits)."""
    if not isinstance(tlv, lldp.ChassisID):
        return None
    chassis = cast(_ChassisID, tlv)
    if chassis.subtype != _LOCALLY_ASSIGNED or not chassis.chassis_id.startswith(_PREFIX):
        return None
    digits = bytes(chassis.chassis_id[len(_PREFIX) :])
    try:
        dpid = int(digits, 16)
    except ValueError:
        return None
    return dpid if f"{dpid:016x}".encode() == digits else None


def _port(tlv: object) -> int | None:
    """The OpenFlow port number in a Port ID TLV of ours (subtype 7, decimal)."""
    if not isinstance(tlv, lldp.PortID):
        return None
    port_id = cast(_PortID, tlv)
    if port_id.subtype != _LOCALLY_ASSIGNED:
        return None
    digits = bytes(port_id.port_id)
    try:
        port = int(digits)
    except ValueError:
        return None
    return port if str(port).encode() == digits else None


def _signed_of(tlvs: Sequence[object]) -> bytes:
    """Send time and HMAC tag of the last organisation-specific TLV of ours in ``tlvs``; b"" if none."""
    tag = b""
    for tlv in tlvs:
        if isinstance(tlv, lldp.OrganizationallySpecific):
            org = cast(_OrgSpecific, tlv)
            if org.oui == _OUI and org.subtype == _TAG_SUBTYPE:
                tag = bytes(org.info)
    return tag
