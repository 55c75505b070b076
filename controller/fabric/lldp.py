"""LLDP probes that name their origin switch and port, built and parsed on raw bytes.

Chassis ID (subtype 7, locally assigned) is ``dpid:<16 hex>``, port ID
(subtype 7) the decimal OpenFlow port number, and an organisation-specific
TLV carries the time the probe was sent (the controller's own clock) and an
HMAC of all three under the controller's secret: a host that forges a probe
cannot make its port look like a link, and one that replays a probe it
captured earlier is caught by its age (:class:`~controller.fabric.links.LinkMonitor`
accepts a probe only while it is as fresh as a live link's). A host that
*relays* our probes live between two ports is not caught here: see
:mod:`controller.fabric.admission`. A probe not in this form is someone
else's LLDP and is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import NamedTuple, Optional

LLDP_DST = bytes.fromhex("0180c200000e")
ETH_LLDP = 0x88CC
_PREFIX = b"dpid:"
_OUI = b"\x02\x56\x4d"  # locally administered, "VM"
_SUBTYPE = b"\x02"  # 2: send time + tag (1, the tag alone, is no longer accepted)
_TAG_LEN = 8
_TIME = struct.Struct("!d")


class Probe(NamedTuple):
    """One of our probes: where it was sent from and when (controller clock, seconds)."""

    dpid: int
    port: int
    sent_at: float


def _tag(secret: bytes, dpid: int, port: int, sent_at: bytes) -> bytes:
    signed = struct.pack("!QI", dpid, port) + sent_at
    return hmac.new(secret, signed, hashlib.sha256).digest()[:_TAG_LEN]


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!H", (kind << 9) | len(value)) + value


def build_probe(dpid: int, port: int, secret: bytes = b"", sent_at: float = 0.0,
                src_mac: bytes = bytes.fromhex("0e0000000001")) -> bytes:
    """An LLDP frame announcing ``dpid``/``port`` at time ``sent_at``, authenticated with ``secret``."""
    when = _TIME.pack(sent_at)
    body = (_tlv(1, b"\x07" + _PREFIX + f"{dpid:016x}".encode())
            + _tlv(2, b"\x07" + str(port).encode())
            + _tlv(3, struct.pack("!H", 120))
            + _tlv(127, _OUI + _SUBTYPE + when + _tag(secret, dpid, port, when)) + _tlv(0, b""))
    return LLDP_DST + src_mac + struct.pack("!H", ETH_LLDP) + body


def parse_probe(frame: bytes, secret: bytes = b"") -> Optional[Probe]:
    """The :class:`Probe` of one of our probes signed with ``secret``; None for anything else.

    >>> parse_probe(build_probe(5, 7, b"k", sent_at=12.5), b"k")
    Probe(dpid=5, port=7, sent_at=12.5)
    >>> parse_probe(build_probe(5, 7, b"k"), b"other") is None
    True
    """
    if len(frame) < 14 or struct.unpack_from("!H", frame, 12)[0] != ETH_LLDP:
        return None
    offset, dpid, port, when, tag = 14, None, None, b"", b""
    while offset + 2 <= len(frame):
        (header,) = struct.unpack_from("!H", frame, offset)
        kind, length = header >> 9, header & 0x1FF
        value = frame[offset + 2: offset + 2 + length]
        offset += 2 + length
        if kind == 0:
            break
        try:
            if kind == 1 and value[1:6] == _PREFIX:
                dpid = int(value[6:].decode(), 16)
            elif kind == 2 and value[:1] == b"\x07":
                port = int(value[1:].decode())
            elif kind == 127 and value[:4] == _OUI + _SUBTYPE and len(value) == 4 + _TIME.size + _TAG_LEN:
                when, tag = value[4:4 + _TIME.size], value[4 + _TIME.size:]
        except ValueError:
            return None
    if (dpid is None or port is None or not when or not 0 <= dpid < 2**64 or not 0 <= port < 2**32
            or not hmac.compare_digest(tag, _tag(secret, dpid, port, when))):
        return None
    return Probe(dpid, port, _TIME.unpack(when)[0])
