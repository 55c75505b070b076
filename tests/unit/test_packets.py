"""parse_eth, the hot-path Ethernet parser: os-ken's ethernet/vlan parsers are the oracle."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.lib.packet import ethernet, vlan

from controller.packets import ETH_VLAN, EthHeader, mac_str, parse_eth

TAGGED_64 = bytes.fromhex("020000000002020000000001") + struct.pack("!HHH", 0x8100, 0x2064, 0x0800) + bytes(46)
"""64 bytes: MACs, an 802.1Q tag (PCP 1, VLAN 100), IPv4 ethertype, a zero payload."""


def test_a_tagged_frame() -> None:
    assert parse_eth(TAGGED_64) == EthHeader("02:00:00:00:00:02", "02:00:00:00:00:01", 100, 0x0800)
    assert mac_str(b"\x0e\xab\x00\x00\x00\x01") == "0e:ab:00:00:00:01"


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=14, max_size=80))
def test_headers_match_os_ken(data: bytes) -> None:
    eth = ethernet.ethernet.parser(data)[0]
    if eth.ethertype != ETH_VLAN:
        expected = EthHeader(eth.dst, eth.src, None, eth.ethertype)
    elif len(data) < 18:
        expected = None
    else:
        tag = vlan.vlan.parser(data[14:])[0]
        expected = EthHeader(eth.dst, eth.src, tag.vid, tag.ethertype)
    assert parse_eth(data) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=13))
def test_shorter_than_an_ethernet_header_gives_none(data: bytes) -> None:
    assert parse_eth(data) is None


@pytest.mark.parametrize("extra", range(4))
def test_truncated_tag_gives_none(extra: int) -> None:
    assert parse_eth(TAGGED_64[: 14 + extra]) is None


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF).filter(lambda t: t != ETH_VLAN), st.binary(max_size=50))
def test_untagged_ethertype_is_reported_not_read_as_a_tag(ethertype: int, rest: bytes) -> None:
    frame = TAGGED_64[:12] + struct.pack("!H", ethertype) + rest
    header = parse_eth(frame)
    assert header is not None and (header.vlan, header.ethertype) == (None, ethertype)
