"""The simulated tables match IPv6 values and masks, VLAN priorities and conntrack as OVS does."""

from __future__ import annotations

from controller.flows.rules import (
    CT_EST,
    CT_INV,
    CT_NEW,
    CT_RPL,
    CT_TRK,
    Ct,
    Output,
    PopVlan,
    PushVlan,
    Rule,
    SetField,
    make_match,
)
from controller.tools.sim import SimConntrack, SimSwitch, Trace, field_matches, field_value

ICMPV6 = 58


def test_ipv6_addresses_match_exactly_and_under_a_mask() -> None:
    assert field_matches("2001:db8::11", "2001:DB8:0:0::11")
    assert not field_matches("2001:db8::11", "2001:db8::12")
    prefix = ("2001:db8:0:1::", "ffff:ffff:ffff:ffff::")
    assert field_matches(prefix, "2001:db8:0:1::99")
    assert not field_matches(prefix, "2001:db8:0:2::99")
    # a MAC and an IPv6 address with colons are not confused
    assert field_matches("02:00:00:00:00:01", "02:00:00:00:00:01")
    assert not field_matches("fe80::1", "fe80::2")


def test_nd_fields_are_present_as_ovs_reports_them() -> None:
    ns = {"eth_type": 0x86DD, "ip_proto": ICMPV6, "icmpv6_type": 135, "ipv6_nd_target": "2001:db8::1"}
    assert field_value(ns, "ipv6_nd_sll") == "00:00:00:00:00:00"
    assert field_value(ns, "ipv6_nd_tll") == "00:00:00:00:00:00"
    assert field_value({**ns, "icmpv6_type": 128}, "ipv6_nd_sll") is None
    assert field_value({**ns, "icmpv6_code": 1}, "ipv6_nd_tll") is None
    assert field_value({"eth_type": 0x0800}, "vlan_vid") == 0


def _out(rules: list[Rule], pkt: dict[str, object]) -> list[dict[str, object]]:
    return [p for _, p in SimSwitch(1, rules).process({"in_port": 1, **pkt}, Trace())]


def test_push_vlan_starts_with_priority_zero_and_pop_removes_it() -> None:
    tag = (PushVlan(), SetField("vlan_vid", 0x1000 | 100), Output(2))
    (pushed,) = _out([Rule(1, 0, 1, make_match(vlan_vid=0), tag)], {"vlan_vid": 0})
    assert pushed["vlan_vid"] == 0x1064 and pushed["vlan_pcp"] == 0
    retag = (PopVlan(),) + tag
    (retagged,) = _out([Rule(1, 0, 1, make_match(vlan_vid=0x1000), retag)], {"vlan_vid": 0x1000, "vlan_pcp": 5})
    assert retagged["vlan_vid"] == 0x1064 and retagged["vlan_pcp"] == 0
    (popped,) = _out([Rule(1, 0, 1, (), (PopVlan(), Output(2)))], {"vlan_vid": 0x1064, "vlan_pcp": 3})
    assert popped["vlan_vid"] == 0 and "vlan_pcp" not in popped


def test_ipv6_connections_are_tracked_and_neighbour_discovery_is_invalid() -> None:
    ct = SimConntrack()
    syn = {
        "eth_type": 0x86DD,
        "ipv6_src": "2001:db8::1",
        "ipv6_dst": "2001:db8::2",
        "ip_proto": 6,
        "tcp_src": 40000,
        "tcp_dst": 22,
    }
    pkt = dict(syn)
    ct.apply(Ct(zone=5, recirc_table=10), pkt)
    assert pkt["ct_state"] == CT_TRK | CT_NEW
    ct.apply(Ct(zone=5, commit=True), dict(syn))
    reply = {**syn, "ipv6_src": "2001:db8::2", "ipv6_dst": "2001:db8::1", "tcp_src": 22, "tcp_dst": 40000}
    ct.apply(Ct(zone=5, recirc_table=10), reply)
    assert reply["ct_state"] == CT_TRK | CT_EST | CT_RPL
    ns = {"eth_type": 0x86DD, "ipv6_src": "::", "ipv6_dst": "ff02::1:ff00:2", "ip_proto": ICMPV6, "icmpv6_type": 135}
    ct.apply(Ct(zone=5, recirc_table=10), ns)
    assert ns["ct_state"] == CT_TRK | CT_INV
    echo = {**ns, "ipv6_src": "2001:db8::1", "ipv6_dst": "2001:db8::2", "icmpv6_type": 128}
    ct.apply(Ct(zone=5, recirc_table=10), echo)
    assert echo["ct_state"] == CT_TRK | CT_NEW
