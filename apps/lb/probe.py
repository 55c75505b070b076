"""Health-probe frames of the load balancer, built and parsed on raw bytes.

The controller has no IP address of its own on the tenant networks, so it
checks a backend by speaking *as the VIP*: it packets-out a frame whose
source is ``vip_mac(lb)``/VIP into the backend's switch port, and the
switch traps the backend's answer (addressed to the VIP) back to it. This
module builds those frames (TCP SYN, the RST that closes a half-open probe,
ICMP echo request, ARP request) and recognises the answers. It is pure and
deterministic: the same arguments give the same bytes, and the probe
identity (source port, ICMP ident, TCP initial sequence number) is derived
from ``(lb name, backend ip, counter)`` by hashing, not by a random source.

Built frames are untagged Ethernet II, padded to the 60-byte minimum, with
IPv4 (DF set, TTL 64) and correct IPv4/TCP/ICMP checksums. Parsing accepts
untagged or 802.1Q-tagged frames and never raises; it does not verify the
L4 checksum, because a frame trapped from a sender with TX checksum offload
may carry a partial one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from dataclasses import dataclass
from typing import Literal, NamedTuple, Optional, Union

from controller.packets import mac_str, parse_eth

IPv4Like = Union[ipaddress.IPv4Address, str]
ReplyKind = Literal["syn-ack", "rst", "echo-reply", "arp-reply"]

ETH_IPV4, ETH_ARP = 0x0800, 0x0806
PROTO_ICMP, PROTO_TCP = 1, 6
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
BROADCAST = "ff:ff:ff:ff:ff:ff"
DEFAULT_PORTS = range(40000, 41000)
"""Default source ports of TCP probes; the pipeline traps replies to these on the VIP."""

_MIN_FRAME = 60
_TTL = 64
_DF = 0x4000
_WINDOW = 64240
_ICMP_PAYLOAD = b"vmn-probe"
_PERSON = b"vmn-lbprobe"


@dataclass(frozen=True)
class ProbeReply:
    """An answer to a probe, as recognised by :func:`parse_probe_reply`.

    For TCP (``syn-ack``, ``rst``) ``src_port``/``dst_port`` are the TCP
    ports and ``ack`` the acknowledgement number (the probe's sequence number
    plus one for an answer to our SYN; 0 when the ACK flag is clear). For ``echo-reply`` ``ident``/``seq``
    are the ICMP identifier and sequence number. For ``arp-reply`` the MACs
    and IPs are the ARP sender (``src_*``) and target (``dst_*``) fields,
    which name the answering host even when the Ethernet header does not.
    Fields that do not apply to ``kind`` are 0. ``vlan`` is the 802.1Q VLAN
    id when the frame was tagged.
    """

    kind: ReplyKind
    src_mac: str
    dst_mac: str
    src_ip: ipaddress.IPv4Address
    dst_ip: ipaddress.IPv4Address
    vlan: Optional[int] = None
    src_port: int = 0
    dst_port: int = 0
    ack: int = 0
    ident: int = 0
    seq: int = 0


class _Addresses(NamedTuple):
    src_mac: str
    dst_mac: str
    src_ip: ipaddress.IPv4Address
    dst_ip: ipaddress.IPv4Address
    vlan: Optional[int]


def _digest(size: int, *parts: object) -> int:
    text = "\0".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=size, person=_PERSON).digest(), "big")


def vip_mac(vip: str) -> str:
    """The stable, locally administered unicast MAC that VIP address ``vip`` answers ARP with.

    ``0e`` (local, unicast) followed by 5 bytes of a BLAKE2b hash of the
    address: balancers sharing a VIP share its MAC; the same VIP gives the
    same MAC across restarts and hosts.
    """
    return mac_str(b"\x0e" + _digest(5, "vip", vip).to_bytes(5, "big"))


def probe_port(lb_name: str, backend: IPv4Like, counter: int, ports: range = DEFAULT_PORTS) -> int:
    """The TCP source port of probe number ``counter`` to ``backend``.

    Starts at a hash-chosen offset of ``ports`` per ``(lb, backend)`` and
    steps by one per counter, so consecutive probes to one backend differ and
    a late answer to an old probe never matches the new one. Raises
    ValueError if ``ports`` is empty.
    """
    if not ports:
        raise ValueError("empty probe port range")
    base = _digest(4, "port", lb_name, ipaddress.IPv4Address(backend))
    return ports[(base + counter) % len(ports)]


def probe_ident(lb_name: str, backend: IPv4Like) -> int:
    """The 16-bit ICMP identifier of echo probes from ``lb_name`` to ``backend``."""
    return _digest(2, "ident", lb_name, ipaddress.IPv4Address(backend))


def probe_isn(lb_name: str, backend: IPv4Like, counter: int) -> int:
    """The 32-bit initial sequence number of TCP probe number ``counter``."""
    return _digest(4, "isn", lb_name, ipaddress.IPv4Address(backend), counter)


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``; 0 when ``data`` holds a valid one."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def _ip(ip: IPv4Like) -> bytes:
    return ipaddress.IPv4Address(ip).packed


def _eth(dst_mac: str, src_mac: str, ethertype: int, payload: bytes) -> bytes:
    frame = _mac(dst_mac) + _mac(src_mac) + struct.pack("!H", ethertype) + payload
    return frame.ljust(_MIN_FRAME, b"\0")


def _ipv4(src_ip: IPv4Like, dst_ip: IPv4Like, proto: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, _DF, _TTL, proto, 0,
                         _ip(src_ip), _ip(dst_ip))
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def _tcp(src_ip: IPv4Like, dst_ip: IPv4Like, ports: tuple[int, int], seq: int,
         flags: int, window: int) -> bytes:
    segment = struct.pack("!HHIIBBHHH", ports[0], ports[1], seq & 0xFFFFFFFF, 0, 5 << 4, flags,
                          window, 0, 0)
    pseudo = _ip(src_ip) + _ip(dst_ip) + struct.pack("!BBH", 0, PROTO_TCP, len(segment))
    segment = segment[:16] + struct.pack("!H", checksum(pseudo + segment)) + segment[18:]
    return _ipv4(src_ip, dst_ip, PROTO_TCP, segment)


def build_tcp_syn(src_mac: str, dst_mac: str, src_ip: IPv4Like, dst_ip: IPv4Like,
                  src_port: int, dst_port: int, seq: int) -> bytes:
    """A TCP SYN (no options) from ``src_ip:src_port`` to ``dst_ip:dst_port`` with ISN ``seq``.

    Raises ValueError for a malformed MAC or IP and struct.error for a port
    outside 0-65535.
    """
    segment = _tcp(src_ip, dst_ip, (src_port, dst_port), seq, TCP_SYN, _WINDOW)
    return _eth(dst_mac, src_mac, ETH_IPV4, segment)


def build_tcp_rst(src_mac: str, dst_mac: str, src_ip: IPv4Like, dst_ip: IPv4Like,
                  src_port: int, dst_port: int, seq: int) -> bytes:
    """A bare TCP RST with sequence number ``seq`` (a SYN-ACK's ack number).

    Raises as :func:`build_tcp_syn`.
    """
    segment = _tcp(src_ip, dst_ip, (src_port, dst_port), seq, TCP_RST, 0)
    return _eth(dst_mac, src_mac, ETH_IPV4, segment)


def reset_for(reply: ProbeReply) -> Optional[bytes]:
    """The RST that closes the half-open connection a ``syn-ack`` answers; None for other kinds.

    It goes back the way the SYN-ACK came: from its destination (the VIP) to
    its source (the backend), with sequence number ``reply.ack``.
    """
    if reply.kind != "syn-ack":
        return None
    return build_tcp_rst(reply.dst_mac, reply.src_mac, reply.dst_ip, reply.src_ip,
                         reply.dst_port, reply.src_port, reply.ack)


def build_icmp_echo(src_mac: str, dst_mac: str, src_ip: IPv4Like, dst_ip: IPv4Like,
                    ident: int, seq: int) -> bytes:
    """An ICMP echo request with identifier ``ident`` and sequence ``seq`` (both 16-bit).

    Raises ValueError for a malformed MAC or IP and struct.error for an
    ident or seq outside 0-65535.
    """
    message = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq) + _ICMP_PAYLOAD
    message = message[:2] + struct.pack("!H", checksum(message)) + message[4:]
    return _eth(dst_mac, src_mac, ETH_IPV4, _ipv4(src_ip, dst_ip, PROTO_ICMP, message))


def build_arp_request(src_mac: str, src_ip: IPv4Like, target_ip: IPv4Like) -> bytes:
    """A broadcast ARP request "who has ``target_ip``, tell ``src_ip``".

    Raises ValueError for a malformed MAC or IP.
    """
    body = struct.pack("!HHBBH6s4s6s4s", 1, ETH_IPV4, 6, 4, 1, _mac(src_mac), _ip(src_ip),
                       b"\0" * 6, _ip(target_ip))
    return _eth(BROADCAST, src_mac, ETH_ARP, body)


def parse_probe_reply(data: bytes) -> Optional[ProbeReply]:
    """The probe answer ``data`` carries, or None for anything else.

    Recognises a TCP SYN-ACK, a TCP RST (with or without ACK), an ICMP echo
    reply and an ARP reply, untagged or behind one 802.1Q tag. Truncated,
    malformed or fragmented input and any other packet give None; this
    function never raises.
    """
    eth = parse_eth(data)
    if eth is None:
        return None
    offset = 18 if eth.vlan is not None else 14
    if eth.ethertype == ETH_ARP:
        return _parse_arp(data, offset, eth.vlan)
    if eth.ethertype != ETH_IPV4 or len(data) < offset + 20:
        return None
    ver_ihl, _, total, _, frag, _, proto = struct.unpack_from("!BBHHHBB", data, offset)
    header_len = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or header_len < 20 or total < header_len or len(data) < offset + total:
        return None
    if frag & 0x3FFF:  # MF set or a non-zero offset: a fragment, not a whole answer
        return None
    src_ip = ipaddress.IPv4Address(data[offset + 12: offset + 16])
    dst_ip = ipaddress.IPv4Address(data[offset + 16: offset + 20])
    l4 = data[offset + header_len: offset + total]
    addresses = _Addresses(eth.src, eth.dst, src_ip, dst_ip, eth.vlan)
    if proto == PROTO_TCP:
        return _parse_tcp(l4, addresses)
    if proto == PROTO_ICMP:
        return _parse_icmp(l4, addresses)
    return None


def _parse_tcp(segment: bytes, addresses: _Addresses) -> Optional[ProbeReply]:
    if len(segment) < 20:
        return None
    src_port, dst_port, _, ack, offset, flags = struct.unpack_from("!HHIIBB", segment)
    if offset >> 4 < 5 or (offset >> 4) * 4 > len(segment):
        return None
    if flags & TCP_RST:
        kind: ReplyKind = "rst"
    elif (flags & (TCP_SYN | TCP_ACK | TCP_FIN)) == (TCP_SYN | TCP_ACK):
        kind = "syn-ack"
    else:
        return None
    return ProbeReply(kind, *addresses, src_port=src_port, dst_port=dst_port,
                      ack=ack if flags & TCP_ACK else 0)


def _parse_icmp(message: bytes, addresses: _Addresses) -> Optional[ProbeReply]:
    if len(message) < 8:
        return None
    kind, code, _, ident, seq = struct.unpack_from("!BBHHH", message)
    if kind != ICMP_ECHO_REPLY or code != 0:
        return None
    return ProbeReply("echo-reply", *addresses, ident=ident, seq=seq)


def _parse_arp(data: bytes, offset: int, vlan: Optional[int]) -> Optional[ProbeReply]:
    if len(data) < offset + 28:
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", data, offset)
    if (htype, ptype, hlen, plen, op) != (1, ETH_IPV4, 6, 4, 2):
        return None
    fields = data[offset + 8: offset + 28]
    return ProbeReply("arp-reply", mac_str(fields[0:6]), mac_str(fields[10:16]),
                      ipaddress.IPv4Address(fields[6:10]), ipaddress.IPv4Address(fields[16:20]),
                      vlan)

