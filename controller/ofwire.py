"""OpenFlow 1.3 wire bytes of our rules, packed with :mod:`struct`, no os-ken objects.

Building an os-ken ``OFPFlowMod`` and serialising it costs about 0.6 ms per
rule (most of it in ``OFPMatch`` value normalisation through netaddr); this
module packs the same bytes directly in a few microseconds. Each rule's bytes
are made once and kept on the rule (``Rule.encoded``) with its cookie, which
digests them: they live as long as the rule object (wanted, or precompiled)
and go with it.

The output equals os-ken's serialisation of :func:`controller.ofmsg.flow_add`
byte for byte (``tests/unit/test_ofwire.py`` checks every rule of
``topologies/*.yaml`` and every action kind). Layouts: OpenFlow 1.3.5
§7.2.2 (``ofp_match``, OXM TLVs), §7.2.4 (instructions), §7.2.5 (actions),
§7.3.4.1 (``ofp_flow_mod``); Nicira extension actions as OVS
``lib/ofp-actions.c`` encodes them (``NXAST_*``).
"""

from __future__ import annotations

import hashlib
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from os_ken.lib import type_desc
from os_ken.ofproto import ofproto_v1_3 as ofp

from controller.flows.rules import (
    Action,
    Clone,
    Ct,
    CtClear,
    DecTtl,
    Group,
    Match,
    MatchValue,
    Move,
    Nat,
    Output,
    PopVlan,
    PushVlan,
    Resubmit,
    Rule,
    SetField,
)

OFP_VERSION = 4
OFPT_FLOW_MOD = 14
OFPFC_ADD, OFPFC_DELETE = 0, 3
OFPTT_ALL = 0xFF
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFP_NO_BUFFER = 0xFFFFFFFF
OFPMT_OXM = 1
NX_EXPERIMENTER_ID = 0x00002320
NXAST_REG_MOVE, NXAST_RESUBMIT_TABLE, NXAST_CT, NXAST_NAT, NXAST_CLONE, NXAST_CT_CLEAR = 6, 14, 35, 36, 42, 43
NX_NAT_RANGE_IPV4_MIN, NX_NAT_RANGE_IPV4_MAX, NX_NAT_RANGE_PROTO_MIN, NX_NAT_RANGE_PROTO_MAX = 1, 2, 16, 32
NX_CT_F_COMMIT = 1
NX_NAT_F_SRC, NX_NAT_F_DST = 1, 2
OFPP_IN_PORT_16 = 0xFFF8
"""``in_port`` of a ``resubmit(,table)``: keep the packet's own in_port (OpenFlow 1.0 numbering)."""
FIELD_BITS: Mapping[str, int] = {
    "eth_src": 48,
    "eth_dst": 48,
    "arp_sha": 48,
    "arp_tha": 48,
    "arp_spa": 32,
    "arp_tpa": 32,
    "ipv4_src": 32,
    "ipv4_dst": 32,
}
"""Widths of the fields a :class:`Move` may copy."""

_MATCH_HEAD = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_NX_HEAD = struct.Struct("!HHIH")  # type, len, experimenter, subtype


@dataclass(frozen=True)
class _Field:
    """How one OXM field is written: sort key, headers (with experimenter id, if any), value packer."""

    order: int
    head: bytes
    masked_head: bytes
    pack: Callable[[Any], bytes]


def _pack_ipv4(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, text)


def _pack_ipv6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def _pack_mac(text: str) -> bytes:
    if len(text) != 17:
        raise ValueError(text)
    return bytes.fromhex(text.replace(":", ""))


def _packer(t: Any) -> Callable[[Any], bytes]:
    """A fast packer for os-ken type ``t`` that falls back to os-ken's own on unusual spellings."""
    if isinstance(t, type_desc.IntDescr):
        size, mask = t.size, (1 << (8 * t.size)) - 1
        return lambda v: (v & mask).to_bytes(size, "big")
    fast: Callable[[str], bytes] | None = {
        type_desc.MacAddr: _pack_mac,
        type_desc.IPv4Addr: _pack_ipv4,
        type_desc.IPv6Addr: _pack_ipv6,
    }.get(t)
    slow: Callable[[Any], bytes] = t.from_user
    if fast is None:
        return slow
    checked = fast

    def pack(v: Any) -> bytes:
        try:
            return checked(v)
        except (ValueError, OSError, TypeError):
            out = slow(v)
            if isinstance(out, tuple):  # a CIDR spelling: os-ken makes it masked, we do not
                raise ValueError(f"OXM value {v!r} carries a mask; pass (value, mask)") from None
            return out

    return pack


def _field(name: str) -> _Field:
    """Derive field ``name``'s encoding from os-ken's OXM table (``ofproto_v1_3.oxm_types``)."""
    try:
        desc = next(f for f in ofp.oxm_types if f.name == name)
    except StopIteration:
        raise KeyError(f"unknown OXM field {name!r}") from None
    size = desc.type.size
    zero = bytes(size)
    plain, masked = bytearray(), bytearray()
    ofp.oxm_serialize(desc.num, zero, None, plain, 0)
    ofp.oxm_serialize(desc.num, zero, zero, masked, 0)
    order = desc.num[0] if isinstance(desc.num, tuple) else desc.num
    return _Field(order, bytes(plain[:-size]), bytes(masked[: -2 * size]), _packer(desc.type))


class _Fields(dict[str, _Field]):
    """OXM name -> :class:`_Field`, filled on first use (bounded by os-ken's field table)."""

    def __missing__(self, name: str) -> _Field:
        spec = self[name] = _field(name)
        return spec


_FIELDS = _Fields()


def _oxm(name: str, value: MatchValue | str | int) -> tuple[int, bytes]:
    """(sort key, TLV) of one match field; a (value, mask) pair is written masked, value AND mask."""
    f = _FIELDS[name]
    if type(value) is tuple:
        v, m = f.pack(value[0]), f.pack(value[1])
        v = (int.from_bytes(v, "big") & int.from_bytes(m, "big")).to_bytes(len(v), "big")
        return f.order, f.masked_head + v + m
    return f.order, f.head + f.pack(value)


_PADS = tuple(bytes(n) for n in range(8))


def _pad8(data: bytes) -> bytes:
    return data + _PADS[-len(data) % 8]


def match_bytes(match: Match) -> bytes:
    """``ofp_match`` (OXM type, fields sorted by OXM type number as os-ken does, padded to 8)."""
    fields = _FIELDS
    tlvs = []
    for name, value in match:
        f = fields[name]
        if type(value) is tuple:
            tlvs.append(_oxm(name, value))
        else:
            tlvs.append((f.order, f.head + f.pack(value)))
    tlvs.sort()  # OXM type numbers are distinct: the TLV bytes are never compared
    body = b"".join([t for _, t in tlvs])
    length = 4 + len(body)
    return _MATCH_HEAD.pack(OFPMT_OXM, length) + body + _PADS[-length % 8]


def _nx(subtype: int, body: bytes) -> bytes:
    """A Nicira action: experimenter header, subtype, body; length rounded up to 8 (os-ken pads none)."""
    length = _NX_HEAD.size + len(body)
    return _NX_HEAD.pack(0xFFFF, length + (-length % 8), NX_EXPERIMENTER_ID, subtype) + body


def _nat(nat: Nat) -> bytes:
    flags, present, opt = 0, 0, b""
    if nat.src is not None:
        flags, addr, port = NX_NAT_F_SRC, nat.src, None
    elif nat.dst is not None:
        flags, addr, port = NX_NAT_F_DST, nat.dst, nat.port
    else:
        addr, port = None, None
    if addr is not None:
        present |= NX_NAT_RANGE_IPV4_MIN | NX_NAT_RANGE_IPV4_MAX
        opt += _pack_ipv4(addr) * 2
    if port is not None:
        present |= NX_NAT_RANGE_PROTO_MIN | NX_NAT_RANGE_PROTO_MAX
        opt += _U16.pack(port) * 2
    body = b"\0\0" + struct.pack("!HH", flags, present) + opt
    return _nx(NXAST_NAT, body + bytes(-(_NX_HEAD.size + len(body)) % 8))


def _ct(a: Ct) -> bytes:
    inner = b""
    if a.nat is not None:
        inner += _nat(a.nat)
    if a.mark is not None:
        inner += _set_field("ct_mark", a.mark)
    table = a.recirc_table if a.recirc_table is not None else 255
    body = struct.pack("!H4sHB3xH", NX_CT_F_COMMIT if a.commit else 0, bytes(4), a.zone, table, 0)
    return _nx(NXAST_CT, body + inner)


def _set_field(name: str, value: MatchValue | str | int) -> bytes:
    return _set_field_tlv(_oxm(name, value)[1])


def _set_field_tlv(tlv: bytes) -> bytes:
    """``OFPAT_SET_FIELD`` around one unmasked OXM TLV, padded to 8."""
    length = 4 + len(tlv)
    return _MATCH_HEAD.pack(ofp.OFPAT_SET_FIELD, length + (-length % 8)) + tlv + bytes(-length % 8)


def _move(a: Move) -> bytes:
    src, dst = _FIELDS[a.src].head, _FIELDS[a.dst].head
    return _nx(NXAST_REG_MOVE, struct.pack("!HHH", FIELD_BITS[a.src], 0, 0) + src + dst)


_OUTPUT = struct.Struct("!HHIH6x")
_PUSH_VLAN = struct.Struct("!HHH2x")
_GROUP = struct.Struct("!HHI")
_POP_VLAN = struct.pack("!HH4x", ofp.OFPAT_POP_VLAN, 8)
_DEC_NW_TTL = struct.pack("!HH4x", ofp.OFPAT_DEC_NW_TTL, 8)
_CT_CLEAR = _nx(NXAST_CT_CLEAR, bytes(6))
_RESUBMIT = struct.Struct("!HB3x")


def _clone(a: Clone) -> bytes:
    return _nx(NXAST_CLONE, bytes(6) + b"".join([action_bytes(x) for x in a.actions]))


_ACTIONS: Mapping[type, Callable[[Any], bytes]] = {
    Output: lambda a: _OUTPUT.pack(ofp.OFPAT_OUTPUT, 16, a.port, a.max_len),
    SetField: lambda a: _set_field(a.field, a.value),
    PushVlan: lambda a: _PUSH_VLAN.pack(ofp.OFPAT_PUSH_VLAN, 8, a.ethertype),
    PopVlan: lambda a: _POP_VLAN,
    Group: lambda a: _GROUP.pack(ofp.OFPAT_GROUP, 8, a.group_id),
    DecTtl: lambda a: _DEC_NW_TTL,
    Ct: _ct,
    Move: _move,
    CtClear: lambda a: _CT_CLEAR,
    Resubmit: lambda a: _nx(NXAST_RESUBMIT_TABLE, _RESUBMIT.pack(OFPP_IN_PORT_16, a.table)),
    Clone: _clone,
}
"""Action type -> its packer (OpenFlow 1.3.5 §7.2.5; Nicira ones as OVS ``lib/ofp-actions.c`` encodes them)."""


def action_bytes(a: Action) -> bytes:
    """One action's TLV.

    Raises TypeError for an action type this encoder does not know, KeyError
    for a :class:`Move` of a field of unknown width.
    """
    pack = _ACTIONS.get(type(a))
    if pack is None:
        raise TypeError(f"unknown action {a!r}")
    return pack(a)


_METER = struct.Struct("!HHI")
_APPLY = struct.Struct("!HH4x")
_WRITE_METADATA = struct.Struct("!HH4xQQ")
_GOTO = struct.Struct("!HHB3x")


def instructions_bytes(rule: Rule) -> bytes:
    """Meter, Apply-Actions, Write-Metadata, Goto-Table, in that order (OpenFlow 1.3.5 §7.2.4)."""
    out = b""
    if rule.meter is not None:
        out += _METER.pack(ofp.OFPIT_METER, 8, rule.meter)
    if rule.actions:
        actions = _ACTIONS
        acts = b"".join([actions[type(a)](a) if type(a) in actions else action_bytes(a) for a in rule.actions])
        out += _APPLY.pack(ofp.OFPIT_APPLY_ACTIONS, 8 + len(acts)) + acts
    if rule.write_metadata is not None:
        out += _WRITE_METADATA.pack(ofp.OFPIT_WRITE_METADATA, 24, *rule.write_metadata)
    if rule.goto is not None:
        out += _GOTO.pack(ofp.OFPIT_GOTO_TABLE, 8, rule.goto)
    return out


_FLOW_MOD_HEAD = struct.Struct("!BBHI" + "QQBBHHHIIIH2x")
"""``ofp_header`` then the fixed part of ``ofp_flow_mod`` (OpenFlow 1.3.5 §7.3.4.1)."""


_DIGESTED = struct.Struct("!BHHH")
"""What the cookie digests besides match and instructions: table, priority, idle timeout, flags."""
COOKIE_DIGEST_BYTES = 7
"""The cookie's low 56 bits: the owner app id takes the top byte."""


def encode(rule: Rule) -> tuple[int, bytes]:
    """(cookie, ``OFPT_FLOW_MOD`` ``OFPFC_ADD`` of ``rule`` with xid 0); use ``rule.encoded``, which caches it.

    The cookie is ``rule.app`` in bits 56-63 and a 56-bit BLAKE2b digest of
    everything the switch stores of the rule (table, priority, idle timeout,
    flags, the ``ofp_match`` and the instructions) below: equal rules get
    equal cookies in every process, and the digest costs one pass over bytes
    made for sending anyway. The bytes equal os-ken's ``OFPFlowMod``
    serialisation.

    Raises KeyError for an unknown match field, ValueError for a value it cannot write,
    TypeError for an unknown action.
    """
    tail = match_bytes(rule.match) + instructions_bytes(rule)
    fixed = _DIGESTED.pack(rule.table, rule.priority, rule.idle_timeout, rule.flags)
    digest = hashlib.blake2b(fixed + tail, digest_size=COOKIE_DIGEST_BYTES).digest()
    cookie = (rule.app << 56) | int.from_bytes(digest, "big")
    head = _FLOW_MOD_HEAD.pack(
        OFP_VERSION,
        OFPT_FLOW_MOD,
        _FLOW_MOD_HEAD.size + len(tail),
        0,
        cookie,
        0,
        rule.table,
        OFPFC_ADD,
        rule.idle_timeout,
        0,
        rule.priority,
        OFP_NO_BUFFER,
        0,
        0,
        rule.flags,
    )
    return cookie, head + tail


def flow_add(rule: Rule) -> bytes:
    """``OFPT_FLOW_MOD`` ``OFPFC_ADD`` of ``rule`` with xid 0 (equals os-ken's ``OFPFlowMod`` bytes).

    Made once per rule (``rule.encoded``). Raises KeyError for an unknown match field,
    ValueError for a value it cannot write, TypeError for an unknown action.
    """
    return rule.encoded[1]


_EMPTY_MATCH = _pad8(_MATCH_HEAD.pack(OFPMT_OXM, 4))


def flow_delete_cookie(cookie: int) -> bytes:
    """``OFPFC_DELETE`` in every table of the flows whose cookie is exactly ``cookie``, xid 0."""
    length = _FLOW_MOD_HEAD.size + len(_EMPTY_MATCH)
    head = _FLOW_MOD_HEAD.pack(
        OFP_VERSION,
        OFPT_FLOW_MOD,
        length,
        0,
        cookie,
        0xFFFFFFFFFFFFFFFF,
        OFPTT_ALL,
        OFPFC_DELETE,
        0,
        0,
        0x8000,
        OFP_NO_BUFFER,
        OFPP_ANY,
        OFPG_ANY,
        0,
    )
    return head + _EMPTY_MATCH
