"""The network file's IPv6 keys: ``vms.X.ipv6`` and the ACL matches ``ipv6_src``, ``ipv6_dst``, ``icmpv6_type``."""

from __future__ import annotations

from ipaddress import IPv6Interface, IPv6Network
from typing import Any

import pytest

from controller.config import loads_model, parse_model
from controller.config.model import AclMatch
from tests.unit.test_config import edited, errors_of

ETH_IPV4, ETH_IPV6, TCP, UDP, ICMPV6 = 0x0800, 0x86DD, 6, 17, 58


def test_vm_ipv6_with_prefix_bare_and_unique_local() -> None:
    model = parse_model(
        edited(
            ("vms/web1/ipv6", "2001:db8:0:1::11/64"),
            ("vms/web2/ipv6", "2001:DB8:0:1::12"),
            ("vms/db1/ipv6", "fd00:1::5/64"),
        )
    )
    vms = model.vm_by_name
    assert vms["web1"].ipv6 == IPv6Interface("2001:db8:0:1::11/64")
    assert vms["web2"].ipv6 == IPv6Interface("2001:db8:0:1::12/128")
    assert vms["db1"].ipv6 == IPv6Interface("fd00:1::5/64")
    assert vms["bare"].ipv6 is None


def test_same_ipv6_in_two_networks_is_allowed() -> None:
    model = parse_model(edited(("vms/web1/ipv6", "2001:db8::11/64"), ("vms/db1/ipv6", "2001:db8::11/64")))
    assert model.vm_by_name["web1"].ipv6 == model.vm_by_name["db1"].ipv6


def test_unquoted_ipv6_in_yaml_is_a_string() -> None:
    text = """
switches: {s1: {dpid: 1}}
networks: {n: {vlan: 10}}
vms:
  a: {switch: s1, port: 1, network: n, mac: "02:00:00:00:00:01", ip: 10.0.0.1/24, ipv6: 2001:db8:0:1::11/64}
acls:
  v6:
    - {match: {ipv6_src: 2001:db8::/32, ip_proto: tcp, tcp_dst: 80}, action: allow}
    - {match: {ipv6_dst: fd00::1}, action: deny}
"""
    model = loads_model(text)
    assert model.vms[0].ipv6 == IPv6Interface("2001:db8:0:1::11/64")
    first, second = (r.match for r in model.acls[0].rules)
    assert first == AclMatch(eth_type=ETH_IPV6, ip_proto=TCP, tcp_dst=80, ipv6_src=IPv6Network("2001:db8::/32"))
    assert second == AclMatch(eth_type=ETH_IPV6, ipv6_dst=IPv6Network("fd00::1/128"))


VM_MISTAKES: list[tuple[str, Any, str]] = [
    ("garbage", "2001:db8::zz/64", "vms.web1.ipv6: invalid IPv6 address '2001:db8::zz/64'"),
    ("ipv4", "10.0.0.1/24", "vms.web1.ipv6: invalid IPv6 address '10.0.0.1/24'"),
    ("prefix-too-long", "2001:db8::11/129", "vms.web1.ipv6: invalid IPv6 address '2001:db8::11/129'"),
    ("zone", "2001:db8::11%eth0", "vms.web1.ipv6: invalid IPv6 address '2001:db8::11%eth0'"),
    (
        "sexagesimal",
        2895057742028,
        "vms.web1.ipv6: expected an IPv6 address like '2001:db8::11/64', got integer 2895057742028 "
        "(quote IPv6 addresses in YAML)",
    ),
    ("list", ["2001:db8::11/64"], "vms.web1.ipv6: expected an IPv6 address like '2001:db8::11/64', got a list"),
    (
        "link-local",
        "fe80::ff:fe00:101/64",
        "vms.web1.ipv6: fe80::ff:fe00:101/64 is link-local (a VM's link-local address is derived from its mac)",
    ),
    ("multicast", "ff02::1", "vms.web1.ipv6: ff02::1 is a multicast address"),
    ("unspecified", "::/64", "vms.web1.ipv6: ::/64 is not an address a VM can hold"),
    ("loopback", "::1", "vms.web1.ipv6: ::1 is not an address a VM can hold"),
    (
        "v4-mapped",
        "::ffff:10.0.0.1",
        "vms.web1.ipv6: ::ffff:10.0.0.1 is an IPv4-mapped address (declare IPv4 addresses as ip)",
    ),
    (
        "subnet-router-anycast",
        "2001:db8:0:1::/64",
        "vms.web1.ipv6: 2001:db8:0:1::/64 is the subnet-router anycast address of 2001:db8:0:1::/64",
    ),
]


@pytest.mark.parametrize("value, message", [(v, m) for _, v, m in VM_MISTAKES], ids=[n for n, _, _ in VM_MISTAKES])
def test_bad_vm_ipv6_is_named_by_path(value: Any, message: str) -> None:
    assert errors_of(edited(("vms/web1/ipv6", value))) == [message]


def test_ipv6_is_unique_per_network_like_ip() -> None:
    data = edited(
        ("vms/web1/ipv6", "2001:db8::11/64"),
        ("vms/web2/ipv6", "2001:db8::11/64"),
        ("vms/bare/ipv6", "2001:db8:0:0::11/128"),
    )
    assert errors_of(data) == [
        "vms.web2.ipv6: 2001:db8::11 is already used by VM 'web1' in network 'tenant-a'",
        "vms.bare.ipv6: 2001:db8::11 is already used by VM 'web1' in network 'tenant-a'",
    ]


def acl_match(match: dict[str, Any]) -> AclMatch:
    return parse_model(edited(("acls/web-in/0/match", match))).acl_by_name["web-in"].rules[0].match


def test_acl_ipv6_matches_imply_eth_type_ipv6() -> None:
    assert acl_match({"eth_type": "ipv6"}) == AclMatch(eth_type=ETH_IPV6)
    assert acl_match({"ipv6_dst": "2001:db8:0:1::/64", "ip_proto": "udp", "udp_dst": 53}) == AclMatch(
        eth_type=ETH_IPV6, ip_proto=UDP, udp_dst=53, ipv6_dst=IPv6Network("2001:db8:0:1::/64")
    )
    assert acl_match({"ip_proto": "icmpv6", "icmpv6_type": 128}) == AclMatch(
        eth_type=ETH_IPV6, ip_proto=ICMPV6, icmpv6_type=128
    )
    assert acl_match({"ip_proto": 58}) == AclMatch(eth_type=ETH_IPV6, ip_proto=ICMPV6)
    assert acl_match({"eth_type": "ipv6", "ip_proto": "tcp", "tcp_src": 22}) == AclMatch(
        eth_type=ETH_IPV6, ip_proto=TCP, tcp_src=22
    )
    assert acl_match({"ipv6_src": "2001:db8::1"}) == AclMatch(
        eth_type=ETH_IPV6, ipv6_src=IPv6Network("2001:db8::1/128")
    )
    # ip_proto alone still means IPv4 (the contract), and so does icmp
    assert acl_match({"ip_proto": "tcp", "tcp_dst": 80}) == AclMatch(eth_type=ETH_IPV4, ip_proto=TCP, tcp_dst=80)
    assert acl_match({"ip_proto": "icmp"}) == AclMatch(eth_type=ETH_IPV4, ip_proto=1)


ACL_MISTAKES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "host-bits",
        {"ipv6_src": "2001:db8::1/64"},
        ["acls.web-in[0].match.ipv6_src: 2001:db8::1/64 has host bits set (did you mean 2001:db8::/64?)"],
    ),
    (
        "garbage",
        {"ipv6_dst": "2001:db8::/200"},
        ["acls.web-in[0].match.ipv6_dst: invalid IPv6 address or CIDR '2001:db8::/200'"],
    ),
    (
        "ipv4-as-ipv6",
        {"ipv6_dst": "10.0.0.0/8"},
        ["acls.web-in[0].match.ipv6_dst: invalid IPv6 address or CIDR '10.0.0.0/8'"],
    ),
    (
        "not-a-string",
        {"ipv6_dst": 7},
        [
            "acls.web-in[0].match.ipv6_dst: expected an IPv6 address or CIDR, got integer 7 "
            "(quote IPv6 addresses in YAML)"
        ],
    ),
    (
        "mixed-families",
        {"ipv4_src": "10.0.0.0/8", "ipv6_dst": "2001:db8::/32"},
        ["acls.web-in[0].match: mixes IPv4 (ipv4_src) and IPv6 (ipv6_dst) fields"],
    ),
    (
        "icmp-with-ipv6-address",
        {"ip_proto": "icmp", "ipv6_src": "2001:db8::/32"},
        ["acls.web-in[0].match: mixes IPv4 (ip_proto: icmp) and IPv6 (ipv6_src) fields"],
    ),
    (
        "icmpv6-with-ipv4-address",
        {"ip_proto": "icmpv6", "ipv4_dst": "10.0.0.1"},
        ["acls.web-in[0].match: mixes IPv4 (ipv4_dst) and IPv6 (ip_proto: icmpv6) fields"],
    ),
    (
        "ipv4-eth-type-with-ipv6-field",
        {"eth_type": "ipv4", "ipv6_src": "2001:db8::/32"},
        ["acls.web-in[0].match.eth_type: must be ipv6 when ipv6_src is given, got string 'ipv4'"],
    ),
    (
        "arp-eth-type-with-icmpv6",
        {"eth_type": "arp", "ip_proto": "icmpv6"},
        ["acls.web-in[0].match.eth_type: must be ipv6 when ip_proto: icmpv6 is given, got string 'arp'"],
    ),
    (
        "ipv6-eth-type-with-icmp",
        {"eth_type": "ipv6", "ip_proto": "icmp"},
        ["acls.web-in[0].match.eth_type: must be ipv4 when ip_proto: icmp is given, got string 'ipv6'"],
    ),
    (
        "arp-eth-type-with-ip-proto",
        {"eth_type": "arp", "ip_proto": "tcp"},
        ["acls.web-in[0].match.eth_type: must be ipv4 or ipv6 when ip_proto is given, got string 'arp'"],
    ),
    ("icmpv6-type-without-proto", {"icmpv6_type": 135}, ["acls.web-in[0].match.icmpv6_type: needs ip_proto: icmpv6"]),
    (
        "icmpv6-type-with-icmp",
        {"ip_proto": "icmp", "icmpv6_type": 135},
        ["acls.web-in[0].match.icmpv6_type: needs ip_proto: icmpv6"],
    ),
    (
        "icmp-type-with-icmpv6",
        {"ip_proto": "icmpv6", "icmp_type": 8},
        ["acls.web-in[0].match.icmp_type: needs ip_proto: icmp"],
    ),
    (
        "icmpv6-type-out-of-range",
        {"ip_proto": "icmpv6", "icmpv6_type": 256},
        ["acls.web-in[0].match.icmpv6_type: must be between 0 and 255, got 256"],
    ),
]


@pytest.mark.parametrize("match, messages", [(m, e) for _, m, e in ACL_MISTAKES], ids=[n for n, _, _ in ACL_MISTAKES])
def test_bad_ipv6_acl_match_is_named_by_path(match: dict[str, Any], messages: list[str]) -> None:
    assert errors_of(edited(("acls/web-in/0/match", match))) == messages
