"""LLDP probes: ours round-trip, anything else (forged, foreign, malformed) gives None.

os-ken is the independent reference for the wire format: our probes must
decode with ``os_ken.lib.packet`` into the documented TLVs.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from os_ken.lib.packet import ethernet, lldp, packet, vlan

from controller.fabric.lldp import ETH_LLDP, LLDP_DST, build_probe, parse_probe

SECRET = b"controller secret"
DPIDS = st.integers(0, 2**64 - 1)
PORTS = st.integers(0, 2**32 - 1)
PROBE = build_probe(0x1234, 7, SECRET)


def _lldp_frame(chassis: tuple[int, bytes], port: tuple[int, bytes], *extra: object) -> bytes:
    """An LLDP frame built by os-ken: Chassis ID and Port ID ``(subtype, id)``, TTL, ``extra``, End."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(LLDP_DST.hex(":"), "02:00:00:00:00:09", ETH_LLDP))
    pkt.add_protocol(
        lldp.lldp(
            [
                lldp.ChassisID(subtype=chassis[0], chassis_id=chassis[1]),
                lldp.PortID(subtype=port[0], port_id=port[1]),
                lldp.TTL(ttl=120),
                *extra,
                lldp.End(),
            ]
        )
    )
    pkt.serialize()
    return bytes(pkt.data)


def _signed(chassis: tuple[int, bytes], port: tuple[int, bytes], signs: tuple[int, int]) -> bytes:
    """An LLDP frame with an org-specific TLV: send time 0 and a tag of ``signs`` (dpid, port) under SECRET (keyed by its SHA-256)."""
    when = struct.pack("!d", 0.0)
    tag = hmac.new(hashlib.sha256(SECRET).digest(), struct.pack("!QI", *signs) + when, hashlib.sha256).digest()[:8]
    return _lldp_frame(chassis, port, lldp.OrganizationallySpecific(oui=b"\x02\x56\x4d", subtype=2, info=when + tag))


def test_probe_decodes_with_os_ken_into_the_documented_tlvs() -> None:
    pkt = packet.Packet(PROBE)
    eth = pkt.get_protocol(ethernet.ethernet)
    assert (eth.dst, eth.src, eth.ethertype) == ("01:80:c2:00:00:0e", "0e:00:00:00:00:01", 0x88CC)
    chassis, port, ttl, org, end = pkt.get_protocol(lldp.lldp).tlvs
    assert (chassis.subtype, chassis.chassis_id) == (7, b"dpid:0000000000001234")
    assert (port.subtype, port.port_id, ttl.ttl) == (7, b"7", 120)
    assert (org.oui, org.subtype, len(org.info)) == (b"\x02\x56\x4d", 2, 16)
    assert isinstance(end, lldp.End) and len(PROBE) >= 60


@settings(max_examples=300, deadline=None)
@given(DPIDS, PORTS, st.binary(max_size=32), st.floats(0, 1e9))
def test_probe_round_trips(dpid: int, port: int, secret: bytes, sent_at: float) -> None:
    assert parse_probe(build_probe(dpid, port, secret, sent_at), secret) == (dpid, port, sent_at)


@settings(max_examples=200, deadline=None)
@given(DPIDS, PORTS, st.binary(max_size=32), st.binary(max_size=32))
@example(1, 1, b"", b"\x00")  # HMAC alone pads keys with zeros: these two signed alike
@example(1, 1, b"k", b"k\x00\x00")
def test_another_secret_gives_none(dpid: int, port: int, ours: bytes, theirs: bytes) -> None:
    if ours != theirs:
        assert parse_probe(build_probe(dpid, port, theirs), ours) is None


def test_build_rejects_a_source_mac_that_is_not_six_bytes() -> None:
    with pytest.raises(ValueError):
        build_probe(1, 1, SECRET, src_mac=b"\x0e\x00\x00")


def test_foreign_and_unsigned_lldp_give_none() -> None:
    switch = _lldp_frame(
        (lldp.ChassisID.SUB_MAC_ADDRESS, b"\x02\x00\x00\x00\x00\x09"), (lldp.PortID.SUB_INTERFACE_NAME, b"eth0")
    )
    assert parse_probe(switch, SECRET) is None
    assert parse_probe(_lldp_frame((7, b"dpid:0000000000001234"), (7, b"7")), SECRET) is None
    assert parse_probe(_signed((7, b"dpid:0000000000001234"), (7, b"7"), (0x1234, 7)), SECRET) == (0x1234, 7, 0.0)


@pytest.mark.parametrize(
    "chassis, port",
    [
        ((4, b"dpid:0000000000001234"), (7, b"7")),  # chassis id subtype not "locally assigned"
        ((7, b"dpid:0000000000001234"), (5, b"7")),  # port id subtype not "locally assigned"
        ((7, b"dpid:1234"), (7, b"7")),  # dpid not 16 digits
        ((7, b"dpid:000000000000123A"), (7, b"7")),  # upper-case hex
        ((7, b"dpid:0000000000001234"), (7, b"07")),  # port with a leading zero
        ((7, b"dpid:0000000000001234"), (7, b" 7")),
    ],
    ids=["chassis-subtype", "port-subtype", "short-dpid", "upper-hex", "port-zero", "port-space"],
)
def test_signed_probes_not_in_our_form_give_none(chassis: tuple[int, bytes], port: tuple[int, bytes]) -> None:
    """Even with a valid tag over the values they name."""
    dpid = int(chassis[1][5:], 16)
    assert parse_probe(_signed(chassis, port, (dpid, int(port[1]))), SECRET) is None


def test_a_tagged_probe_gives_none() -> None:
    tagged = PROBE[:12] + struct.pack("!HH", 0x8100, 10) + PROBE[12:]
    assert vlan.vlan.parser(tagged[14:])[0].ethertype == ETH_LLDP
    assert parse_probe(tagged, SECRET) is None


# -- malformed input: None, never an exception -------------------------------------
@settings(max_examples=500, deadline=None)
@given(DPIDS, PORTS, st.data())
def test_truncated_probes_give_none(dpid: int, port: int, data: st.DataObject) -> None:
    frame = build_probe(dpid, port, SECRET)
    cut = data.draw(st.integers(0, len(frame) - 1))
    assert parse_probe(frame[:cut], SECRET) is None


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_gives_none(data: bytes) -> None:
    assert parse_probe(data, SECRET) is None
    assert parse_probe(PROBE[:14] + data, SECRET) is None


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF).filter(lambda t: t != ETH_LLDP))
def test_wrong_ethertype_gives_none(ethertype: int) -> None:
    assert parse_probe(PROBE[:12] + struct.pack("!H", ethertype) + PROBE[14:], SECRET) is None


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(PROBE) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_probes_never_raise_nor_name_another_origin(flips: list[tuple[int, int]]) -> None:
    data = bytearray(PROBE)
    for at, value in flips:
        data[at] = value
    parsed = parse_probe(bytes(data), SECRET)
    assert parsed is None or parsed[:2] == (0x1234, 7)
