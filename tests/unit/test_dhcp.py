"""The DHCP server: the trap on simulated tables, and the answers the controller sends."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from apps.dhcp.app import LEASE_TIME, MTU
from apps.dhcp.messages import (
    ACK,
    DISCOVER,
    NAK,
    OFFER,
    OPT_DNS,
    OPT_LEASE_TIME,
    OPT_MTU,
    OPT_ROUTER,
    OPT_SERVER_ID,
    OPT_SUBNET_MASK,
    REQUEST,
    build_request,
    parse_reply,
    parse_request,
)
from controller.config.routing import gateway_mac
from controller.flows.pipeline import T_DHCP
from tests.unit.fabric_helpers import BCAST, Harness, model_from

NET = """
switches: {s1: {dpid: 1}}
networks:
  red: {vlan: 100, gateway: 10.0.1.1/24, dhcp: true, dns: [10.0.1.53, 9.9.9.9]}
  blue: {vlan: 200, gateway: 10.0.2.1/24}
vms:
  r1: {switch: s1, port: 1, network: red, ip: 10.0.1.11/24, mac: "02:00:00:00:01:11"}
  r2: {switch: s1, port: 2, network: red, mac: "02:00:00:00:01:12"}
  r3: {switch: s1, port: 3, network: red}
  b1: {switch: s1, port: 4, network: blue, ip: 10.0.2.11/24, mac: "02:00:00:00:02:11"}
"""
R1 = "02:00:00:00:01:11"
GW = IPv4Address("10.0.1.1")


def harness() -> Harness:
    return Harness(model_from(NET), {1: [1, 2, 3, 4]})


def tagged(frame: bytes, vlan: int) -> bytes:
    """``frame`` as the trap copies it: with the network's 802.1Q tag."""
    return frame[:12] + struct.pack("!HH", 0x8100, vlan) + frame[12:]


def dhcp_fields(mac: str) -> dict[str, object]:
    return dict(
        learn=False, ipv4_src="0.0.0.0", ipv4_dst="255.255.255.255", ip_proto=17, udp_src=68, udp_dst=67, nw_ttl=64
    )


def test_requests_are_trapped_metered_and_not_flooded() -> None:
    h = harness()
    t = h.send(1, 1, R1, BCAST, **dhcp_fields(R1))
    assert len(t.to_controller) == 1 and not t.outputs
    rule = next(r for _, r in t.matched if r.table == T_DHCP and r.actions)
    assert rule.meter is not None


def test_no_trap_where_dhcp_is_off() -> None:
    h = harness()
    t = h.send(1, 4, "02:00:00:00:02:11", BCAST, **dhcp_fields("02:00:00:00:02:11"))
    assert not any(r.table == T_DHCP and r.actions for _, r in t.matched)  # blue has no dhcp: not trapped


def answer(h: Harness, port: int, frame: bytes) -> list[bytes]:
    effects = h.packet_in(1, T_DHCP, port, tagged(frame, 100))
    return [data for d, p, data in effects.frames if (d, p) == (1, port)]


def test_discover_gets_an_offer_with_address_router_dns_lease_and_mtu() -> None:
    h = harness()
    (frame,) = answer(h, 1, build_request(DISCOVER, R1, 0x1234))
    kind, client, yiaddr, opts = parse_reply(frame) or (0, "", IPv4Address(0), {})
    assert (kind, client, yiaddr) == (OFFER, R1, IPv4Address("10.0.1.11"))
    assert opts[OPT_SERVER_ID] == GW.packed and opts[OPT_ROUTER] == GW.packed
    assert opts[OPT_SUBNET_MASK] == IPv4Address("255.255.255.0").packed
    assert opts[OPT_DNS] == IPv4Address("10.0.1.53").packed + IPv4Address("9.9.9.9").packed
    assert struct.unpack("!I", opts[OPT_LEASE_TIME]) == (LEASE_TIME,)
    assert struct.unpack("!H", opts[OPT_MTU]) == (MTU,)
    assert frame[6:12] == bytes.fromhex(gateway_mac(100).replace(":", ""))  # from the gateway
    assert frame[0:6] == bytes.fromhex(R1.replace(":", ""))


def test_request_for_its_address_is_acked_and_counted() -> None:
    h = harness()
    (frame,) = answer(h, 1, build_request(REQUEST, R1, 7, IPv4Address("10.0.1.11"), GW))
    assert (parse_reply(frame) or (0,))[0] == ACK
    assert h.core.metrics.dhcp_leases.labels(network="red", message="ack")._value.get() == 1


def test_request_for_another_address_is_naked() -> None:
    h = harness()
    (frame,) = answer(h, 1, build_request(REQUEST, R1, 7, IPv4Address("10.0.1.99"), GW))
    assert (parse_reply(frame) or (0,))[0] == NAK


def test_request_selecting_another_server_is_ignored() -> None:
    h = harness()
    assert not answer(h, 1, build_request(REQUEST, R1, 7, IPv4Address("10.0.1.11"), IPv4Address("10.0.1.2")))


@pytest.mark.parametrize(
    ("port", "mac"),
    [
        (1, "02:00:00:00:01:99"),  # an undeclared MAC on r1's port
        (2, "02:00:00:00:01:12"),  # r2: a mac but no ip
        (3, "02:00:00:00:01:13"),  # r3: nothing declared
        (2, R1),  # r1's MAC from another port
    ],
)
def test_nothing_for_undeclared_clients(port: int, mac: str) -> None:
    assert not answer(harness(), port, build_request(DISCOVER, mac, 1))


def test_parse_request_rejects_garbage_without_raising() -> None:
    frame = build_request(DISCOVER, R1, 1)
    for cut in range(0, len(frame), 7):
        parse_request(frame[:cut])
    assert parse_request(b"\xff" * 400) is None
    request = parse_request(tagged(frame, 100))
    assert request is not None and request.kind == DISCOVER and request.vlan == 100 and request.client_mac == R1


def test_the_mtu_offered_leaves_room_for_the_overlay() -> None:
    from apps.dhcp.app import MTU, lease_of
    from controller.config.model import Overlay

    model = model_from(NET)
    net = next(n for n in model.networks if n.dhcp)
    vm = next(v for v in model.vms if v.network == net.name and v.ip is not None and v.mac is not None)
    assert lease_of(net, vm).mtu == MTU == 1500
    assert lease_of(net, vm, Overlay("vxlan", 1500)).mtu == 1446
    assert lease_of(net, vm, Overlay("geneve", 1600)).mtu == 1546
