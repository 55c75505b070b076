"""The pre-serialised bundle path sends the same messages os-ken would build."""

from __future__ import annotations

import struct
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofmsg
from controller.flows.rules import Output, PopVlan, Rule, make_match


class FakeDatapath:
    ofproto = ofp
    ofproto_parser = parser

    def __init__(self) -> None:
        self.xid = 0

    def set_xid(self, msg: Any) -> int:
        self.xid = (self.xid + 1) & ofp.MAX_XID
        msg.set_xid(self.xid)
        return self.xid


def test_fast_bundle_bytes_parse_back_to_the_same_flow_mods() -> None:
    rule = Rule(4, 4, 10, make_match(vlan_vid=0x1001, eth_dst="02:00:00:00:00:01"), (PopVlan(), Output(1)))
    bufs = ofmsg.bundle_bytes(FakeDatapath(), 7, [0x123], [rule])
    assert len(bufs) == 4
    for buf in bufs[1:3]:
        version, msg_type, length, xid = _header(buf)
        assert (version, msg_type, length) == (ofp.OFP_VERSION, ofp.OFPT_EXPERIMENTER, len(buf))
        experimenter, exp_type, bundle_id = struct.unpack_from("!III", buf, 8)
        assert (exp_type, bundle_id) == (ofp.ONF_ET_BUNDLE_ADD_MESSAGE, 7)
        assert _header(buf[24:])[3] == xid  # inner xid equals the bundle-add xid (OVS requires it)
    delete, add = (parser.msg_parser(FakeDatapath(), *_header(b[24:]), b[24:]) for b in bufs[1:3])
    assert delete.command == ofp.OFPFC_DELETE and delete.cookie == 0x123 and delete.cookie_mask == 2**64 - 1
    assert add.command == ofp.OFPFC_ADD and add.cookie == rule.cookie and add.priority == 10
    assert dict(add.match.items()) == {"vlan_vid": 0x1001, "eth_dst": "02:00:00:00:00:01"}
    kinds = [struct.unpack_from("!I", b, 20)[0] >> 16 for b in (bufs[0], bufs[3])]
    assert kinds == [ofp.ONF_BCT_OPEN_REQUEST, ofp.ONF_BCT_COMMIT_REQUEST]


def _header(buf: bytes) -> tuple[int, int, int, int]:
    version, msg_type, length, xid = struct.unpack_from("!BBHI", buf)
    return version, msg_type, length, xid


def test_new_host_goes_as_plain_flow_mods_and_a_replacement_as_one_bundle() -> None:
    rules = [Rule(4, 4, 10, make_match(eth_dst=f"02:00:00:00:00:0{i}"), (Output(i),)) for i in (1, 2)]
    small = ofmsg.batch_bytes(FakeDatapath(), 1, [], rules)
    first = _header(small)
    assert first[1] == ofp.OFPT_FLOW_MOD and _header(small[first[2] :])[1] == ofp.OFPT_FLOW_MOD
    assert len(small) == first[2] + _header(small[first[2] :])[2]
    replacement = ofmsg.batch_bytes(FakeDatapath(), 1, [0x5], rules)
    assert _header(replacement)[1] == ofp.OFPT_EXPERIMENTER  # bundle open first


def test_nat_inside_ct_is_padded_so_messages_stay_8_byte_aligned() -> None:
    from controller.flows.rules import Ct, GroupEntry, Nat

    class Codec:
        ofproto = ofmsg.ofp
        ofproto_parser = ofmsg.parser

    group = GroupEntry(
        3, 7, "select", ((1, 0xFFFFFFFF, (Ct(5, commit=True, recirc_table=3, mark=1, nat=Nat("10.0.0.2", 80)),)),)
    )
    for msg in ofmsg.group_set(Codec(), group):
        msg.set_xid(1)
        msg.serialize()
        assert len(msg.buf) % 8 == 0
    rule = Rule(2, 1, 10, (), (Ct(5, commit=True, nat=Nat("10.0.0.2")),))
    assert len(ofmsg.flow_add_bytes(rule)) % 8 == 0


def test_ipv6_neighbour_discovery_and_priority_tag_matches_serialise() -> None:
    """IPv6 prefixes go as (address, mask); ND fields and a priority tag (VID 0 present) keep their values."""
    from controller.flows.rules import PushVlan, SetField

    match = make_match(
        in_port=1,
        vlan_vid=0x1000,
        eth_type=0x86DD,
        ip_proto=58,
        icmpv6_type=136,
        ipv6_src=("2001:db8:0:1::", "ffff:ffff:ffff:ffff::"),
        ipv6_dst="ff02::1",
        ipv6_nd_target="fe80::ff:fe00:101",
        ipv6_nd_tll="02:00:00:00:01:01",
    )
    rule = Rule(1, 0, 120, match, (PopVlan(), PushVlan(), SetField("vlan_vid", 0x1064)), goto=10)
    buf = ofmsg.flow_add_bytes(rule)
    add = parser.msg_parser(FakeDatapath(), *_header(buf), buf)
    assert dict(add.match.items()) == dict(match)
