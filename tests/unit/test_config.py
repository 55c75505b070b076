"""Tests for controller.config (network-file validation) and the ``vmn check`` CLI."""

from __future__ import annotations

import copy
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.config import ConfigError, load_model, loads_model, parse_model
from controller.config.model import (
    Acl,
    AclMatch,
    AclRule,
    Backend,
    ControllerSettings,
    HealthCheck,
    Link,
    LinkEnd,
    LoadBalancer,
    Model,
    Network,
    Switch,
    Vm,
)

REPO = Path(__file__).resolve().parents[2]

# The example of network-schema.md, completed so that it validates: web2 and
# the no-ssh ACL exist, and a tenant-b VM reuses a tenant-a address.
SCHEMA_EXAMPLE = """
controller:
  metrics_host: 127.0.0.1
  metrics_port: 9302
  host_timeout: 300
  lldp_interval: 1.0

switches:
  s2: {dpid: 0x2, bridge: br-int}
  s1: {dpid: 0x1}

links:
  - [s2:10, s1:10]

networks:
  tenant-a: {vlan: 100}
  tenant-b: {vlan: 200, acl_in: [no-ssh]}

vms:
  web2: {switch: s2, port: vnet3, network: tenant-a, ip: 10.0.0.2/24, mac: "02:00:00:00:02:01"}
  web1:
    switch: s1
    port: 1
    network: tenant-a
    ip: 10.0.0.1/24
    mac: "02:00:00:00:01:01"
    acl_in: [web-in]
  db1: {switch: s2, port: 2, network: tenant-b, ip: 10.0.0.1}

acls:
  web-in:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow}
    - {match: {ip_proto: icmp}, action: allow}
    - {match: {ip_proto: tcp, tcp_dst: 22, ipv4_src: 10.0.0.0/24}, action: allow, stateful: true}
    - {action: deny}
  no-ssh:
    - {match: {ip_proto: tcp, tcp_dst: 22}, action: deny}
    - {action: allow}

load_balancers:
  web:
    vip: 10.0.0.100
    network: tenant-a
    protocol: tcp
    port: 80
    backends:
      - web2
      - {vm: web1, weight: 2}
    health_check: {type: tcp, interval: 1.0, timeout: 0.5, fall: 3, rise: 2}
"""


def test_schema_example_parses_to_expected_model() -> None:
    ipv4, tcp = 0x0800, 6
    expected = Model(
        controller=ControllerSettings("127.0.0.1", 9302, 300.0, 1.0, 64, 1000),
        switches=(Switch("s1", 1, "s1"), Switch("s2", 2, "br-int")),
        links=(Link(LinkEnd("s1", 10), LinkEnd("s2", 10)),),
        networks=(Network("tenant-a", 100), Network("tenant-b", 200, ("no-ssh",))),
        vms=(
            Vm("db1", "s2", 2, "tenant-b", IPv4Interface("10.0.0.1/32")),
            Vm(
                "web1",
                "s1",
                1,
                "tenant-a",
                IPv4Interface("10.0.0.1/24"),
                "02:00:00:00:01:01",
                ("web-in",),
            ),
            Vm(
                "web2",
                "s2",
                "vnet3",
                "tenant-a",
                IPv4Interface("10.0.0.2/24"),
                "02:00:00:00:02:01",
            ),
        ),
        acls=(
            Acl(
                "no-ssh",
                (
                    AclRule(AclMatch(eth_type=ipv4, ip_proto=tcp, tcp_dst=22), "deny"),
                    AclRule(AclMatch(), "allow"),
                ),
            ),
            Acl(
                "web-in",
                (
                    AclRule(AclMatch(eth_type=ipv4, ip_proto=tcp, tcp_dst=80), "allow"),
                    AclRule(AclMatch(eth_type=0x0800, ip_proto=1), "allow"),
                    AclRule(
                        AclMatch(
                            eth_type=ipv4,
                            ip_proto=tcp,
                            tcp_dst=22,
                            ipv4_src=IPv4Network("10.0.0.0/24"),
                        ),
                        "allow",
                        stateful=True,
                    ),
                    AclRule(AclMatch(), "deny"),
                ),
            ),
        ),
        load_balancers=(
            LoadBalancer(
                "web",
                IPv4Address("10.0.0.100"),
                "tenant-a",
                "tcp",
                80,
                (
                    Backend(IPv4Address("10.0.0.1"), "web1", 2),
                    Backend(IPv4Address("10.0.0.2"), "web2", 1),
                ),
                HealthCheck("tcp", 1.0, 0.5, 3, 2),
            ),
        ),
    )
    assert loads_model(SCHEMA_EXAMPLE) == expected


def test_same_content_in_another_order_gives_equal_model() -> None:
    import yaml

    data = yaml.safe_load(SCHEMA_EXAMPLE)
    shuffled = {key: data[key] for key in reversed(list(data))}
    for key in ("switches", "networks", "vms", "acls"):
        shuffled[key] = dict(reversed(list(data[key].items())))
    shuffled["load_balancers"]["web"]["backends"].reverse()
    assert parse_model(shuffled) == parse_model(data)


def base() -> dict[str, Any]:
    """A small valid file as yaml.safe_load would return it."""
    return {
        "switches": {"s1": {"dpid": 1}, "s2": {"dpid": 2}},
        "links": [["s1:10", "s2:10"]],
        "networks": {"tenant-a": {"vlan": 100}, "tenant-b": {"vlan": 200}},
        "vms": {
            "web1": {
                "switch": "s1",
                "port": 1,
                "network": "tenant-a",
                "ip": "10.0.0.1/24",
                "mac": "02:00:00:00:01:01",
            },
            "web2": {
                "switch": "s2",
                "port": 1,
                "network": "tenant-a",
                "ip": "10.0.0.2/24",
                "mac": "02:00:00:00:02:01",
            },
            "db1": {
                "switch": "s2",
                "port": 2,
                "network": "tenant-b",
                "ip": "10.0.1.1/24",
            },
            "bare": {"switch": "s1", "port": 2, "network": "tenant-a"},
        },
        "acls": {
            "web-in": [
                {"match": {"ip_proto": "tcp", "tcp_dst": 80}, "action": "allow"},
                {"action": "deny"},
            ]
        },
        "load_balancers": {
            "web": {
                "vip": "10.0.0.100",
                "network": "tenant-a",
                "protocol": "tcp",
                "port": 80,
                "backends": ["web1", "web2"],
            }
        },
    }


DELETE = object()


def edited(*edits: tuple[str, object]) -> dict[str, Any]:
    """base() with each ``(path, value)`` applied; path is '/'-separated, list indexes as ints."""
    data = base()
    for path, value in edits:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split("/")]
        node: Any = data
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)
    return data


def errors_of(data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_model(data)
    assert str(info.value) == "\n".join(info.value.errors)
    return list(info.value.errors)


def test_base_is_valid() -> None:
    model = parse_model(base())
    assert [v.name for v in model.vms] == ["bare", "db1", "web1", "web2"]


MISTAKES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "unknown-key",
        edited(("switches/s1/dpidd", 3)),
        ["switches.s1: unknown key 'dpidd'"],
    ),
    (
        "unknown-top-key",
        edited(("vm", {})),
        ["top level: unknown key 'vm'"],
    ),
    ("missing-key", edited(("vms/web1/switch", DELETE)), ["vms.web1.switch: required"]),
    (
        "bool-is-not-int",
        edited(("networks/tenant-a/vlan", True)),
        ["networks.tenant-a.vlan: expected an integer, got true"],
    ),
    (
        "string-is-not-int",
        edited(("load_balancers/web/port", "80")),
        ["load_balancers.web.port: expected an integer, got string '80'"],
    ),
    (
        "unknown-network",
        edited(("vms/web1/network", "tenant-c")),
        ["vms.web1.network: unknown network 'tenant-c'"],
    ),
    (
        "unknown-switch",
        edited(("vms/db1/switch", "s9")),
        ["vms.db1.switch: unknown switch 's9'"],
    ),
    (
        "unknown-acl-on-network",
        edited(("networks/tenant-b/acl_in", ["web-in", "nope"])),
        ["networks.tenant-b.acl_in[1]: unknown ACL 'nope'"],
    ),
    (
        "unknown-acl-on-vm",
        edited(("vms/web1/acl_in", ["nope"])),
        ["vms.web1.acl_in[0]: unknown ACL 'nope'"],
    ),
    (
        "link-unknown-switch",
        edited(("links/0/1", "s9:10")),
        ["links[0][1]: unknown switch 's9'"],
    ),
    (
        "link-malformed",
        edited(("links", [["s1:10", "s2"], ["s1:11"]])),
        [
            "links[0][1]: expected 'switch:port', got string 's2'",
            "links[1]: expected two ends [switch:port, switch:port], got 1",
        ],
    ),
    (
        "link-to-itself",
        edited(("links/0/1", "s1:11")),
        ["links[0]: links switch 's1' to itself"],
    ),
    (
        "port-used-by-two-links",
        edited(("links", [["s1:10", "s2:10"], ["s2:11", "s1:10"]])),
        ["links[1][1]: port s1:10 is already used by links[0]"],
    ),
    (
        "vm-on-link-port",
        edited(("vms/web2/port", "10")),
        ["vms.web2.port: port 10 on switch 's2' is already used by links[0]"],
    ),
    (
        "two-vms-on-one-port",
        edited(("vms/db1/port", 1)),
        ["vms.db1.port: port 1 on switch 's2' is already used by VM 'web2'"],
    ),
    (
        "duplicate-dpid",
        edited(("switches/s2/dpid", "0x1")),
        ["switches.s2.dpid: 0x1 is already used by switch 's1'"],
    ),
    (
        "bad-dpid",
        edited(("switches/s1/dpid", "xyz"), ("switches/s2/dpid", 0)),
        [
            "switches.s1.dpid: expected an integer or a hex string like '0x1', got string 'xyz'",
            "switches.s2.dpid: must be between 0x1 and 0xffffffffffffffff, got 0x0",
        ],
    ),
    (
        "dpid-too-big",
        edited(("switches/s1/dpid", 2**64)),
        ["switches.s1.dpid: must be between 0x1 and 0xffffffffffffffff, got 0x10000000000000000"],
    ),
    (
        "duplicate-bridge",
        edited(("switches/s2/bridge", "s1")),
        ["switches.s2.bridge: bridge 's1' is already used by switch 's1'"],
    ),
    (
        "duplicate-vlan",
        edited(("networks/tenant-b/vlan", 100)),
        ["networks.tenant-b.vlan: VLAN 100 is already used by network 'tenant-a'"],
    ),
    (
        "vlan-out-of-range",
        edited(("networks/tenant-b/vlan", 4095)),
        ["networks.tenant-b.vlan: must be between 1 and 4094, got 4095"],
    ),
    (
        "bad-mac",
        edited(("vms/web1/mac", "02:00:00:00:01"), ("vms/web2/mac", 9783936001)),
        [
            "vms.web1.mac: invalid MAC address '02:00:00:00:01'",
            (
                "vms.web2.mac: expected a MAC address like '02:00:00:00:00:01', "
                "got integer 9783936001 (quote MAC addresses in YAML)"
            ),
        ],
    ),
    (
        "multicast-vm-mac",
        edited(("vms/web1/mac", "01:00:5E:00:00:01")),
        ["vms.web1.mac: must be a unicast MAC address, got '01:00:5e:00:00:01'"],
    ),
    (
        "duplicate-mac",
        edited(("vms/web2/mac", "02:00:00:00:01:01")),
        ["vms.web2.mac: 02:00:00:00:01:01 is already used by VM 'web1'"],
    ),
    (
        "bad-vm-ip",
        edited(("vms/web1/ip", "10.0.0.300/24"), ("vms/web2/ip", "10.0.0.0/24")),
        [
            "vms.web1.ip: invalid IPv4 address '10.0.0.300/24'",
            "vms.web2.ip: 10.0.0.0/24 is the network address of 10.0.0.0/24",
        ],
    ),
    (
        "duplicate-ip-in-network",
        edited(("vms/web2/ip", "10.0.0.1/24")),
        ["vms.web2.ip: 10.0.0.1 is already used by VM 'web1' in network 'tenant-a'"],
    ),
    (
        "bad-port",
        edited(("vms/web1/port", "this-name-is-too-long"), ("vms/web2/port", 0)),
        [
            (
                "vms.web1.port: invalid interface name 'this-name-is-too-long' "
                "(at most 15 characters, no '/', ':' or whitespace)"
            ),
            "vms.web2.port: must be between 1 and 4294967040, got 0",
        ],
    ),
    (
        "acl-cidr-host-bits",
        edited(("acls/web-in/0/match/ipv4_src", "10.0.0.1/24")),
        ["acls.web-in[0].match.ipv4_src: 10.0.0.1/24 has host bits set (did you mean 10.0.0.0/24?)"],
    ),
    (
        "acl-port-out-of-range",
        edited(("acls/web-in/0/match/tcp_dst", 70000)),
        ["acls.web-in[0].match.tcp_dst: must be between 0 and 65535, got 70000"],
    ),
    (
        "tcp-without-ip-proto",
        edited(("acls/web-in/0/match/ip_proto", DELETE)),
        ["acls.web-in[0].match.tcp_dst: needs ip_proto: tcp"],
    ),
    (
        "udp-with-ip-proto-tcp",
        edited(("acls/web-in/0/match", {"ip_proto": "tcp", "udp_dst": 53})),
        ["acls.web-in[0].match.udp_dst: needs ip_proto: udp"],
    ),
    (
        "icmp-type-without-icmp",
        edited(("acls/web-in/0/match", {"icmp_type": 8})),
        ["acls.web-in[0].match.icmp_type: needs ip_proto: icmp"],
    ),
    (
        "non-ipv4-eth-type-with-ip-fields",
        edited(
            (
                "acls/web-in/0/match",
                {"eth_type": "ipv6", "ip_proto": 6, "ipv4_src": "10.0.0.0/8"},
            )
        ),
        ["acls.web-in[0].match.eth_type: must be ipv4 when ipv4_src is given, got string 'ipv6'"],
    ),
    (
        "bad-eth-type-and-ip-proto",
        edited(
            ("acls/web-in/0/match", {"eth_type": 0x10}),
            ("acls/web-in/1/match", {"ip_proto": "sctp"}),
        ),
        [
            "acls.web-in[0].match.eth_type: must be between 0x0600 and 0xffff, got 0x0010",
            "acls.web-in[1].match.ip_proto: expected tcp, udp, icmp, icmpv6 or a number, got string 'sctp'",
        ],
    ),
    (
        "bad-action",
        edited(("acls/web-in/1/action", "permit")),
        ["acls.web-in[1].action: expected allow or deny, got string 'permit'"],
    ),
    (
        "stateful-deny",
        edited(("acls/web-in/1/stateful", True)),
        ["acls.web-in[1].stateful: only an allow rule can be stateful"],
    ),
    (
        "empty-acl",
        edited(("acls/web-in", [])),
        ["acls.web-in: must have at least one rule"],
    ),
    (
        "unknown-match-key",
        edited(("acls/web-in/0/match/tcp_port", 1)),
        ["acls.web-in[0].match: unknown key 'tcp_port'"],
    ),
    (
        "lb-unknown-network",
        edited(("load_balancers/web/network", "tenant-c")),
        ["load_balancers.web.network: unknown network 'tenant-c'"],
    ),
    (
        "lb-unknown-backend-vm",
        edited(("load_balancers/web/backends", ["web1", {"vm": "web9"}])),
        ["load_balancers.web.backends[1].vm: unknown VM 'web9'"],
    ),
    (
        "lb-backend-vm-unsuitable",
        edited(("load_balancers/web/backends", ["bare", "db1"])),
        [
            "load_balancers.web.backends[0]: VM 'bare' has no ip",
            "load_balancers.web.backends[1]: VM 'db1' is in network 'tenant-b', not 'tenant-a'",
        ],
    ),
    (
        "lb-vip-is-vm-ip",
        edited(("load_balancers/web/vip", "10.0.0.2")),
        [
            "load_balancers.web.vip: 10.0.0.2 is the ip of VM 'web2' in network 'tenant-a'",
            "load_balancers.web.backends[1]: 10.0.0.2 is the vip",
        ],
    ),
    (
        "lb-vip-outside-subnet",
        edited(("load_balancers/web/vip", "10.9.0.100")),
        ["load_balancers.web.vip: 10.9.0.100 is outside network 'tenant-a' (10.0.0.0/24)"],
    ),
    (
        "lb-bad-backends",
        edited(
            (
                "load_balancers/web/backends",
                [
                    "10.0.0.50",
                    {"ip": "10.0.0.50"},
                    {"vm": "web1", "weight": 0},
                    {"vm": "web2", "ip": "10.0.0.2"},
                ],
            ),
        ),
        [
            "load_balancers.web.backends[1]: 10.0.0.50 is already a backend (backends[0])",
            "load_balancers.web.backends[2].weight: must be between 1 and 65535, got 0",
            "load_balancers.web.backends[3]: needs exactly one of vm or ip",
        ],
    ),
    (
        "lb-no-backends",
        edited(("load_balancers/web/backends", [])),
        ["load_balancers.web.backends: must list at least one backend"],
    ),
    (
        "lb-protocol-and-port",
        edited(("load_balancers/web/protocol", "sctp"), ("load_balancers/web/port", 0)),
        [
            "load_balancers.web.protocol: expected tcp or udp, got string 'sctp'",
            "load_balancers.web.port: must be between 1 and 65535, got 0",
        ],
    ),
    (
        "health-check-timeout-over-interval",
        edited(
            (
                "load_balancers/web/health_check",
                {"interval": 1, "timeout": 2, "kind": "tcp"},
            )
        ),
        [
            "load_balancers.web.health_check: unknown key 'kind'",
            "load_balancers.web.health_check.timeout: must not exceed interval 1, got 2",
        ],
    ),
    (
        "controller-settings",
        edited(
            (
                "controller",
                {
                    "metrics_port": 70000,
                    "host_timeout": 0,
                    "lldp_interval": "1s",
                    "max_hosts_per_port": 0,
                    "packet_in_rate": 1.5,
                },
            ),
        ),
        [
            "controller.metrics_port: must be between 0 and 65535, got 70000",
            "controller.host_timeout: must be a number greater than 0, got 0",
            "controller.lldp_interval: expected a number, got string '1s'",
            "controller.max_hosts_per_port: must be at least 1, got 0",
            "controller.packet_in_rate: expected an integer, got number 1.5",
        ],
    ),
    (
        "no-switches",
        edited(("switches", DELETE), ("links", DELETE), ("vms/bare", DELETE)),
        [
            "switches: required",
            "vms.web1.switch: unknown switch 's1'",
            "vms.web2.switch: unknown switch 's2'",
            "vms.db1.switch: unknown switch 's2'",
        ],
    ),
    (
        "empty-switches",
        edited(("switches", {}), ("links", DELETE), ("vms", {}), ("load_balancers", DELETE)),
        ["switches: must declare at least one switch"],
    ),
    (
        "vms-without-networks",
        edited(
            ("networks", DELETE),
            ("vms", {"h1": {"switch": "s1", "port": 3, "network": "x"}}),
            ("load_balancers", DELETE),
            ("acls", DELETE),
        ),
        [
            "networks: required when vms are declared",
            "vms.h1.network: unknown network 'x'",
        ],
    ),
    (
        "wrong-container-types",
        edited(("vms", ["web1"]), ("load_balancers", DELETE)),
        ["vms: expected a mapping of names, got a list"],
    ),
]


@pytest.mark.parametrize("data,expected", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_mistake_is_reported_with_its_path(data: dict[str, Any], expected: list[str]) -> None:
    assert errors_of(data) == expected


def test_all_errors_are_collected() -> None:
    data = edited(
        ("switches/s1/dpidd", 1),
        ("networks/tenant-a/vlan", 0),
        ("vms/web1/network", "tenant-c"),
        ("acls/web-in/1/action", "drop"),
    )
    assert errors_of(data) == [
        "switches.s1: unknown key 'dpidd'",
        "networks.tenant-a.vlan: must be between 1 and 4094, got 0",
        "vms.web1.network: unknown network 'tenant-c'",
        "acls.web-in[1].action: expected allow or deny, got string 'drop'",
    ]


@pytest.mark.parametrize("data", [None, {}])
def test_empty_file_needs_switches(data: object) -> None:
    assert errors_of(data) == ["switches: required"]


def test_top_level_must_be_a_mapping() -> None:
    assert errors_of(["switches"]) == ["top level: expected a mapping, got a list"]


def test_normalisation() -> None:
    model = parse_model(
        edited(
            ("switches/s1/dpid", "10"),
            ("switches/s2/dpid", "0x0000000000000002"),
            ("vms/web1/mac", "02:AB:00:00:01:01"),
            ("vms/web1/ip", "10.0.0.1"),
            ("vms/web2/port", "eth1"),
            ("links/0", ["s2:10", "s1:eth0"]),
            (
                "acls/web-in",
                [
                    {
                        "match": {"eth_type": "arp", "eth_src": "AA:BB:CC:DD:EE:FF"},
                        "action": "allow",
                    },
                    {"match": {"eth_type": 0x86DD}, "action": "allow"},
                    {"match": {"ip_proto": 47}, "action": "allow"},
                    {
                        "match": {"ipv4_dst": "10.0.0.7"},
                        "action": "deny",
                        "stateful": False,
                    },
                ],
            ),
            (
                "load_balancers/web/backends",
                ["10.0.0.9", {"vm": "web1"}, {"ip": "10.0.0.8", "weight": 5}],
            ),
            ("load_balancers/web/vip", "10.0.0.200"),
        )
    )
    assert [s.dpid for s in model.switches] == [0x10, 0x2]
    web1, web2 = model.vm_by_name["web1"], model.vm_by_name["web2"]
    assert web1.mac == "02:ab:00:00:01:01"
    assert web1.ip == IPv4Interface("10.0.0.1/32")
    assert web2.port == "eth1"
    assert model.links == (Link(LinkEnd("s1", "eth0"), LinkEnd("s2", 10)),)
    assert [r.match for r in model.acl_by_name["web-in"].rules] == [
        AclMatch(eth_type=0x0806, eth_src="aa:bb:cc:dd:ee:ff"),
        AclMatch(eth_type=0x86DD),
        AclMatch(eth_type=0x0800, ip_proto=47),
        AclMatch(eth_type=0x0800, ipv4_dst=IPv4Network("10.0.0.7/32")),
    ]
    assert model.load_balancers[0].backends == (
        Backend(IPv4Address("10.0.0.1"), "web1"),
        Backend(IPv4Address("10.0.0.8"), None, 5),
        Backend(IPv4Address("10.0.0.9")),
    )
    assert model.load_balancers[0].health_check == HealthCheck()
    assert model.controller == ControllerSettings()


def test_duplicate_yaml_key_is_an_error() -> None:
    text = "switches:\n  s1: {dpid: 1}\n  s1: {dpid: 2}\n"
    with pytest.raises(ConfigError) as info:
        loads_model(text, source="dup.yaml")
    assert info.value.errors == ("dup.yaml:3:3: invalid YAML: while constructing a mapping: found duplicate key 's1'",)


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("switches:\n  s1: {dpid: 1\n")
    with pytest.raises(ConfigError) as info:
        load_model(path)
    (message,) = info.value.errors
    assert message.startswith(f"{path}:3:1: invalid YAML: while parsing a flow mapping")


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_model(path)
    assert info.value.errors == (f"{path}: cannot read: No such file or directory",)


def test_default_topology_validates() -> None:
    path = REPO / "topologies" / "default.yaml"
    if not path.exists():
        pytest.skip("topologies/default.yaml not present")
    model = load_model(path)
    assert model.switches and not model.zero_config


def test_cli_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(SCHEMA_EXAMPLE)
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == "ok: 2 switches, 3 vms, 2 networks, 2 acls, 1 load balancer\n"
    assert err == ""


def test_cli_check_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(
        "switches: {s1: {dpid: 1, dpidd: 2}}\n"
        "networks: {a: {vlan: 1}}\n"
        "vms: {web1: {switch: s1, port: 1, network: tenant-c}}\n"
    )
    assert main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "switches.s1: unknown key 'dpidd'",
        "vms.web1.network: unknown network 'tenant-c'",
    ]


def test_cli_help_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "check" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_python_m_controller_cli(tmp_path: Path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text("switches: {s1: {dpid: 1}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", "check", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (
        0,
        "ok: 1 switch, 0 vms, 0 networks, 0 acls, 0 load balancers\n",
    )
    path.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", "check", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (1, "switches: required\n")
