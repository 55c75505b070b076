"""Probe frames: what we build is valid on the wire, what backends answer is recognised.

os-ken is the independent reference: our frames must parse with
``os_ken.lib.packet`` and re-serialise (with os-ken computing every
checksum afresh) to the same bytes, and the answers a backend would send are
built with os-ken and must parse with :func:`parse_probe_reply`.
"""

from __future__ import annotations

import ipaddress
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.lib.packet import arp, ethernet, icmp, ipv4, packet, packet_utils, tcp, vlan

from apps.lb import probe as lbprobe
from apps.lb.probe import ProbeReply, parse_probe_reply

VIP = ipaddress.IPv4Address("10.0.0.100")
BACKEND = ipaddress.IPv4Address("10.0.0.1")
VIP_MAC = lbprobe.vip_mac("web")
BACKEND_MAC = "02:00:00:00:01:01"


def _protocols(frame: bytes) -> dict[type, Any]:
    return {type(p): p for p in packet.Packet(frame).protocols}


def _reserialised(frame: bytes) -> bytes:
    """``frame`` parsed by os-ken and serialised again with every checksum recomputed."""
    pkt = packet.Packet(frame)
    for proto in pkt.protocols:
        if hasattr(proto, "csum"):
            proto.csum = 0
    pkt.serialize()
    return bytes(pkt.data)


def _answer(*layers: Any, tag: int | None = None) -> bytes:
    """A frame from the backend to the VIP, built by os-ken, optionally 802.1Q-tagged."""
    ethertype = 0x0806 if isinstance(layers[0], arp.arp) else 0x0800
    pkt = packet.Packet()
    if tag is None:
        pkt.add_protocol(ethernet.ethernet(VIP_MAC, BACKEND_MAC, ethertype))
    else:
        pkt.add_protocol(ethernet.ethernet(VIP_MAC, BACKEND_MAC, 0x8100))
        pkt.add_protocol(vlan.vlan(vid=tag, ethertype=ethertype))
    for layer in layers:
        pkt.add_protocol(layer)
    pkt.serialize()
    return bytes(pkt.data)


def _ip(proto: int, **kwargs: Any) -> ipv4.ipv4:
    return ipv4.ipv4(src=str(BACKEND), dst=str(VIP), proto=proto, **kwargs)


def _syn_ack(ack: int = 1001, tag: int | None = None) -> bytes:
    return _answer(_ip(6), tcp.tcp(80, 40123, 777, ack, bits=tcp.TCP_SYN | tcp.TCP_ACK), tag=tag)


def _echo_reply(ident: int = 7, seq: int = 9, tag: int | None = None) -> bytes:
    echo = icmp.icmp(icmp.ICMP_ECHO_REPLY, 0, 0, icmp.echo(ident, seq, b"vmn-probe"))
    return _answer(_ip(1), echo, tag=tag)


def _arp_reply(tag: int | None = None) -> bytes:
    return _answer(
        arp.arp(opcode=arp.ARP_REPLY, src_mac=BACKEND_MAC, src_ip=str(BACKEND), dst_mac=VIP_MAC, dst_ip=str(VIP)),
        tag=tag,
    )


def _rst_ack(tag: int | None = None) -> bytes:
    return _answer(_ip(6), tcp.tcp(80, 40123, 0, 1001, bits=tcp.TCP_RST | tcp.TCP_ACK), tag=tag)


VALID_ANSWERS = [
    _syn_ack(),
    _rst_ack(),
    _echo_reply(),
    _arp_reply(),
    _syn_ack(tag=100),
    _rst_ack(tag=100),
    _echo_reply(tag=100),
    _arp_reply(tag=100),
]


def test_vip_mac_is_stable_locally_administered_unicast_and_per_name() -> None:
    mac = lbprobe.vip_mac("web")
    first = int(mac[:2], 16)
    assert mac == lbprobe.vip_mac("web") and len(bytes.fromhex(mac.replace(":", ""))) == 6
    assert first & 0x02 and not first & 0x01 and mac.startswith("0e:")
    assert len({lbprobe.vip_mac(f"lb{i}") for i in range(200)}) == 200


def test_probe_identity_is_deterministic_in_range_and_changes_per_probe() -> None:
    ports = range(40000, 40010)
    seq = [lbprobe.probe_port("web", BACKEND, n, ports) for n in range(20)]
    assert seq == [lbprobe.probe_port("web", str(BACKEND), n, ports) for n in range(20)]
    assert all(p in ports for p in seq) and sorted(set(seq)) == list(ports)
    assert all(a != b for a, b in pairwise(seq))
    assert lbprobe.probe_isn("web", BACKEND, 0) != lbprobe.probe_isn("web", BACKEND, 1)
    assert 0 <= lbprobe.probe_ident("web", BACKEND) <= 0xFFFF
    with pytest.raises(ValueError):
        lbprobe.probe_port("web", BACKEND, 0, range(0))


def test_tcp_syn_is_valid_and_checksums_match_os_ken() -> None:
    frame = lbprobe.build_tcp_syn(VIP_MAC, BACKEND_MAC, VIP, BACKEND, 40123, 80, 1000)
    p = _protocols(frame)
    eth, ip, seg = p[ethernet.ethernet], p[ipv4.ipv4], p[tcp.tcp]
    assert (eth.src, eth.dst, eth.ethertype) == (VIP_MAC, BACKEND_MAC, 0x0800)
    assert (ip.src, ip.dst, ip.proto, ip.ttl, ip.total_length, ip.flags) == (str(VIP), str(BACKEND), 6, 64, 40, 2)  # DF
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.bits) == (40123, 80, 1000, 0, tcp.TCP_SYN)
    assert len(frame) == 60 and _reserialised(frame) == frame
    assert packet_utils.checksum(frame[14:34]) == 0


def test_tcp_rst_is_valid_and_parses_back() -> None:
    frame = lbprobe.build_tcp_rst(VIP_MAC, BACKEND_MAC, VIP, BACKEND, 40123, 80, 2**32 - 1)
    seg = _protocols(frame)[tcp.tcp]
    assert (seg.seq, seg.bits, seg.window_size) == (2**32 - 1, tcp.TCP_RST, 0)
    assert _reserialised(frame) == frame
    assert parse_probe_reply(frame) == ProbeReply(
        "rst", VIP_MAC, BACKEND_MAC, VIP, BACKEND, src_port=40123, dst_port=80
    )


def test_icmp_echo_is_valid_and_checksums_match_os_ken() -> None:
    frame = lbprobe.build_icmp_echo(VIP_MAC, BACKEND_MAC, VIP, BACKEND, 0xBEEF, 65535)
    p = _protocols(frame)
    msg = p[icmp.icmp]
    assert (p[ipv4.ipv4].proto, msg.type, msg.code) == (1, icmp.ICMP_ECHO_REQUEST, 0)
    assert (msg.data.id, msg.data.seq) == (0xBEEF, 65535)
    assert _reserialised(frame) == frame
    assert parse_probe_reply(frame) is None  # a request, not an answer


def test_arp_request_is_a_broadcast_who_has() -> None:
    frame = lbprobe.build_arp_request(VIP_MAC, VIP, BACKEND)
    p = _protocols(frame)
    req = p[arp.arp]
    assert p[ethernet.ethernet].dst == "ff:ff:ff:ff:ff:ff" and len(frame) == 60
    assert (req.opcode, req.src_mac, req.src_ip, req.dst_ip) == (arp.ARP_REQUEST, VIP_MAC, str(VIP), str(BACKEND))
    assert _reserialised(frame) == frame
    assert parse_probe_reply(frame) is None


def test_builders_reject_bad_addresses() -> None:
    with pytest.raises(ValueError):
        lbprobe.build_tcp_syn("02:00:00", BACKEND_MAC, VIP, BACKEND, 1, 80, 0)
    with pytest.raises(ValueError):
        lbprobe.build_icmp_echo(VIP_MAC, BACKEND_MAC, "10.0.0.300", BACKEND, 1, 1)


@pytest.mark.parametrize("tag", [None, 100])
def test_answers_built_by_os_ken_are_recognised(tag: int | None) -> None:
    addresses = (BACKEND_MAC, VIP_MAC, BACKEND, VIP, tag)
    assert parse_probe_reply(_syn_ack(tag=tag)) == ProbeReply(
        "syn-ack", *addresses, src_port=80, dst_port=40123, ack=1001
    )
    assert parse_probe_reply(_rst_ack(tag=tag)) == ProbeReply("rst", *addresses, src_port=80, dst_port=40123, ack=1001)
    assert parse_probe_reply(_echo_reply(tag=tag)) == ProbeReply("echo-reply", *addresses, ident=7, seq=9)
    assert parse_probe_reply(_arp_reply(tag=tag)) == ProbeReply("arp-reply", *addresses)


def test_reset_for_a_syn_ack_goes_back_from_the_vip() -> None:
    reply = parse_probe_reply(_syn_ack())
    assert reply is not None
    frame = lbprobe.reset_for(reply)
    assert frame is not None and _reserialised(frame) == frame
    p = _protocols(frame)
    assert (p[ethernet.ethernet].src, p[ethernet.ethernet].dst) == (VIP_MAC, BACKEND_MAC)
    assert (p[ipv4.ipv4].src, p[ipv4.ipv4].dst) == (str(VIP), str(BACKEND))
    seg = p[tcp.tcp]
    assert (seg.src_port, seg.dst_port, seg.seq, seg.bits) == (40123, 80, 1001, tcp.TCP_RST)
    rst = parse_probe_reply(_rst_ack())
    assert rst is not None and lbprobe.reset_for(rst) is None


def test_ip_options_are_skipped() -> None:
    frame = _answer(
        _ip(6, header_length=6, option=b"\x01\x01\x01\x00"), tcp.tcp(80, 40123, 0, 5, bits=tcp.TCP_SYN | tcp.TCP_ACK)
    )
    reply = parse_probe_reply(frame)
    assert reply is not None and (reply.kind, reply.src_port, reply.ack) == ("syn-ack", 80, 5)


@pytest.mark.parametrize(
    "frame",
    [
        _answer(_ip(6), tcp.tcp(80, 40123, 0, 0, bits=tcp.TCP_SYN)),  # a SYN
        _answer(_ip(6), tcp.tcp(80, 40123, 0, 1, bits=tcp.TCP_ACK)),  # plain ACK
        _answer(_ip(6), tcp.tcp(80, 40123, 0, 1, bits=tcp.TCP_SYN | tcp.TCP_ACK | tcp.TCP_FIN)),
        _answer(_ip(6, flags=1), tcp.tcp(80, 40123, 0, 1, bits=tcp.TCP_SYN | tcp.TCP_ACK)),  # MF
        _answer(_ip(17), b"\0" * 8),  # UDP
        _answer(_ip(1), icmp.icmp(icmp.ICMP_ECHO_REQUEST, 0, 0, icmp.echo(1, 1))),
        _answer(_ip(1), icmp.icmp(icmp.ICMP_DEST_UNREACH, 3, 0, icmp.dest_unreach())),
        _answer(arp.arp(opcode=arp.ARP_REQUEST)),
    ],
    ids=["syn", "ack", "syn-ack-fin", "fragment", "udp", "echo-request", "unreachable", "arp-request"],
)
def test_other_packets_are_not_answers(frame: bytes) -> None:
    assert parse_probe_reply(frame) is None


@pytest.mark.parametrize("frame", VALID_ANSWERS)
def test_truncated_answers_give_none_never_a_wrong_answer(frame: bytes) -> None:
    full = parse_probe_reply(frame)
    assert full is not None
    for size in range(len(frame)):
        assert parse_probe_reply(frame[:size]) in (None, full)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=128))
def test_random_bytes_never_raise(data: bytes) -> None:
    parse_probe_reply(data)


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(VALID_ANSWERS),
    st.lists(st.tuples(st.integers(0, 127), st.integers(0, 255)), max_size=6),
    st.integers(0, 128),
)
def test_mutated_answers_never_raise(frame: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(frame)
    for at, value in flips:
        if at < len(data):
            data[at] = value
    result = parse_probe_reply(bytes(data[:cut]))
    assert result is None or isinstance(result, ProbeReply)


# -- malformed input: None, never an exception, never a hang ---------------------
NOT_PARSED_ETHERTYPES = st.integers(0, 0xFFFF).filter(lambda t: t not in (0x0800, 0x0806, 0x8100))


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Fail the test with TimeoutError if its body runs longer than ``seconds`` (SIGALRM).

    The alarm repeats every 0.1 s: os-ken has bare ``except:`` clauses
    (OpenFlow and LLDP parsers) that would swallow a single TimeoutError.
    """

    def expire(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.1)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _with_ethertype(frame: bytes, ethertype: int) -> bytes:
    """``frame`` with the ethertype after its (optional) 802.1Q tag replaced."""
    at = 16 if frame[12:14] == b"\x81\x00" else 12
    return frame[:at] + ethertype.to_bytes(2, "big") + frame[at + 2 :]


def _answer_size(frame: bytes) -> int:
    """Bytes of ``frame`` up to the end of its ARP message or IPv4 datagram (padding excluded)."""
    link = 18 if frame[12:14] == b"\x81\x00" else 14
    if frame[link - 2 : link] == b"\x08\x06":
        return link + 28
    return link + int.from_bytes(frame[link + 2 : link + 4], "big")


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(VALID_ANSWERS), st.data())
def test_truncated_answers_give_none(frame: bytes, data: st.DataObject) -> None:
    """Cut into the answer itself: None; cut only into the Ethernet padding: the same answer."""
    cut = data.draw(st.integers(0, len(frame) - 1))
    expected = None if cut < _answer_size(frame) else parse_probe_reply(frame)
    assert parse_probe_reply(frame[:cut]) == expected


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_garbage_gives_none(data: bytes) -> None:
    """Random bytes are almost never a well-formed answer; whatever they are, no exception."""
    result = parse_probe_reply(data)
    assert result is None or isinstance(result, ProbeReply)
    assert parse_probe_reply(data[:14]) is None


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(VALID_ANSWERS), NOT_PARSED_ETHERTYPES)
def test_wrong_ethertype_gives_none(frame: bytes, ethertype: int) -> None:
    assert parse_probe_reply(_with_ethertype(frame, ethertype)) is None


@pytest.mark.parametrize("frame", VALID_ANSWERS[4:], ids=["syn-ack", "rst", "echo-reply", "arp-reply"])
def test_a_second_vlan_tag_is_not_an_answer(frame: bytes) -> None:
    double = frame[:16] + b"\x81\x00\x00\x07" + frame[16:]
    assert parse_probe_reply(double) is None


def test_a_datagram_longer_than_the_frame_is_not_an_answer() -> None:
    frame = bytearray(_syn_ack())
    frame[16:18] = (len(frame) - 14 + 1).to_bytes(2, "big")  # IPv4 total length
    assert parse_probe_reply(bytes(frame)) is None


@pytest.mark.parametrize("option", [b"\x99\x00\x00\x00", b"\x05\x00\x00\x00"], ids=["unknown-kind", "sack"])
def test_a_tcp_option_of_length_zero_does_not_hang(option: bytes) -> None:
    """os-ken's TCP option parser never returns on these; the answer is still recognised."""
    frame = _answer(_ip(6), tcp.tcp(80, 40123, 0, 5, bits=tcp.TCP_SYN | tcp.TCP_ACK, option=option))
    with _deadline(5):
        reply = parse_probe_reply(frame)
    assert reply is not None and (reply.kind, reply.ack) == ("syn-ack", 5)


@pytest.mark.parametrize("port", [179, 2600, 6633, 6653])
def test_payloads_os_ken_guesses_by_port_are_not_decoded(port: int) -> None:
    """An OpenFlow header of length 0 on 6653 makes ``packet.Packet`` loop forever."""
    payload = b"\x04\x00\x00\x00" + b"\x01" * 12
    frame = _answer(_ip(6), tcp.tcp(port, 40123, 0, 9, bits=tcp.TCP_RST | tcp.TCP_ACK), payload)
    with _deadline(5):
        reply = parse_probe_reply(frame)
    assert reply is not None and (reply.kind, reply.src_port, reply.ack) == ("rst", port, 9)


MACS = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
IPS = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
PORTS = st.integers(0, 0xFFFF)


@settings(max_examples=300, deadline=None)
@given(MACS, MACS, IPS, IPS, PORTS, PORTS, st.integers(0, 2**32 - 1))
def test_built_rst_parses_back_to_its_fields(
    src_mac: str,
    dst_mac: str,
    src_ip: ipaddress.IPv4Address,
    dst_ip: ipaddress.IPv4Address,
    src_port: int,
    dst_port: int,
    seq: int,
) -> None:
    frame = lbprobe.build_tcp_rst(src_mac, dst_mac, src_ip, dst_ip, src_port, dst_port, seq)
    assert len(frame) == 60 and _reserialised(frame) == frame
    assert parse_probe_reply(frame) == ProbeReply(
        "rst", src_mac, dst_mac, src_ip, dst_ip, src_port=src_port, dst_port=dst_port
    )
