"""DHCP messages (RFC 2131, options RFC 2132), parsed and built with os-ken's packet library.

:func:`parse_request` reads a client's DISCOVER or REQUEST from a trapped
frame (802.1Q-tagged or not); :func:`build_reply` makes the server's OFFER,
ACK or NAK frame. Layers are decoded one at a time with each os-ken class's
``parser`` (never ``packet.Packet``, which keeps guessing into payloads; see
:mod:`apps.lb.probe`), and the DHCP payload by ``os_ken.lib.packet.dhcp``.
Parsing never raises: a truncated or malformed frame is None. Building is
deterministic: the same arguments give the same bytes; os-ken fills in
lengths and the IPv4 and UDP checksums.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Protocol, cast

from os_ken.lib.packet import dhcp, ethernet, ipv4, packet, udp, vlan

from controller.packets import ETH_IPV4, ETH_VLAN, IP_PROTO_UDP, UDP_BOOTPC, UDP_BOOTPS

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
MESSAGE_NAMES = {OFFER: "offer", ACK: "ack", NAK: "nak"}
OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_MTU = 1, 3, 6, 26
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_MESSAGE_TYPE, OPT_SERVER_ID = 50, 51, 53, 54
OPT_RENEWAL_TIME, OPT_REBINDING_TIME = 58, 59
FLAG_BROADCAST = 0x8000
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
BROADCAST_IP = ipaddress.IPv4Address("255.255.255.255")
_ETH_HEADER, _VLAN_TAG, _UDP_HEADER = 14, 4, 8
_BOOT_REPLY = 2
_TTL = 64

Ip = ipaddress.IPv4Address


@dataclass(frozen=True)
class Request:
    """A client's DISCOVER or REQUEST: what a server needs to answer it."""

    kind: int
    """:data:`DISCOVER` or :data:`REQUEST`."""
    xid: int
    flags: int
    client_mac: str
    vlan: int | None
    ciaddr: Ip
    giaddr: Ip
    requested: Ip | None
    """Option 50, the address a REQUEST asks for (None: absent)."""
    server: Ip | None
    """Option 54, the server a REQUEST answers (None: absent, a renewal)."""


@dataclass(frozen=True)
class Lease:
    """What a server offers: the client's address and the network's parameters."""

    address: ipaddress.IPv4Interface
    server: Ip
    server_mac: str
    router: Ip
    dns: tuple[Ip, ...] = ()
    lease_time: int = 3600
    mtu: int = 1500


class _Layer(Protocol):
    def parser(self, buf: bytes) -> tuple[object, object, bytes]: ...


class _Eth(Protocol):
    ethertype: int


class _Vlan(Protocol):
    vid: int
    ethertype: int


class _IPv4(Protocol):
    version: int
    header_length: int
    total_length: int
    flags: int
    offset: int
    proto: int


class _Udp(Protocol):
    src_port: int
    dst_port: int
    total_length: int


class _Option(Protocol):
    tag: int
    value: bytes


class _Options(Protocol):
    option_list: list[object]


class _Dhcp(Protocol):
    op: int
    hlen: int
    xid: int
    flags: int
    chaddr: object
    ciaddr: str
    giaddr: str
    options: _Options | None


def _decode(kind: _Layer, buf: bytes) -> object:
    try:
        return kind.parser(buf)[0]
    except (struct.error, ValueError, UnicodeDecodeError):
        return None


def _udp_payload(data: bytes) -> tuple[int | None, bytes] | None:
    """The VLAN id (None: untagged) and the UDP payload of a 67 <- 68 datagram in ``data``."""
    eth = _decode(ethernet.ethernet, data)
    if eth is None:
        return None
    ethertype, rest, vid = cast(_Eth, eth).ethertype, data[_ETH_HEADER:], None
    if ethertype == ETH_VLAN:
        tag = _decode(vlan.vlan, rest)
        if tag is None:
            return None
        ethertype, rest, vid = cast(_Vlan, tag).ethertype, rest[_VLAN_TAG:], cast(_Vlan, tag).vid
    if ethertype != ETH_IPV4:
        return None
    layer = _decode(ipv4.ipv4, rest)
    if layer is None:
        return None
    ip = cast(_IPv4, layer)
    header = ip.header_length * 4
    if ip.version != 4 or header < 20 or not header <= ip.total_length <= len(rest) or ip.proto != IP_PROTO_UDP:
        return None
    if ip.flags & 1 or ip.offset:  # a fragment
        return None
    datagram = rest[header : ip.total_length]
    head = _decode(udp.udp, datagram[:_UDP_HEADER])
    if head is None:
        return None
    u = cast(_Udp, head)
    if (u.src_port, u.dst_port) != (UDP_BOOTPC, UDP_BOOTPS) or not _UDP_HEADER <= u.total_length <= len(datagram):
        return None
    return vid, datagram[_UDP_HEADER : u.total_length]


def _options(message: _Dhcp) -> dict[int, bytes]:
    """Option tag -> value (the first of each tag); options os-ken could not parse are left out."""
    out: dict[int, bytes] = {}
    for opt in message.options.option_list if message.options is not None else []:
        if isinstance(opt, dhcp.option):
            o = cast(_Option, opt)
            out.setdefault(o.tag, bytes(o.value))
    return out


def _address(value: bytes | None) -> Ip | None:
    return Ip(value) if value is not None and len(value) == 4 else None


def parse_request(data: bytes) -> Request | None:
    """The DISCOVER or REQUEST that frame ``data`` carries (UDP 68 -> 67), or None; never raises."""
    found = _udp_payload(data)
    if found is None:
        return None
    vid, payload = found
    layer = _decode(dhcp.dhcp, payload)
    if layer is None:
        return None
    message = cast(_Dhcp, layer)
    if message.op != 1 or message.hlen != 6 or not isinstance(message.chaddr, str):
        return None
    opts = _options(message)
    kind = opts.get(OPT_MESSAGE_TYPE, b"")
    if len(kind) != 1 or kind[0] not in (DISCOVER, REQUEST):
        return None
    try:
        ciaddr, giaddr = Ip(message.ciaddr), Ip(message.giaddr)
    except ValueError:
        return None
    return Request(
        kind=kind[0],
        xid=message.xid,
        flags=message.flags,
        client_mac=message.chaddr.lower(),
        vlan=vid,
        ciaddr=ciaddr,
        giaddr=giaddr,
        requested=_address(opts.get(OPT_REQUESTED_IP)),
        server=_address(opts.get(OPT_SERVER_ID)),
    )


def _option(tag: int, value: bytes) -> object:
    return dhcp.option(tag, value)


def _reply_options(kind: int, lease: Lease) -> list[object]:
    """The options of an OFFER or ACK (RFC 2132), or of a NAK (type and server only)."""
    opts = [_option(OPT_MESSAGE_TYPE, bytes([kind])), _option(OPT_SERVER_ID, lease.server.packed)]
    if kind == NAK:
        return opts
    opts += [
        _option(OPT_LEASE_TIME, struct.pack("!I", lease.lease_time)),
        _option(OPT_RENEWAL_TIME, struct.pack("!I", lease.lease_time // 2)),
        _option(OPT_REBINDING_TIME, struct.pack("!I", lease.lease_time * 7 // 8)),
        _option(OPT_SUBNET_MASK, lease.address.network.netmask.packed),
        _option(OPT_ROUTER, lease.router.packed),
    ]
    if lease.dns:
        opts.append(_option(OPT_DNS, b"".join(d.packed for d in lease.dns)))
    opts.append(_option(OPT_MTU, struct.pack("!H", lease.mtu)))
    return opts


def build_reply(kind: int, request: Request, lease: Lease) -> bytes:
    """The server's OFFER, ACK or NAK to ``request``, as an untagged Ethernet frame.

    Addressed to the client's MAC, and to its new address unless the client
    asked for a broadcast (flag) or it is a NAK (RFC 2131 4.1: then to
    255.255.255.255). Raises ValueError for another ``kind``.
    """
    if kind not in MESSAGE_NAMES:
        raise ValueError(f"not a server message type: {kind}")
    yiaddr = "0.0.0.0" if kind == NAK else str(lease.address.ip)
    message = dhcp.dhcp(
        op=_BOOT_REPLY,
        chaddr=request.client_mac,
        options=dhcp.options(_reply_options(kind, lease)),
        xid=request.xid,
        flags=request.flags,
        yiaddr=yiaddr,
        giaddr=str(request.giaddr),
    )
    broadcast = kind == NAK or bool(request.flags & FLAG_BROADCAST)
    dst_ip = BROADCAST_IP if broadcast else lease.address.ip
    dst_mac = BROADCAST_MAC if request.flags & FLAG_BROADCAST else request.client_mac
    frame = packet.Packet()
    frame.add_protocol(ethernet.ethernet(dst_mac, lease.server_mac, ETH_IPV4))
    frame.add_protocol(ipv4.ipv4(ttl=_TTL, proto=IP_PROTO_UDP, src=str(lease.server), dst=str(dst_ip)))
    frame.add_protocol(udp.udp(UDP_BOOTPS, UDP_BOOTPC))
    frame.add_protocol(message)
    frame.serialize()
    return bytes(frame.data)


def build_request(kind: int, client_mac: str, xid: int, requested: Ip | None = None, server: Ip | None = None) -> bytes:
    """A client's broadcast DISCOVER or REQUEST from 0.0.0.0 (tests and tools)."""
    opts = [_option(OPT_MESSAGE_TYPE, bytes([kind]))]
    if requested is not None:
        opts.append(_option(OPT_REQUESTED_IP, requested.packed))
    if server is not None:
        opts.append(_option(OPT_SERVER_ID, server.packed))
    message = dhcp.dhcp(op=1, chaddr=client_mac, options=dhcp.options(opts), xid=xid)
    frame = packet.Packet()
    frame.add_protocol(ethernet.ethernet(BROADCAST_MAC, client_mac, ETH_IPV4))
    frame.add_protocol(ipv4.ipv4(ttl=_TTL, proto=IP_PROTO_UDP, src="0.0.0.0", dst=str(BROADCAST_IP)))
    frame.add_protocol(udp.udp(UDP_BOOTPC, UDP_BOOTPS))
    frame.add_protocol(message)
    frame.serialize()
    return bytes(frame.data)


def parse_reply(data: bytes) -> tuple[int, str, Ip, dict[int, bytes]] | None:
    """(message type, client MAC, yiaddr, options) of a server's reply frame (tests); None otherwise."""
    eth = _decode(ethernet.ethernet, data)
    if eth is None or cast(_Eth, eth).ethertype != ETH_IPV4:
        return None
    layer = _decode(ipv4.ipv4, data[_ETH_HEADER:])
    if layer is None:
        return None
    header = cast(_IPv4, layer).header_length * 4
    start = _ETH_HEADER + header + _UDP_HEADER
    message = _decode(dhcp.dhcp, data[start:])
    if message is None:
        return None
    m = cast(_Dhcp, message)
    opts = _options(m)
    kind = opts.get(OPT_MESSAGE_TYPE, b"\0")[0]
    yiaddr = Ip(cast(_IPv4Like, message).yiaddr)
    return kind, str(m.chaddr), yiaddr, opts


class _IPv4Like(Protocol):
    yiaddr: str
