"""``uplinks``, ``routers.X.uplink`` and ``floating_ips``: what is accepted, and every error by its path."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest

from controller.config import ConfigError, loads_model
from controller.config.model import FloatingIp, Uplink
from controller.config.uplinks import uplink_mac
from tests.unit.config_helpers import data_of, errors, set_path

BASE = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks:
  red: {vlan: 100, gateway: 10.0.1.1/24}
  blue: {vlan: 200, gateway: 10.0.2.1/24}
  lone: {vlan: 300, gateway: 10.0.3.1/24}
vms:
  r1: {switch: s1, port: 1, network: red, ip: 10.0.1.11/24}
  r2: {switch: s1, port: 2, network: red, ip: 10.0.1.12/24}
  b1: {switch: s2, port: 3, network: blue, ip: 10.0.2.11/24}
  b2: {switch: s2, port: 5, network: blue}
  l1: {switch: s2, port: 4, network: lone, ip: 10.0.3.11/24}
mirrors:
  tap: {switch: s2, port: 20, vms: [b1], direction: out}
routers:
  r: {networks: [red, blue], uplink: wan}
  s: {networks: [lone]}
uplinks:
  wan: {switch: s1, port: 9, ip: 192.0.2.10/24, gateway: 192.0.2.1}
  spare: {switch: s2, port: 9, ip: 203.0.113.10/24, gateway: 203.0.113.1}
floating_ips:
  192.0.2.50: r1
  192.0.2.51: b1
"""


def data() -> dict[str, Any]:
    return data_of(BASE)


def test_base_is_accepted() -> None:
    model = loads_model(BASE)
    assert model.uplink_by_name["wan"] == Uplink(
        "wan", "s1", 9, IPv4Interface("192.0.2.10/24"), IPv4Address("192.0.2.1")
    )
    assert model.routers[0].uplink == "wan" and model.routers[1].uplink is None
    assert model.floating_ips == (
        FloatingIp(IPv4Address("192.0.2.50"), "r1"),
        FloatingIp(IPv4Address("192.0.2.51"), "b1"),
    )
    assert model.uplink_of["blue"].name == "wan" and "lone" not in model.uplink_of
    assert uplink_mac("wan") != uplink_mac("spare") and uplink_mac("wan").startswith("0a:56:4d:4e:1")


CASES: list[tuple[str, Any, str]] = [
    ("floating_ips/192.0.2.10", "r2", "floating_ips.192.0.2.10: 192.0.2.10 is the address of uplink 'wan'"),
    ("floating_ips/203.0.113.10", "r2", "floating_ips.203.0.113.10: 203.0.113.10 is the address of uplink 'spare'"),
    ("floating_ips/192.0.2.1", "r2", "floating_ips.192.0.2.1: 192.0.2.1 is the gateway of uplink 'wan'"),
    ("floating_ips/192.0.2.60", "r1", "floating_ips.192.0.2.60: VM 'r1' already has floating IP 192.0.2.50"),
    ("floating_ips/192.0.2.60", "l1", "floating_ips.192.0.2.60: VM 'l1' is in network 'lone', which is on no router"),
    ("floating_ips/192.0.2.60", "b2", "floating_ips.192.0.2.60: VM 'b2' declares no ip"),
    ("floating_ips/192.0.2.60", "zz", "floating_ips.192.0.2.60: unknown VM 'zz'"),
    (
        "floating_ips/198.51.100.5",
        "r2",
        "floating_ips.198.51.100.5: 198.51.100.5 is not a host address of 192.0.2.0/24",
    ),
    ("floating_ips/not-an-ip", "r2", "floating_ips.not-an-ip: "),
    ("uplinks/wan/port", 1, "uplinks.wan.port: port 1 on switch 's1' is already used by VM 'r1'"),
    ("uplinks/wan/port", 10, "uplinks.wan.port: port 10 on switch 's1' is already used by"),
    ("uplinks/spare/port", 20, "uplinks.spare.port: port 20 on switch 's2' is already used by mirror 'tap'"),
    ("uplinks/spare/switch", "s1", "uplinks.spare.port: port 9 on switch 's1' is already used by uplink 'wan'"),
    ("uplinks/wan/ip", "192.0.2.10", "uplinks.wan.ip: expected the address with its subnet's prefix"),
    ("uplinks/wan/ip", "192.0.2.10/31", "uplinks.wan.ip: 192.0.2.10/31: the subnet must hold the upstream gateway"),
    ("uplinks/wan/ip", "192.0.2.0/24", "uplinks.wan.ip: 192.0.2.0/24 is the network address"),
    ("uplinks/wan/gateway", "192.0.2.10", "uplinks.wan.gateway: 192.0.2.10 is the uplink's own address"),
    ("uplinks/wan/gateway", "192.0.3.1", "uplinks.wan.gateway: 192.0.3.1 is outside the uplink's subnet"),
    ("uplinks/wan/switch", "s9", "uplinks.wan.switch: unknown switch 's9'"),
    ("uplinks/wan/vlan", 5, "uplinks.wan: unknown key 'vlan'"),
    ("routers/s/uplink", "wan", "routers.s.uplink: uplink 'wan' already serves router 'r'"),
    ("routers/r/uplink", "nope", "routers.r.uplink: unknown uplink 'nope'"),
    (
        "uplinks/wan",
        {"switch": "s1", "port": 9, "ip": "10.0.0.10/16", "gateway": "10.0.0.1"},
        "routers.r.uplink: the uplink's subnet 10.0.0.0/16 overlaps 10.0.1.0/24 of network 'red'",
    ),
    (
        "routers/r/routes",
        [{"prefix": "0.0.0.0/0", "next_hop": "10.0.2.11"}],
        "routers.r.routes: a static route to 0.0.0.0/0 and an uplink both make the default route",
    ),
]


@pytest.mark.parametrize(("path", "value", "message"), CASES, ids=[f"{p}={v!r}"[:60] for p, v, _ in CASES])
def test_errors_name_their_path(path: str, value: Any, message: str) -> None:
    d = data()
    set_path(d, path, value)
    found = errors(d)
    assert any(e.startswith(message) for e in found), found


def test_a_floating_ip_listed_twice_is_a_duplicate_key() -> None:
    text = BASE.replace("  192.0.2.51: b1\n", "  192.0.2.51: b1\n  192.0.2.50: r2\n")
    with pytest.raises(ConfigError) as info:
        loads_model(text)
    assert "duplicate key '192.0.2.50'" in str(info.value)


def test_floating_ips_without_an_uplinked_router_are_rejected() -> None:
    d = data()
    del d["routers"]["r"]["uplink"]
    found = errors(d)
    assert any(
        e.startswith("floating_ips.192.0.2.50: VM 'r1' is in network 'red', which is on no router") for e in found
    )
