"""Just enough packet parsing for the hot path, on raw bytes (no os-ken objects)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

ETH_VLAN = 0x8100


@dataclass(frozen=True)
class EthHeader:
    dst: str
    src: str
    vlan: Optional[int]
    ethertype: int


def mac_str(raw: bytes) -> str:
    """``b'\\x02\\x00...'`` -> ``'02:00:...'``."""
    return raw.hex(":")


def parse_eth(data: bytes) -> Optional[EthHeader]:
    """Parse the Ethernet (and one 802.1Q) header; None if the frame is too short."""
    if len(data) < 14:
        return None
    (ethertype,) = struct.unpack_from("!H", data, 12)
    vlan = None
    if ethertype == ETH_VLAN:
        if len(data) < 18:
            return None
        tci, ethertype = struct.unpack_from("!HH", data, 14)
        vlan = tci & 0x0FFF
    return EthHeader(mac_str(data[0:6]), mac_str(data[6:12]), vlan, ethertype)
