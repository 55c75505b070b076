"""The one module that builds os-ken OpenFlow 1.3 message objects.

Turns our :class:`~controller.rules.Rule` values and core batches into
``OFPFlowMod`` / bundle messages for a datapath, and parses the few
things we read back (flow-stats cookies, matches).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.rules import Action, Ct, Group, Output, PopVlan, PushVlan, Rule, SetField

ALL_COOKIE_BITS = 0xFFFFFFFFFFFFFFFF


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
            flags=1 if a.commit else 0, zone_src=None, zone_ofs_nbits=a.zone,
            recirc_table=a.recirc_table if a.recirc_table is not None else 255, alg=0, actions=[])
    raise TypeError(f"unknown action {a!r}")


def flow_add(dp: Any, rule: Rule) -> Any:
    """An ``OFPFC_ADD`` for ``rule``."""
    inst: list[Any] = []
    if rule.meter is not None:
        inst.append(parser.OFPInstructionMeter(rule.meter, ofp.OFPIT_METER))
    if rule.actions:
        inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                 [_action(a) for a in rule.actions]))
    if rule.goto is not None:
        inst.append(parser.OFPInstructionGotoTable(rule.goto))
    return parser.OFPFlowMod(
        dp, cookie=rule.cookie, table_id=rule.table, command=ofp.OFPFC_ADD,
        idle_timeout=rule.idle_timeout, priority=rule.priority, flags=rule.flags,
        match=parser.OFPMatch(**dict(rule.match)), instructions=inst)


def flow_delete_cookie(dp: Any, cookie: int) -> Any:
    """Delete, in every table, exactly the flows whose cookie is ``cookie``."""
    return parser.OFPFlowMod(
        dp, cookie=cookie, cookie_mask=ALL_COOKIE_BITS, table_id=ofp.OFPTT_ALL,
        command=ofp.OFPFC_DELETE, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch())


def flow_mods(dp: Any, deletes: Iterable[int], adds: Iterable[Rule]) -> list[Any]:
    """Deletes first, then adds."""
    return [flow_delete_cookie(dp, c) for c in deletes] + [flow_add(dp, r) for r in adds]


def bundle(dp: Any, bundle_id: int, msgs: list[Any]) -> list[Any]:
    """Wrap ``msgs`` in an atomic ONF bundle: open, add each, commit.

    OVS requires each inner message's xid to equal its bundle-add's xid.
    """
    flags = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
    out = [parser.ONFBundleCtrlMsg(dp, bundle_id, ofp.ONF_BCT_OPEN_REQUEST, flags, [])]
    for msg in msgs:
        dp.set_xid(msg)
        add = parser.ONFBundleAddMsg(dp, bundle_id, flags, msg, [])
        add.set_xid(msg.xid)
        out.append(add)
    out.append(parser.ONFBundleCtrlMsg(dp, bundle_id, ofp.ONF_BCT_COMMIT_REQUEST, flags, []))
    return out


def barrier(dp: Any) -> Any:
    return parser.OFPBarrierRequest(dp)


def flow_stats_request(dp: Any) -> Any:
    return parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0,
                                      parser.OFPMatch())


def port_desc_request(dp: Any) -> Any:
    return parser.OFPPortDescStatsRequest(dp, 0)


def meter_mods(dp: Any, meter_id: int, rate_pps: int) -> list[Any]:
    """Create meter ``meter_id`` dropping above ``rate_pps`` (add, then modify if it existed)."""
    bands = [parser.OFPMeterBandDrop(rate=rate_pps, burst_size=max(1, rate_pps // 10))]
    flags = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST
    return [parser.OFPMeterMod(dp, ofp.OFPMC_ADD, flags, meter_id, bands),
            parser.OFPMeterMod(dp, ofp.OFPMC_MODIFY, flags, meter_id, bands)]


def packet_out(dp: Any, port: int, data: bytes) -> Any:
    return parser.OFPPacketOut(dp, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER,
                               [parser.OFPActionOutput(port, 0)], data)


def match_fields(match: Any) -> Mapping[str, Any]:
    """An os-ken ``OFPMatch`` as a plain dict of OXM field name -> value."""
    return {k: v for k, v in match.items()}
