"""The one module that builds os-ken OpenFlow 1.3 message objects.

Turns our :class:`~controller.flows.rules.Rule` values and core batches into
``OFPFlowMod`` / bundle messages for a datapath, and parses the few
things we read back (flow-stats cookies, matches).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

from os_ken.ofproto import ofproto_common
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofwire
from controller.fabric.topology import PortInfo
from controller.flows.rules import (
    Action,
    Clone,
    Ct,
    CtClear,
    DecTtl,
    Group,
    GroupEntry,
    Move,
    Nat,
    Output,
    PopVlan,
    PushVlan,
    Resubmit,
    Rule,
    SetField,
)

ALL_COOKIE_BITS = 0xFFFFFFFFFFFFFFFF
NX_CT_F_COMMIT = 1
NX_NAT_F_SRC = 1
NX_NAT_F_DST = 2
FIELD_BITS: Mapping[str, int] = ofwire.FIELD_BITS
"""Widths of the fields a :class:`Move` may copy."""


class _PaddedNat(parser.NXActionNAT):
    """os-ken's NXActionNAT declares a padded length but writes no padding, which
    breaks it inside another action (``ct``): pad the body to a multiple of 8."""

    _HEADER_LEN = 10  # type, len, experimenter, subtype

    def serialize_body(self) -> bytearray:
        data: bytearray = super().serialize_body()
        data += bytes(-(self._HEADER_LEN + len(data)) % 8)
        return data


NXAST_CLONE = ofwire.NXAST_CLONE
"""Nicira action subtype of ``clone`` (OVS ``lib/ofp-actions.c``, ``NXAST_RAW_CLONE``)."""
OFPP_IN_PORT_16 = ofwire.OFPP_IN_PORT_16


class NXActionClone(parser.NXAction):
    """Nicira ``clone(actions)``, which os-ken lacks: an extended action header (6 bytes of
    padding after the subtype), then the nested actions (OVS ``encode_CLONE``)."""

    _subtype = NXAST_CLONE
    _fmt_str = "!6x"

    def __init__(
        self, actions: list[Any], type_: Any = None, len_: Any = None, experimenter: Any = None, subtype: Any = None
    ) -> None:
        super().__init__()
        self.actions = actions

    @classmethod
    def parser(cls, buf: bytes) -> NXActionClone:
        rest = buf[struct.calcsize(cls._fmt_str) :]
        actions = []
        while len(rest) > 0:
            action = parser.OFPAction.parser(rest, 0)
            actions.append(action)
            rest = rest[action.len :]
        return cls(actions)

    def serialize_body(self) -> bytearray:
        data = bytearray(struct.calcsize(self._fmt_str))
        for a in self.actions:
            a.serialize(data, len(data))
        return data


parser.NXAction.register(NXActionClone)


def _nat(nat: Nat) -> Any:
    if nat.src is not None:
        return _PaddedNat(flags=NX_NAT_F_SRC, range_ipv4_min=nat.src, range_ipv4_max=nat.src)
    if nat.dst is None:
        return _PaddedNat(flags=0)
    ports = {} if nat.port is None else {"range_proto_min": nat.port, "range_proto_max": nat.port}
    return _PaddedNat(flags=NX_NAT_F_DST, range_ipv4_min=nat.dst, range_ipv4_max=nat.dst, **ports)


def _action(a: Action) -> Any:
    if isinstance(a, Output):
        return parser.OFPActionOutput(a.port, a.max_len)
    if isinstance(a, PushVlan):
        return parser.OFPActionPushVlan(a.ethertype)
    if isinstance(a, PopVlan):
        return parser.OFPActionPopVlan()
    if isinstance(a, SetField):
        return parser.OFPActionSetField(**{a.field: a.value})
    if isinstance(a, Group):
        return parser.OFPActionGroup(a.group_id)
    if isinstance(a, Ct):
        return parser.NXActionCT(
            flags=NX_CT_F_COMMIT if a.commit else 0,
            zone_src=None,
            zone_ofs_nbits=a.zone,
            recirc_table=a.recirc_table if a.recirc_table is not None else 255,
            alg=0,
            actions=([_nat(a.nat)] if a.nat is not None else [])
            + ([parser.OFPActionSetField(ct_mark=a.mark)] if a.mark is not None else []),
        )
    if isinstance(a, DecTtl):
        return parser.OFPActionDecNwTtl()
    if isinstance(a, Move):
        return parser.NXActionRegMove(src_field=a.src, dst_field=a.dst, n_bits=FIELD_BITS[a.src])
    if isinstance(a, CtClear):
        return parser.NXActionCTClear()
    if isinstance(a, Resubmit):
        return parser.NXActionResubmitTable(in_port=OFPP_IN_PORT_16, table_id=a.table)
    if isinstance(a, Clone):
        return NXActionClone([_action(x) for x in a.actions])
    raise TypeError(f"unknown action {a!r}")


def flow_add(dp: Any, rule: Rule) -> Any:
    """An ``OFPFC_ADD`` for ``rule``."""
    inst: list[Any] = []
    if rule.meter is not None:
        inst.append(parser.OFPInstructionMeter(rule.meter, ofp.OFPIT_METER))
    if rule.actions:
        inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [_action(a) for a in rule.actions]))
    if rule.write_metadata is not None:
        inst.append(parser.OFPInstructionWriteMetadata(*rule.write_metadata))
    if rule.goto is not None:
        inst.append(parser.OFPInstructionGotoTable(rule.goto))
    return parser.OFPFlowMod(
        dp,
        cookie=rule.cookie,
        table_id=rule.table,
        command=ofp.OFPFC_ADD,
        idle_timeout=rule.idle_timeout,
        priority=rule.priority,
        flags=rule.flags,
        match=parser.OFPMatch(**dict(rule.match)),
        instructions=inst,
    )


GROUP_TYPES: Mapping[str, int] = {"all": ofp.OFPGT_ALL, "select": ofp.OFPGT_SELECT, "ff": ofp.OFPGT_FF}


def group_set(dp: Any, group: GroupEntry) -> list[Any]:
    """Make ``group`` exist with exactly its buckets: an add, then a modify (if it existed)."""
    buckets = [
        parser.OFPBucket(weight, watch, ofp.OFPG_ANY, [_action(a) for a in actions])
        for weight, watch, actions in group.buckets
    ]
    kind = GROUP_TYPES[group.type]
    return [
        parser.OFPGroupMod(dp, ofp.OFPGC_ADD, kind, group.group_id, buckets),
        parser.OFPGroupMod(dp, ofp.OFPGC_MODIFY, kind, group.group_id, buckets),
    ]


def group_delete(dp: Any, group_id: int) -> Any:
    return parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, group_id, [])


def flow_delete_cookie(dp: Any, cookie: int) -> Any:
    """Delete, in every table, exactly the flows whose cookie is ``cookie``."""
    return parser.OFPFlowMod(
        dp,
        cookie=cookie,
        cookie_mask=ALL_COOKIE_BITS,
        table_id=ofp.OFPTT_ALL,
        command=ofp.OFPFC_DELETE,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch(),
    )


def flow_stats_request(dp: Any, app: int | None = None) -> Any:
    """Ask for every flow, or only those of owner ``app`` (by the cookie's top byte)."""
    cookie, mask = (0, 0) if app is None else (app << 56, 0xFF << 56)
    return parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, cookie, mask, parser.OFPMatch())


def group_stats_request(dp: Any) -> Any:
    return parser.OFPGroupStatsRequest(dp, 0, ofp.OFPG_ALL)


def port_desc_request(dp: Any) -> Any:
    return parser.OFPPortDescStatsRequest(dp, 0)


def meter_mods(dp: Any, meter_id: int, rate_pps: int, burst: int | None = None) -> list[Any]:
    """Create meter ``meter_id`` dropping above ``rate_pps`` with a ``burst`` of packets
    (default a tenth of a second's worth); an add, then a modify if it existed."""
    bands = [parser.OFPMeterBandDrop(rate=rate_pps, burst_size=burst or max(1, rate_pps // 10))]
    flags = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST
    return [
        parser.OFPMeterMod(dp, ofp.OFPMC_ADD, flags, meter_id, bands),
        parser.OFPMeterMod(dp, ofp.OFPMC_MODIFY, flags, meter_id, bands),
    ]


def packet_out(dp: Any, port: int, data: bytes) -> Any:
    return parser.OFPPacketOut(dp, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, [parser.OFPActionOutput(port, 0)], data)


ROLES = {
    "nochange": ofp.OFPCR_ROLE_NOCHANGE,
    "equal": ofp.OFPCR_ROLE_EQUAL,
    "master": ofp.OFPCR_ROLE_MASTER,
    "slave": ofp.OFPCR_ROLE_SLAVE,
}
"""Role names of :mod:`controller.ha.roles` -> ``OFPCR_ROLE_*`` (OpenFlow 1.3.5 §7.3.9)."""
ROLE_NAMES = {v: k for k, v in ROLES.items()}
_ROLE_BODY = struct.Struct("!I4xQ")


def role_request(dp: Any, role: str, generation: int) -> Any:
    """An ``OFPT_ROLE_REQUEST`` for ``role`` (``master``, ``slave``, ``equal``, ``nochange``)."""
    return parser.OFPRoleRequest(dp, ROLES[role], generation)


def role_of_request(data: bytes) -> tuple[str, int] | None:
    """(role, generation id) of the role request at the start of ``data`` (an error's copy); None if not one."""
    if len(data) < ofproto_common.OFP_HEADER_SIZE + _ROLE_BODY.size or data[1] != ofp.OFPT_ROLE_REQUEST:
        return None
    role, generation = _ROLE_BODY.unpack_from(data, ofproto_common.OFP_HEADER_SIZE)
    name = ROLE_NAMES.get(role)
    return None if name is None else (name, generation)


def match_fields(match: Any) -> Mapping[str, Any]:
    """An os-ken ``OFPMatch`` as a plain dict of OXM field name -> value."""
    return {k: v for k, v in match.items()}


# -- wire bytes ---------------------------------------------------------------
# Rules are packed straight to bytes by controller.ofwire (equal to os-ken's
# serialisation of flow_add), once per rule object (Rule.encoded): a rule's
# bytes live as long as the rule.


_BUNDLE_ADD = struct.Struct("!BBHIIIIxxH")
_XID = struct.Struct("!I")
BUNDLE_FLAGS = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED


def flow_add_bytes(rule: Rule) -> bytes:
    """The wire bytes of ``flow_add(rule)`` with xid 0 (:func:`controller.ofwire.flow_add`)."""
    return ofwire.flow_add(rule)


def flow_delete_bytes(cookie: int) -> bytes:
    """The wire bytes of ``flow_delete_cookie(cookie)`` with xid 0."""
    return ofwire.flow_delete_cookie(cookie)


def _next_xid(dp: Any) -> int:
    dp.xid = (dp.xid + 1) & ofp.MAX_XID
    return int(dp.xid)


def _ctrl_bytes(dp: Any, bundle_id: int, kind: int) -> bytes:
    msg = parser.ONFBundleCtrlMsg(dp, bundle_id, kind, BUNDLE_FLAGS, [])
    dp.set_xid(msg)
    msg.serialize()
    return bytes(msg.buf)


def bundle_bytes(dp: Any, bundle_id: int, deletes: Iterable[int], adds: Iterable[Rule]) -> list[bytes]:
    """An atomic bundle (open, deletes then adds, commit) as ready-to-send buffers."""
    out = [_ctrl_bytes(dp, bundle_id, ofp.ONF_BCT_OPEN_REQUEST)]
    bodies = [flow_delete_bytes(c) for c in deletes] + [flow_add_bytes(r) for r in adds]
    for body in bodies:
        xid = _next_xid(dp)
        inner = body[:4] + _XID.pack(xid) + body[8:]
        head = _BUNDLE_ADD.pack(
            ofp.OFP_VERSION,
            ofp.OFPT_EXPERIMENTER,
            _BUNDLE_ADD.size + len(inner),
            xid,
            ofproto_common.ONF_EXPERIMENTER_ID,
            ofp.ONF_ET_BUNDLE_ADD_MESSAGE,
            bundle_id,
            BUNDLE_FLAGS,
        )
        out.append(head + inner)
    out.append(_ctrl_bytes(dp, bundle_id, ofp.ONF_BCT_COMMIT_REQUEST))
    return out


SMALL_ADD_ONLY = 8
"""Up to this many adds with no deletes go as plain flow_mods: nothing to make atomic."""


def _with_xid(dp: Any, body: bytes) -> bytes:
    return body[:4] + _XID.pack(_next_xid(dp)) + body[8:]


def batch_bytes(dp: Any, bundle_id: int, deletes: Iterable[int], adds: Iterable[Rule]) -> bytes:
    """One buffer for one switch change, sent with a single write.

    A small add-only change (a new host) goes as plain flow_mods: nothing can
    be half-applied, and the switch sends no bundle replies. Anything that
    deletes or replaces, or is large, goes as one atomic bundle.
    """
    deletes, adds = list(deletes), list(adds)
    if not deletes and len(adds) <= SMALL_ADD_ONLY:
        return b"".join(_with_xid(dp, flow_add_bytes(r)) for r in adds)
    return b"".join(bundle_bytes(dp, bundle_id, deletes, adds))


def port_infos(port_list: Any) -> list[PortInfo]:
    """Our :class:`PortInfo` of each os-ken ``OFPPort`` in ``port_list`` (a port description reply or port status).

    A port is up unless its state says link down or its config says port down
    (OpenFlow 1.3.5 section 7.2.1).
    """
    return [
        PortInfo(
            p.port_no,
            p.name.decode(errors="replace") if isinstance(p.name, bytes) else p.name,
            not (p.state & ofp.OFPPS_LINK_DOWN or p.config & ofp.OFPPC_PORT_DOWN),
        )
        for p in port_list
    ]
