"""``networks.X.gateway``, ``dhcp``, ``dns`` and ``routers``: what is accepted, and every error by path."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest

from controller.config import loads_model
from controller.config.model import Router, StaticRoute
from tests.unit.config_helpers import data_of, errors, set_path

BASE = """
switches: {s1: {dpid: 1}}
networks:
  red: {vlan: 100, gateway: 10.0.1.1/24, dhcp: true, dns: [10.0.1.53]}
  blue: {vlan: 200, gateway: 10.0.2.1/24}
  green: {vlan: 300, gateway: 10.0.1.1/24}
  plain: {vlan: 400}
vms:
  r1: {switch: s1, port: 1, network: red, ip: 10.0.1.11/24, mac: "02:00:00:00:01:11"}
  b1: {switch: s1, port: 2, network: blue, ip: 10.0.2.11}
  g1: {switch: s1, port: 3, network: green, ip: 10.0.1.11/24}
routers:
  r: {networks: [red, blue], routes: [{prefix: 0.0.0.0/0, next_hop: 10.0.2.11}]}
  s: {networks: [green]}
"""


def data() -> dict[str, Any]:
    return data_of(BASE)


def test_base_is_accepted_with_overlapping_subnets_across_routers() -> None:
    model = loads_model(BASE)
    red = model.network_by_name["red"]
    assert red.gateway == IPv4Interface("10.0.1.1/24") and red.dhcp and red.dns == (IPv4Address("10.0.1.53"),)
    assert model.network_by_name["plain"].gateway is None
    assert model.routers == (
        Router("r", ("blue", "red"), (StaticRoute(IPv4Network("0.0.0.0/0"), IPv4Address("10.0.2.11")),)),
        Router("s", ("green",)),
    )
    assert model.router_of["red"].name == "r" and "plain" not in model.router_of


def test_a_file_without_routing_keys_is_as_before() -> None:
    model = loads_model("switches: {s1: {dpid: 1}}\nnetworks: {a: {vlan: 1}}\n")
    assert model.routers == () and model.networks[0].gateway is None and not model.networks[0].dhcp


CASES: list[tuple[str, Any, str]] = [
    ("networks/red/gateway", "10.0.1.1", "networks.red.gateway: expected the gateway address with its subnet's prefix"),
    ("networks/red/gateway", "10.0.1.0/24", "networks.red.gateway: 10.0.1.0/24 is the network address of 10.0.1.0/24"),
    ("networks/red/gateway", "10.0.1.1/32", "networks.red.gateway: 10.0.1.1/32: a gateway's prefix"),
    ("networks/red/gateway", "224.0.0.1/24", "networks.red.gateway: 224.0.0.1 is a multicast address"),
    ("networks/red/dhcp", "yes", "networks.red.dhcp:"),
    ("networks/plain/dhcp", True, "networks.plain.dhcp: needs a gateway"),
    ("networks/blue/dns", ["10.0.0.53"], "networks.blue.dns: is offered by DHCP only"),
    ("networks/red/dns", ["10.0.1.53", "10.0.1.53"], "networks.red.dns[1]: 10.0.1.53 is listed twice"),
    ("networks/red/dns", ["nope"], "networks.red.dns[0]: invalid IPv4 address 'nope'"),
    ("vms/r1/ip", "10.0.9.11/24", "vms.r1.ip: 10.0.9.11 is outside the subnet 10.0.1.0/24 of network 'red'"),
    ("vms/r1/ip", "10.0.1.1/24", "vms.r1.ip: 10.0.1.1 is the gateway of network 'red'"),
    ("vms/r1/ip", "10.0.1.11/16", "vms.r1.ip: 10.0.1.11/16 does not match the subnet 10.0.1.0/24 of network 'red'"),
    ("vms/r1/ip", "10.0.1.255", "vms.r1.ip: 10.0.1.255 is the broadcast address of the subnet 10.0.1.0/24"),
    ("vms/r1/mac", "0a:56:4d:4e:00:64", "vms.r1.mac: 0a:56:4d:4e:00:64: 0a:56:4d:4e:xx:xx is reserved"),
    ("routers/r/networks", ["red", "nowhere"], "routers.r.networks[1]: unknown network 'nowhere'"),
    ("routers/r/networks", ["red", "plain"], "routers.r.networks[1]: network 'plain' has no gateway"),
    ("routers/r/networks", [], "routers.r.networks: must name at least one network"),
    (
        "routers/r/networks",
        ["red", "green"],
        "routers.r.networks[1]: subnet 10.0.1.0/24 of network 'green' overlaps 10.0.1.0/24 of network 'red'",
    ),
    ("routers/s/networks", ["green", "blue"], "routers.s.networks[1]: network 'blue' is already on router 'r'"),
    (
        "routers/r/routes",
        [{"prefix": "192.168.0.0/16", "next_hop": "10.0.1.99"}],
        "routers.r.routes[0].next_hop: 10.0.1.99 is not the ip of a VM in this router's networks",
    ),
    (
        "routers/r/routes",
        [{"prefix": "192.168.0.0/16", "next_hop": "10.0.1.11"}] * 2,
        "routers.r.routes[1].prefix: 192.168.0.0/16 is routed twice",
    ),
    (
        "routers/r/routes",
        [{"prefix": "10.0.2.128/25", "next_hop": "10.0.1.11"}],
        "routers.r.routes[0].prefix: 10.0.2.128/25 is inside the subnet 10.0.2.0/24 of network 'blue'",
    ),
    (
        "routers/r/routes",
        [{"prefix": "192.168.0.1/16", "next_hop": "10.0.1.11"}],
        "routers.r.routes[0].prefix: 192.168.0.1/16 has host bits set",
    ),
    (
        "routers/s/routes",
        [{"prefix": "192.168.0.0/16", "next_hop": "10.0.2.11"}],
        "routers.s.routes[0].next_hop: 10.0.2.11 is not the ip of a VM in this router's networks ('green')",
    ),
    ("routers/r/uplink", "wan", "routers.r.uplink: unknown uplink 'wan'"),
    ("routers/r/colour", "red", "routers.r: unknown key 'colour'"),
]


@pytest.mark.parametrize(("path", "value", "message"), CASES, ids=[f"{p}={v!r}"[:60] for p, v, _ in CASES])
def test_errors_name_their_path(path: str, value: Any, message: str) -> None:
    d = data()
    set_path(d, path, value)
    found = errors(d)
    assert any(e.startswith(message) for e in found), found


def test_a_vip_may_not_be_the_gateway() -> None:
    d = data()
    d["load_balancers"] = {
        "web": {"vip": "10.0.1.1", "network": "red", "protocol": "tcp", "port": 80, "backends": ["r1"]}
    }
    assert "load_balancers.web.vip: 10.0.1.1 is the gateway of network 'red'" in errors(d)
