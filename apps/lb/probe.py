"""Health-probe frames of the load balancer, built and parsed with os-ken's packet library.

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
IPv4 (DF set, TTL 64, identification 0) and correct IPv4/TCP/ICMP checksums;
``os_ken.lib.packet`` serialises them and computes every checksum and
length. The bytes are the same as those of the struct-built frames this
module produced before it used the library.

Parsing accepts untagged or 802.1Q-tagged frames and never raises; it does
not verify the L4 checksum, because a frame trapped from a sender with TX
checksum offload may carry a partial one. Each layer is decoded by its os-ken
class's ``parser``, one at a time, and the checks os-ken does not make (a
datagram longer than the frame, a TCP data offset past the segment,
fragments, ARP for other than Ethernet/IPv4) are made here. Frames are not
handed to ``packet.Packet``: it keeps decoding into the payload, guessing a
protocol from the TCP port (BGP on 179, OpenFlow on 6633/6653, zebra on
2600), and never returns for some payloads (an OpenFlow header of length 0
makes no progress), and os-ken's TCP option parser never returns on an
option of length 0; either would let any host that can send to the VIP
stall the controller. Parsing is not on a hot path: answers arrive at most
once per probe per backend.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, cast

from os_ken.lib.packet import arp, ethernet, icmp, ipv4, packet, tcp, vlan

from controller.packets import ETH_VLAN, mac_str

IPv4Like = ipaddress.IPv4Address | str
ReplyKind = Literal["syn-ack", "rst", "echo-reply", "arp-reply"]

ETH_IPV4, ETH_ARP = 0x0800, 0x0806
PROTO_ICMP, PROTO_TCP = 1, 6
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
BROADCAST = "ff:ff:ff:ff:ff:ff"
DEFAULT_PORTS = range(40000, 41000)
"""Default source ports of TCP probes; the pipeline traps replies to these on the VIP."""

_ETH_HEADER, _VLAN_TAG, _TCP_HEADER = 14, 4, 20  # bytes
_TTL = 64
_IP_DF, _IP_MF = 0b010, 0b001  # RFC 791 flags field (3 bits): reserved, DF, MF
_WINDOW = 64240
_ICMP_PAYLOAD = b"vmn-probe"
_ARP_HTYPE_ETHERNET, _ARP_REQUEST, _ARP_REPLY = 1, 1, 2
_NO_MAC = "00:00:00:00:00:00"
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
    vlan: int | None = None
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
    vlan: int | None


# -- the attributes of os-ken's (untyped) decoded layers that this module reads --
class _EthernetLayer(Protocol):
    dst: str  # "xx:xx:xx:xx:xx:xx", lower case
    src: str
    ethertype: int


class _VlanLayer(Protocol):
    vid: int  # 12-bit VLAN id
    ethertype: int  # of the payload


class _IPv4Layer(Protocol):
    version: int
    header_length: int  # IHL, in 32-bit words
    total_length: int  # bytes, header included
    flags: int  # 3 bits: reserved, DF, MF
    offset: int  # fragment offset, in 8-byte units
    proto: int
    src: str  # dotted quad
    dst: str


class _TcpLayer(Protocol):
    src_port: int
    dst_port: int
    ack: int
    offset: int  # data offset, in 32-bit words
    bits: int  # control bits (URG ... FIN)


class _IcmpLayer(Protocol):
    type: int
    code: int
    data: object  # an icmp.echo for an echo request/reply of 8 bytes or more


class _EchoBody(Protocol):
    id: int
    seq: int


class _ArpLayer(Protocol):
    hwtype: int
    proto: int
    hlen: int
    plen: int
    opcode: int
    src_mac: str
    src_ip: str
    dst_mac: str
    dst_ip: str


class _Link(NamedTuple):
    """The Ethernet header of a frame, with the VLAN id of its 802.1Q tag if it has one."""

    src_mac: str
    dst_mac: str
    vlan: int | None
    ethertype: int  # of the payload, after the tag if any


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


# -- building -------------------------------------------------------------------
def _mac(mac: str) -> str:
    """``mac`` (hex, colons optional) in os-ken's ``xx:xx:xx:xx:xx:xx`` form.

    Raises ValueError unless it is exactly 6 bytes: os-ken itself would
    silently read ``"02:00:00"`` as ``00:02:00:00:00:00``.
    """
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return mac_str(raw)


def _ip(ip: IPv4Like) -> str:
    """``ip`` as a dotted quad; raises ValueError (AddressValueError) if it is not IPv4."""
    return str(ipaddress.IPv4Address(ip))


def _serialise(dst_mac: str, src_mac: str, ethertype: int, *layers: object) -> bytes:
    """An Ethernet II frame carrying ``layers`` (outermost first), as serialised by os-ken.

    os-ken fills in lengths and checksums of the layers and pads the
    Ethernet payload with zeros to 46 bytes (a 60-byte frame, FCS excluded).
    Raises ValueError for a malformed MAC.
    """
    frame = packet.Packet()
    frame.add_protocol(ethernet.ethernet(_mac(dst_mac), _mac(src_mac), ethertype))
    for layer in layers:
        frame.add_protocol(layer)
    frame.serialize()
    return bytes(frame.data)


def _ipv4(src_ip: IPv4Like, dst_ip: IPv4Like, proto: int) -> object:
    """An IPv4 header (no options, DF, TTL 64); os-ken computes total length and checksum."""
    return ipv4.ipv4(flags=_IP_DF, ttl=_TTL, proto=proto, src=_ip(src_ip), dst=_ip(dst_ip))


def _tcp_frame(
    src_mac: str,
    dst_mac: str,
    src_ip: IPv4Like,
    dst_ip: IPv4Like,
    ports: tuple[int, int],
    seq: int,
    bits: int,
    window: int,
) -> bytes:
    """A frame carrying a TCP segment without options or payload (ACK number 0).

    os-ken computes the data offset and the checksum (over the RFC 793
    pseudo-header). ``seq`` is taken modulo 2**32.
    """
    segment = tcp.tcp(src_port=ports[0], dst_port=ports[1], seq=seq & 0xFFFFFFFF, ack=0, bits=bits, window_size=window)
    return _serialise(dst_mac, src_mac, ETH_IPV4, _ipv4(src_ip, dst_ip, PROTO_TCP), segment)


def build_tcp_syn(
    src_mac: str, dst_mac: str, src_ip: IPv4Like, dst_ip: IPv4Like, src_port: int, dst_port: int, seq: int
) -> bytes:
    """A TCP SYN (no options) from ``src_ip:src_port`` to ``dst_ip:dst_port`` with ISN ``seq``.

    Raises ValueError for a malformed MAC or IP and struct.error for a port
    outside 0-65535.
    """
    return _tcp_frame(src_mac, dst_mac, src_ip, dst_ip, (src_port, dst_port), seq, TCP_SYN, _WINDOW)


def build_tcp_rst(
    src_mac: str, dst_mac: str, src_ip: IPv4Like, dst_ip: IPv4Like, src_port: int, dst_port: int, seq: int
) -> bytes:
    """A bare TCP RST with sequence number ``seq`` (a SYN-ACK's ack number).

    Raises as :func:`build_tcp_syn`.
    """
    return _tcp_frame(src_mac, dst_mac, src_ip, dst_ip, (src_port, dst_port), seq, TCP_RST, 0)


def reset_for(reply: ProbeReply) -> bytes | None:
    """The RST that closes the half-open connection a ``syn-ack`` answers; None for other kinds.

    It goes back the way the SYN-ACK came: from its destination (the VIP) to
    its source (the backend), with sequence number ``reply.ack``.
    """
    if reply.kind != "syn-ack":
        return None
    return build_tcp_rst(
        reply.dst_mac, reply.src_mac, reply.dst_ip, reply.src_ip, reply.dst_port, reply.src_port, reply.ack
    )


def build_icmp_echo(src_mac: str, dst_mac: str, src_ip: IPv4Like, dst_ip: IPv4Like, ident: int, seq: int) -> bytes:
    """An ICMP echo request with identifier ``ident`` and sequence ``seq`` (both 16-bit).

    The payload is ``b"vmn-probe"``. Raises ValueError for a malformed MAC or
    IP and struct.error for an ident or seq outside 0-65535.
    """
    message = icmp.icmp(ICMP_ECHO_REQUEST, 0, 0, icmp.echo(ident, seq, _ICMP_PAYLOAD))
    return _serialise(dst_mac, src_mac, ETH_IPV4, _ipv4(src_ip, dst_ip, PROTO_ICMP), message)


def build_arp_request(src_mac: str, src_ip: IPv4Like, target_ip: IPv4Like) -> bytes:
    """A broadcast ARP request "who has ``target_ip``, tell ``src_ip``" (target MAC all zeros).

    Raises ValueError for a malformed MAC or IP.
    """
    request = arp.arp(
        _ARP_HTYPE_ETHERNET, ETH_IPV4, 6, 4, _ARP_REQUEST, _mac(src_mac), _ip(src_ip), _NO_MAC, _ip(target_ip)
    )
    return _serialise(BROADCAST, src_mac, ETH_ARP, request)


# -- parsing --------------------------------------------------------------------
class _LayerParser(Protocol):
    """An os-ken protocol class: ``parser(buf)`` gives ``(layer, next class, rest of buf)``."""

    def parser(self, buf: bytes) -> tuple[object, object, bytes]: ...


def _decode(kind: _LayerParser, buf: bytes) -> object:
    """The layer os-ken's ``kind`` decodes from the start of ``buf``; None if ``buf`` is too short.

    One layer only: the next class os-ken proposes is ignored (see the
    module docstring for why frames are not handed to ``packet.Packet``).
    The parsers called here (Ethernet, 802.1Q, IPv4, ARP, ICMP, and TCP on
    its 20 fixed bytes) only raise ``struct.error``, on a short buffer.
    """
    try:
        return kind.parser(buf)[0]
    except struct.error:
        return None


def _link(data: bytes) -> tuple[_Link, bytes] | None:
    """The Ethernet header and at most one 802.1Q tag of ``data``, and the bytes after them."""
    eth = _decode(ethernet.ethernet, data)
    if eth is None:
        return None
    header = cast(_EthernetLayer, eth)
    if header.ethertype != ETH_VLAN:
        return _Link(header.src, header.dst, None, header.ethertype), data[_ETH_HEADER:]
    tag = _decode(vlan.vlan, data[_ETH_HEADER:])
    if tag is None:
        return None
    vid, ethertype = cast(_VlanLayer, tag).vid, cast(_VlanLayer, tag).ethertype
    return _Link(header.src, header.dst, vid, ethertype), data[_ETH_HEADER + _VLAN_TAG :]


def parse_probe_reply(data: bytes) -> ProbeReply | None:
    """The probe answer ``data`` carries, or None for anything else.

    Recognises a TCP SYN-ACK, a TCP RST (with or without ACK), an ICMP echo
    reply and an ARP reply, untagged or behind one 802.1Q tag. Truncated,
    malformed or fragmented input and any other packet give None; this
    function never raises.
    """
    found = _link(data)
    if found is None:
        return None
    link, payload = found
    if link.ethertype == ETH_ARP:
        return _parse_arp(payload, link.vlan)
    if link.ethertype == ETH_IPV4:
        return _parse_ipv4(payload, link)
    return None


def _parse_ipv4(packet_bytes: bytes, link: _Link) -> ProbeReply | None:
    """A TCP or ICMP answer in the IPv4 datagram at the start of ``packet_bytes`` (RFC 791).

    os-ken decodes a datagram whose total length runs past the frame, a
    header length under 5 words and fragments (even the L4 header of a
    non-first fragment); none of those is an answer.
    """
    layer = _decode(ipv4.ipv4, packet_bytes)
    if layer is None:
        return None
    ip = cast(_IPv4Layer, layer)
    header = ip.header_length * 4
    if ip.version != 4 or header < 20 or not header <= ip.total_length <= len(packet_bytes):
        return None
    if ip.flags & _IP_MF or ip.offset:  # a fragment, not a whole answer
        return None
    addresses = _Addresses(
        link.src_mac, link.dst_mac, ipaddress.IPv4Address(ip.src), ipaddress.IPv4Address(ip.dst), link.vlan
    )
    l4 = packet_bytes[header : ip.total_length]
    if ip.proto == PROTO_TCP:
        return _parse_tcp(l4, addresses)
    if ip.proto == PROTO_ICMP:
        return _parse_icmp(l4, addresses)
    return None


def _parse_tcp(segment: bytes, addresses: _Addresses) -> ProbeReply | None:
    """A ``syn-ack`` or ``rst`` from the TCP ``segment`` (RFC 793 flags); options are not read.

    os-ken sees only the 20 fixed header bytes: its option parser loops
    forever on an option of length 0.
    """
    layer = _decode(tcp.tcp, segment[:_TCP_HEADER])
    if layer is None:
        return None
    header = cast(_TcpLayer, layer)
    if header.offset < 5 or header.offset * 4 > len(segment):
        return None
    flags = header.bits
    if flags & TCP_RST:
        kind: ReplyKind = "rst"
    elif (flags & (TCP_SYN | TCP_ACK | TCP_FIN)) == (TCP_SYN | TCP_ACK):
        kind = "syn-ack"
    else:
        return None
    return ProbeReply(
        kind, *addresses, src_port=header.src_port, dst_port=header.dst_port, ack=header.ack if flags & TCP_ACK else 0
    )


def _parse_icmp(message: bytes, addresses: _Addresses) -> ProbeReply | None:
    """An ``echo-reply`` (RFC 792 type 0, code 0) with its identifier and sequence number."""
    layer = _decode(icmp.icmp, message)
    if layer is None:
        return None
    header = cast(_IcmpLayer, layer)
    if header.type != ICMP_ECHO_REPLY or header.code != 0:
        return None
    if not isinstance(header.data, icmp.echo):  # os-ken leaves it raw when under 8 bytes
        return None
    echo = cast(_EchoBody, header.data)
    return ProbeReply("echo-reply", *addresses, ident=echo.id, seq=echo.seq)


def _parse_arp(body: bytes, vlan_id: int | None) -> ProbeReply | None:
    """An ``arp-reply`` (RFC 826, Ethernet/IPv4, op 2) naming its sender and target."""
    layer = _decode(arp.arp, body)
    if layer is None:
        return None
    message = cast(_ArpLayer, layer)
    shape = (message.hwtype, message.proto, message.hlen, message.plen, message.opcode)
    if shape != (_ARP_HTYPE_ETHERNET, ETH_IPV4, 6, 4, _ARP_REPLY):
        return None  # os-ken reads 6- and 4-byte addresses whatever hlen/plen say
    return ProbeReply(
        "arp-reply",
        message.src_mac,
        message.dst_mac,
        ipaddress.IPv4Address(message.src_ip),
        ipaddress.IPv4Address(message.dst_ip),
        vlan_id,
    )
