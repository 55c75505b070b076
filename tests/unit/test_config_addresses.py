"""Addresses are per network: VIPs, VM ips and ``ip:`` backends conflict only within one network.

The config cases use test_config's ``base()``: tenant-a has web1 10.0.0.1/24,
web2 10.0.0.2/24 and bare (no ip); tenant-b has db1 10.0.1.1/24; balancer
``web`` has VIP 10.0.0.100 in tenant-a, tcp/80, backends web1 and web2. The
last tests check on simulated tables that the load balancer app does what
the accepted files ask.
"""

from __future__ import annotations

from typing import Any

import pytest

from apps.lb.probe import vip_mac
from controller.config import parse_model
from tests.unit.fabric_helpers import Harness, model_from
from tests.unit.test_config import DELETE, edited, errors_of


def balancer(
    vip: str, network: str = "tenant-a", port: int = 80, protocol: str = "tcp", backends: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "vip": vip,
        "network": network,
        "protocol": protocol,
        "port": port,
        "backends": ["web1", "web2"] if backends is None else backends,
    }


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("vip-is-a-vm-ip-in-another-network", edited(("vms/db1/ip", "10.0.0.100/24"))),
    (
        "vip-is-a-vm-ip-in-another-network-on-another-balancer",
        edited(
            ("vms/db1/ip", "10.0.0.100/24"), ("load_balancers/db", balancer("10.0.0.1", "tenant-b", backends=["db1"]))
        ),
    ),
    (
        "same-vip-in-two-networks",
        edited(
            ("vms/db1/ip", "10.0.0.5/24"), ("load_balancers/db", balancer("10.0.0.100", "tenant-b", backends=["db1"]))
        ),
    ),
    ("same-vip-other-port", edited(("load_balancers/tls", balancer("10.0.0.100", port=443)))),
    ("same-vip-other-protocol", edited(("load_balancers/dns", balancer("10.0.0.100", protocol="udp")))),
    ("same-vm-ip-in-two-networks", edited(("vms/db1/ip", "10.0.0.1/24"))),
    (
        "ip-backend-is-a-vip-of-another-network",
        edited(("load_balancers/db", balancer("10.0.1.100", "tenant-b", backends=["10.0.0.100", "db1"]))),
    ),
    ("ip-backend-is-a-vm-of-the-network", edited(("load_balancers/web/backends", ["10.0.0.1", {"ip": "10.0.0.2"}]))),
    ("ip-backend-outside-the-subnets", edited(("load_balancers/web/backends", ["10.9.0.1"]))),
    (
        "vip-anywhere-when-no-vm-declares-a-subnet",
        edited(
            ("vms/db1/ip", "10.0.1.1"), ("load_balancers/db", balancer("192.168.7.7", "tenant-b", backends=["db1"]))
        ),
    ),
    (
        "vip-in-a-/31-or-/32-subnet",
        edited(
            ("vms/db1/ip", "10.0.1.0/31"),
            ("load_balancers/db", balancer("10.0.1.1", "tenant-b", backends=[{"ip": "10.0.1.0"}])),
        ),
    ),
    ("vip-in-one-of-two-subnets", edited(("vms/web2/ip", "10.1.0.2/16"), ("load_balancers/web/vip", "10.1.255.1"))),
]


@pytest.mark.parametrize("data", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_an_address_may_repeat_across_networks(data: dict[str, Any]) -> None:
    model = parse_model(data)
    assert len(model.load_balancers) == len(data["load_balancers"])


REJECTED: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "vip-is-a-vm-ip",
        edited(("load_balancers/web/vip", "10.0.0.1"), ("load_balancers/web/backends", ["web2"])),
        ["load_balancers.web.vip: 10.0.0.1 is the ip of VM 'web1' in network 'tenant-a'"],
    ),
    (
        "vip-is-the-ip-backend-of-an-earlier-balancer",
        edited(
            ("load_balancers/web/backends", ["web1", {"ip": "10.0.0.50"}]), ("load_balancers/b", balancer("10.0.0.50"))
        ),
        ["load_balancers.b.vip: 10.0.0.50 is a backend of load balancer 'web'"],
    ),
    (
        "ip-backend-is-the-vip-of-an-earlier-balancer",
        edited(("load_balancers/b", balancer("10.0.0.101", backends=["web1", "10.0.0.100", {"ip": "10.0.0.100"}]))),
        [
            "load_balancers.b.backends[1]: 10.0.0.100 is the vip of load balancer 'web'",
            "load_balancers.b.backends[2]: 10.0.0.100 is the vip of load balancer 'web'",
        ],
    ),
    (
        "ip-backend-is-the-shared-vip-of-another-port",
        edited(("load_balancers/b", balancer("10.0.0.100", port=443, backends=["10.0.0.100"]))),
        ["load_balancers.b.backends[0]: 10.0.0.100 is the vip"],
    ),
    (
        "same-vip-protocol-and-port",
        edited(("load_balancers/b", balancer("10.0.0.100"))),
        ["load_balancers.b: 10.0.0.100 tcp/80 in network 'tenant-a' is already served by load balancer 'web'"],
    ),
    (
        "vip-is-the-network-address",
        edited(("load_balancers/web/vip", "10.0.0.0")),
        ["load_balancers.web.vip: 10.0.0.0 is the network address of 10.0.0.0/24"],
    ),
    (
        "vip-is-the-broadcast-address",
        edited(("load_balancers/web/vip", "10.0.0.255")),
        ["load_balancers.web.vip: 10.0.0.255 is the broadcast address of 10.0.0.0/24"],
    ),
    (
        "vip-is-the-broadcast-address-of-the-smaller-subnet",
        edited(("vms/web2/ip", "10.0.0.2/16"), ("load_balancers/web/vip", "10.0.0.255")),
        ["load_balancers.web.vip: 10.0.0.255 is the broadcast address of 10.0.0.0/24"],
    ),
    (
        "vip-outside-the-subnets",
        edited(("load_balancers/web/vip", "10.0.1.100")),
        ["load_balancers.web.vip: 10.0.1.100 is outside network 'tenant-a' (10.0.0.0/24)"],
    ),
    (
        "vip-not-a-host-address",
        edited(
            ("load_balancers/web/vip", "0.0.0.0"),
            ("load_balancers/b", balancer("255.255.255.255", port=1)),
            ("load_balancers/c", balancer("224.0.0.1", port=2)),
            ("load_balancers/d", balancer("127.0.0.1", port=3)),
            ("load_balancers/e", balancer("240.0.0.1", port=4)),
        ),
        [
            "load_balancers.web.vip: 0.0.0.0 is the unspecified address",
            "load_balancers.b.vip: 255.255.255.255 is the broadcast address",
            "load_balancers.c.vip: 224.0.0.1 is a multicast address",
            "load_balancers.d.vip: 127.0.0.1 is a loopback address",
            "load_balancers.e.vip: 240.0.0.1 is a reserved address",
        ],
    ),
    (
        "ip-backend-not-a-host-address",
        edited(
            ("load_balancers/web/backends", ["web1", "0.0.0.0", {"ip": "224.0.0.5"}, "10.0.0.255", {"ip": "10.0.0.0"}])
        ),
        [
            "load_balancers.web.backends[1]: 0.0.0.0 is the unspecified address",
            "load_balancers.web.backends[2]: 224.0.0.5 is a multicast address",
            "load_balancers.web.backends[3]: 10.0.0.255 is the broadcast address of 10.0.0.0/24",
            "load_balancers.web.backends[4]: 10.0.0.0 is the network address of 10.0.0.0/24",
        ],
    ),
    (
        "same-vm-ip-in-one-network",
        edited(("vms/web2/ip", "10.0.0.1/16"), ("load_balancers", DELETE)),
        ["vms.web2.ip: 10.0.0.1 is already used by VM 'web1' in network 'tenant-a'"],
    ),
]


@pytest.mark.parametrize("data,expected", [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_an_address_conflict_in_one_network_is_rejected(data: dict[str, Any], expected: list[str]) -> None:
    assert errors_of(data) == expected


NET = """
switches: {s1: {dpid: 1}}
networks: {blue: {vlan: 100}, red: {vlan: 200}}
vms:
  client: {switch: s1, port: 1, network: blue, ip: 10.0.0.1/24, mac: "02:00:00:00:00:01"}
  web1: {switch: s1, port: 2, network: blue, ip: 10.0.0.11/24, mac: "02:00:00:00:00:11"}
  web2: {switch: s1, port: 3, network: blue, ip: 10.0.0.12/24, mac: "02:00:00:00:00:12"}
  red1: {switch: s1, port: 4, network: red, ip: 10.0.0.2/24, mac: "02:00:00:00:00:02"}
  red2: {switch: s1, port: 5, network: red, ip: 10.0.0.100/24, mac: "02:00:00:00:01:00"}
load_balancers:
  web: {vip: 10.0.0.100, network: blue, protocol: tcp, port: 80, backends: [web1]}
  tls: {vip: 10.0.0.100, network: blue, protocol: tcp, port: 443, backends: [web2]}
"""
VIP = "10.0.0.100"
BCAST = "ff:ff:ff:ff:ff:ff"


def harness() -> Harness:
    h = Harness(model_from(NET), {1: [1, 2, 3, 4, 5]})
    for port, mac, ip in [
        (1, "02:00:00:00:00:01", "10.0.0.1"),
        (2, "02:00:00:00:00:11", "10.0.0.11"),
        (3, "02:00:00:00:00:12", "10.0.0.12"),
        (4, "02:00:00:00:00:02", "10.0.0.2"),
        (5, "02:00:00:00:01:00", VIP),
    ]:
        h.send(1, port, mac, BCAST, eth_type=0x0806, arp_op=1, arp_sha=mac, arp_spa=ip, arp_tpa="10.0.0.254")
    return h


def test_a_shared_vip_is_answered_once_and_each_port_goes_to_its_own_backends() -> None:
    h = harness()
    t = h.send(
        1,
        1,
        "02:00:00:00:00:01",
        BCAST,
        learn=False,
        eth_type=0x0806,
        arp_op=1,
        arp_sha="02:00:00:00:00:01",
        arp_spa="10.0.0.1",
        arp_tpa=VIP,
    )
    assert [(d, p, pkt["arp_sha"]) for d, p, pkt in t.outputs] == [(1, 1, vip_mac(VIP))]
    for dport, backend in [(80, "10.0.0.11"), (443, "10.0.0.12")]:
        for sport in range(40000, 40010):
            t = h.send(
                1,
                1,
                "02:00:00:00:00:01",
                vip_mac(VIP),
                learn=False,
                ipv4_src="10.0.0.1",
                ipv4_dst=VIP,
                ip_proto=6,
                tcp_src=sport,
                tcp_dst=dport,
            )
            ((_, _, pkt),) = t.outputs
            assert (str(pkt["ipv4_dst"]), pkt["tcp_dst"]) == (backend, dport)


def test_the_vip_of_one_network_is_an_ordinary_address_in_another() -> None:
    """red2 has blue's VIP as its ip: in red, ARP for it reaches red2 and nothing answers for the VIP."""
    h = harness()
    t = h.send(
        1,
        4,
        "02:00:00:00:00:02",
        BCAST,
        learn=False,
        eth_type=0x0806,
        arp_op=1,
        arp_sha="02:00:00:00:00:02",
        arp_spa="10.0.0.2",
        arp_tpa=VIP,
    )
    assert [(d, p) for d, p, _ in t.outputs] == [(1, 5)]
    assert t.outputs[0][2]["arp_op"] == 1
    t = h.send(
        1,
        4,
        "02:00:00:00:00:02",
        "02:00:00:00:01:00",
        learn=False,
        ipv4_src="10.0.0.2",
        ipv4_dst=VIP,
        ip_proto=6,
        tcp_src=40000,
        tcp_dst=80,
    )
    ((d, p, pkt),) = t.outputs
    assert (d, p, str(pkt["ipv4_dst"])) == (1, 5, VIP)
