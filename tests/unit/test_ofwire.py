"""controller.ofwire packs the same bytes os-ken serialises, for every rule we make."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofmsg, ofwire
from controller.config import load_model
from controller.flows.rules import (
    CT_EST,
    CT_INV,
    CT_NEW,
    CT_TRK,
    FLAG_SEND_FLOW_REM,
    OFPP_CONTROLLER,
    OFPP_IN_PORT,
    OFPVID_PRESENT,
    Action,
    Clone,
    Ct,
    CtClear,
    DecTtl,
    Group,
    Move,
    Nat,
    Output,
    PopVlan,
    PushVlan,
    Resubmit,
    Rule,
    SetField,
    ct_state,
    make_match,
)
from controller.tools.fakefabric import FakeFabric

TOPOLOGIES = sorted((Path(__file__).parents[2] / "topologies").glob("*.yaml"))


class _Codec:
    """Stands in for a datapath: os-ken reads only these two attributes when serialising."""

    ofproto = ofp
    ofproto_parser = parser


def osken_bytes(msg: Any) -> bytes:
    msg.set_xid(0)
    msg.serialize()
    return bytes(msg.buf)


def topology_rules() -> list[Rule]:
    rules: list[Rule] = []
    for path in TOPOLOGIES:
        model = load_model(path)
        core = FakeFabric.from_model(model).core
        for switch in model.switches:
            rules += sorted(core.flows.rules(switch.dpid), key=lambda r: r.cookie)
    return rules


def _r(*actions: Action, **kw: Any) -> Rule:
    return Rule(app=7, table=kw.pop("table", 3), priority=kw.pop("priority", 100), actions=actions, **kw)


HAND_MADE = [
    _r(),
    _r(Output(OFPP_CONTROLLER, 128), meter=1, match=make_match(vlan_vid=OFPVID_PRESENT | 5)),
    _r(
        goto=4,
        idle_timeout=300,
        flags=FLAG_SEND_FLOW_REM,
        match=make_match(metadata=(5, 0xFFF), eth_src="02:00:00:00:00:01", in_port=3),
    ),
    _r(Output(2), match=make_match(eth_dst=("01:00:00:00:00:00", "01:00:00:00:00:00"))),
    _r(Output(OFPP_IN_PORT), match=make_match(eth_type=0x800, ipv4_src=("10.1.2.3", "255.255.0.0"))),
    _r(match=make_match(metadata=(0xFFFF, 0xF0F), vlan_vid=(0x1000, 0x1000), tcp_dst=(80, 0xFFF0))),
    _r(match=make_match(eth_type=0x86DD, ip_proto=58, icmpv6_type=135, ipv6_nd_target="fe80::1")),
    _r(match=make_match(eth_type=0x800, ct_state=ct_state(CT_TRK | CT_EST, CT_INV), ct_zone=9, ct_mark=3, reg0=7)),
    _r(write_metadata=(0x12, 0xFF), goto=2),
    _r(PushVlan(), SetField("vlan_vid", OFPVID_PRESENT | 100), Output(1), PopVlan(), Output(2)),
    _r(SetField("eth_src", "02:aa:bb:cc:dd:ee"), SetField("ipv4_src", "10.0.0.1"), DecTtl(), Group(5)),
    _r(SetField("arp_op", 2), SetField("arp_spa", "10.0.0.254"), SetField("icmpv4_type", 0)),
    _r(SetField("vlan_pcp", 3), SetField("reg0", 0xDEAD)),
    _r(Ct(zone=4), match=make_match(eth_type=0x800)),
    _r(Ct(zone=4, commit=True, recirc_table=5)),
    _r(Ct(zone=4, commit=True, mark=1)),
    _r(Ct(zone=4, recirc_table=2, nat=Nat())),
    _r(Ct(zone=4, commit=True, recirc_table=2, nat=Nat(dst="10.0.0.9"))),
    _r(Ct(zone=4, commit=True, recirc_table=2, nat=Nat(dst="10.0.0.9", port=8080), mark=2)),
    _r(Ct(zone=4, commit=True, nat=Nat(src="192.0.2.1"))),
    _r(*(Move(f, f) for f in ofwire.FIELD_BITS)),
    _r(CtClear(), Resubmit(6), Output(3)),
    _r(Clone((CtClear(), Ct(zone=1, recirc_table=7))), Clone(()), Output(1)),
    _r(Output(1), match=make_match(eth_type=0x800, ip_proto=6, tcp_src=1, ct_state=ct_state(CT_NEW))),
]


def test_every_topology_rule_packs_as_osken_serialises_it() -> None:
    rules = topology_rules()
    assert len(rules) > 1000
    kinds = {type(a).__name__ for r in rules for a in r.actions}
    assert {"Ct", "Move", "Resubmit", "Clone", "Output", "SetField"} <= kinds
    for rule in rules:
        assert ofwire.flow_add(rule) == osken_bytes(ofmsg.flow_add(_Codec(), rule)), rule


@pytest.mark.parametrize("rule", HAND_MADE, ids=range(len(HAND_MADE)))
def test_every_action_and_match_kind_packs_as_osken_serialises_it(rule: Rule) -> None:
    assert ofwire.flow_add(rule) == osken_bytes(ofmsg.flow_add(_Codec(), rule))


@pytest.mark.parametrize("cookie", [0, 1, 0x0700_0000_0000_002A, 0xFFFF_FFFF_FFFF_FFFF])
def test_delete_by_cookie_packs_as_osken_serialises_it(cookie: int) -> None:
    assert ofwire.flow_delete_cookie(cookie) == osken_bytes(ofmsg.flow_delete_cookie(_Codec(), cookie))


def test_unknown_field_is_named() -> None:
    with pytest.raises(KeyError, match="unknown OXM field 'eth_sorc'"):
        ofwire.flow_add(_r(match=make_match(eth_sorc="02:00:00:00:00:01")))


def test_cidr_value_without_mask_is_refused() -> None:
    with pytest.raises(ValueError, match="carries a mask"):
        ofwire.flow_add(_r(match=make_match(eth_type=0x800, ipv4_dst="10.0.0.0/8")))


def test_unknown_action_is_named() -> None:
    with pytest.raises(TypeError, match="unknown action"):
        ofwire.action_bytes("drop")  # type: ignore[arg-type]
