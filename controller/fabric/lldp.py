"""LLDP probes that name their origin switch and port, built and parsed on raw bytes.

Chassis ID (subtype 7, locally assigned) is ``dpid:<16 hex>``, port ID
(subtype 7) the decimal OpenFlow port number, and an organisation-specific
TLV carries an HMAC of both under the controller's secret: a host that
forges a probe cannot make its port look like a link. A probe not in this
form is someone else's LLDP and is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Optional

LLDP_DST = bytes.fromhex("0180c200000e")
ETH_LLDP = 0x88CC
_PREFIX = b"dpid:"
_OUI = b"\x02\x56\x4d"  # locally administered, "VM"
_TAG_LEN = 8


def _tag(secret: bytes, dpid: int, port: int) -> bytes:
    return hmac.new(secret, f"{dpid:016x}:{port}".encode(), hashlib.sha256).digest()[:_TAG_LEN]


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!H", (kind << 9) | len(value)) + value


def build_probe(dpid: int, port: int, secret: bytes = b"",
                src_mac: bytes = bytes.fromhex("0e0000000001")) -> bytes:
    """An LLDP frame announcing ``dpid``/``port``, authenticated with ``secret``."""
    body = (_tlv(1, b"\x07" + _PREFIX + f"{dpid:016x}".encode())
            + _tlv(2, b"\x07" + str(port).encode())
            + _tlv(3, struct.pack("!H", 120))
            + _tlv(127, _OUI + b"\x01" + _tag(secret, dpid, port)) + _tlv(0, b""))
    return LLDP_DST + src_mac + struct.pack("!H", ETH_LLDP) + body


def parse_probe(frame: bytes, secret: bytes = b"") -> Optional[tuple[int, int]]:
    """``(dpid, port)`` from one of our probes signed with ``secret``; None for anything else."""
    if len(frame) < 14 or struct.unpack_from("!H", frame, 12)[0] != ETH_LLDP:
        return None
    offset, dpid, port, tag = 14, None, None, b""
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
            elif kind == 127 and value[:4] == _OUI + b"\x01":
                tag = value[4:]
        except ValueError:
            return None
    if dpid is None or port is None or not hmac.compare_digest(tag, _tag(secret, dpid, port)):
        return None
    return dpid, port
