"""Numbers in the network file: what YAML text means, for every numeric key.

PyYAML reads YAML 1.1: a plain ``0100`` is octal 64, ``1:20`` is 80 (base
60), ``no`` and ``on`` are booleans. The network file never reads a number
that way (network-schema.md, "Numbers"): each case here is written as YAML
text and loaded with :func:`loads_model`, as ``vmn check`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from controller.config import ConfigError, loads_model
from controller.config.model import Model
from tests.unit.test_config import base

SENTINEL = "@@value@@"


def full() -> dict[str, Any]:
    """test_config's base file plus every other numeric key: controller, mirror, weights, checks, ACL fields."""
    data = base()
    data["controller"] = {
        "metrics_port": 9302,
        "host_timeout": 300,
        "lldp_interval": 1.0,
        "stats_interval": 10,
        "max_hosts_per_port": 64,
        "packet_in_rate": 1000,
    }
    data["mirrors"] = {"tap": {"switch": "s1", "port": 20, "vms": ["web1"], "direction": "out"}}
    lb = data["load_balancers"]["web"]
    lb["backends"] = ["web1", {"vm": "web2", "weight": 2}]
    lb["health_check"] = {"interval": 2, "timeout": 0.25, "fall": 3, "rise": 2}
    data["acls"]["web-in"] = [
        {"match": {"ip_proto": "tcp", "tcp_src": 1024, "tcp_dst": 80}, "action": "allow", "stateful": True},
        {"match": {"ip_proto": "udp", "udp_src": 53, "udp_dst": 53}, "action": "allow"},
        {"match": {"ip_proto": "icmp", "icmp_type": 8}, "action": "allow"},
        {"match": {"eth_type": 0x0806}, "action": "allow"},
        {"match": {"ip_proto": 47}, "action": "allow"},
        {"action": "deny"},
    ]
    return data


def text_with(path: str, raw: str) -> str:
    """The YAML text of :func:`full` with the value at ``path`` ('/'-separated) written as ``raw``."""
    data = full()
    *parents, last = [int(p) if p.isdigit() else p for p in path.split("/")]
    node: Any = data
    for key in parents:
        node = node[key]
    node[last] = SENTINEL
    text = yaml.safe_dump(data, sort_keys=False)
    assert text.count(f"'{SENTINEL}'") == 1
    return text.replace(f"'{SENTINEL}'", raw)


def errors_of_text(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads_model(text)
    return list(info.value.errors)


def dotted(path: str) -> str:
    """'acls/web-in/0/match/tcp_dst' -> 'acls.web-in[0].match.tcp_dst'."""
    out = ""
    for part in path.split("/"):
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


Get = Callable[[Model], object]


def _rule(i: int, field: str) -> Get:
    return lambda m: getattr(m.acl_by_name["web-in"].rules[i].match, field)


INTEGERS: dict[str, tuple[str, Get]] = {
    # path: (what the error says was expected, where the model holds it)
    "networks/tenant-a/vlan": ("an integer", lambda m: m.network_by_name["tenant-a"].vlan),
    "vms/web1/port": ("an integer", lambda m: m.vm_by_name["web1"].port),
    "mirrors/tap/port": ("an integer", lambda m: m.mirrors[0].port),
    "load_balancers/web/port": ("an integer", lambda m: m.load_balancers[0].port),
    "load_balancers/web/backends/1/weight": (
        "an integer",
        lambda m: {b.vm: b.weight for b in m.load_balancers[0].backends}["web2"],
    ),
    "load_balancers/web/health_check/fall": ("an integer", lambda m: m.load_balancers[0].health_check.fall),
    "load_balancers/web/health_check/rise": ("an integer", lambda m: m.load_balancers[0].health_check.rise),
    "acls/web-in/0/match/tcp_src": ("an integer", _rule(0, "tcp_src")),
    "acls/web-in/0/match/tcp_dst": ("an integer", _rule(0, "tcp_dst")),
    "acls/web-in/1/match/udp_src": ("an integer", _rule(1, "udp_src")),
    "acls/web-in/1/match/udp_dst": ("an integer", _rule(1, "udp_dst")),
    "acls/web-in/2/match/icmp_type": ("an integer", _rule(2, "icmp_type")),
    "acls/web-in/3/match/eth_type": ("arp, ipv4, ipv6 or a number", _rule(3, "eth_type")),
    "acls/web-in/4/match/ip_proto": ("tcp, udp, icmp, icmpv6 or a number", _rule(4, "ip_proto")),
    "controller/metrics_port": ("an integer", lambda m: m.controller.metrics_port),
    "controller/max_hosts_per_port": ("an integer", lambda m: m.controller.max_hosts_per_port),
    "controller/packet_in_rate": ("an integer", lambda m: m.controller.packet_in_rate),
}
NUMBERS: dict[str, Get] = {
    "controller/host_timeout": lambda m: m.controller.host_timeout,
    "controller/lldp_interval": lambda m: m.controller.lldp_interval,
    "controller/stats_interval": lambda m: m.controller.stats_interval,
    "load_balancers/web/health_check/interval": lambda m: m.load_balancers[0].health_check.interval,
    "load_balancers/web/health_check/timeout": lambda m: m.load_balancers[0].health_check.timeout,
}
PORT_NAMES = ("vms/web1/port", "mirrors/tap/port")
"""Keys that take a number or an interface name: a plain ``on`` there is a name."""


def test_the_full_file_is_valid() -> None:
    model = loads_model(yaml.safe_dump(full()))
    assert [INTEGERS[p][1](model) for p in INTEGERS] == [
        100,
        1,
        20,
        80,
        2,
        3,
        2,
        1024,
        80,
        53,
        53,
        8,
        0x0806,
        47,
        9302,
        64,
        1000,
    ]


def _int_cases() -> list[tuple[str, str, str]]:
    cases = []
    for path, (expected, _) in INTEGERS.items():
        hexy = path.endswith("eth_type")
        cases += [
            (
                path,
                "0100",
                "0100 has a leading zero: "
                + ("write 0x0100 for hex, or 100" if hexy else "write 100, or 0o100 for octal"),
            ),
            (path, "0180", "0180 has a leading zero: " + ("write 0x0180 for hex, or 180" if hexy else "write 180")),
            (path, "00", "00 has a leading zero: " + ("write 0x00 for hex, or 0" if hexy else "write 0")),
            (path, "1:20", "1:20 reads as 80 in YAML 1.1 (base 60): write 80"),
            (path, "190:20:30", "190:20:30 reads as 685230 in YAML 1.1 (base 60): write 685230"),
            (path, "1e3", f"expected {expected}, got 1e3 (write 1000)"),
            (path, "80.0", f"expected {expected}, got 80.0 (write 80)"),
            (path, "2.5", f"expected {expected}, got 2.5"),
            (path, ".inf", f"expected {expected}, got .inf"),
            (path, "-.inf", f"expected {expected}, got -.inf"),
            (path, ".nan", f"expected {expected}, got .nan"),
            (path, "0o8", f"expected {expected}, got 0o8"),
        ]
        if path not in PORT_NAMES:
            cases += [(path, word, f"expected {expected}, got {word}") for word in ("yes", "on", "Off", "true")]
    return cases


@pytest.mark.parametrize("path,raw,message", _int_cases())
def test_an_ambiguous_integer_is_rejected_with_its_path(path: str, raw: str, message: str) -> None:
    assert errors_of_text(text_with(path, raw)) == [f"{dotted(path)}: {message}"]


def _number_cases() -> list[tuple[str, str, str]]:
    cases = []
    for path in NUMBERS:
        cases += [
            (path, "0300", "0300 has a leading zero: write 300, or 0o300 for octal"),
            (path, "00.5", "00.5 has a leading zero: write 0.5"),
            (path, "-01", "-01 has a leading zero: write -1, or -0o1 for octal"),
            (path, "1:30", "1:30 reads as 90 in YAML 1.1 (base 60): write 90"),
            (path, "1:30.5", "1:30.5 reads as 90.5 in YAML 1.1 (base 60): write 90.5"),
            (path, ".inf", "must be a number greater than 0, got .inf"),
            (path, ".NaN", "must be a number greater than 0, got .NaN"),
            (path, "1e999", "must be a number greater than 0, got 1e999"),
            (path, "1__0.5", "expected a number, got 1__0.5"),
            (path, "yes", "expected a number, got yes"),
            (path, "off", "expected a number, got off"),
        ]
    return cases


@pytest.mark.parametrize("path,raw,message", _number_cases())
def test_an_ambiguous_number_is_rejected_with_its_path(path: str, raw: str, message: str) -> None:
    assert errors_of_text(text_with(path, raw)) == [f"{dotted(path)}: {message}"]


def _int_values() -> list[tuple[str, str, int]]:
    cases = []
    for path in INTEGERS:
        if path.endswith("eth_type"):
            cases += [(path, "0o4006", 0x806), (path, "0X806", 0x806), (path, "0x86dd", 0x86DD), (path, "2_054", 0x806)]
        else:
            cases += [
                (path, "0o20", 16),
                (path, "0O20", 16),
                (path, "0X10", 16),
                (path, "0x10", 16),
                (path, "0b10000", 16),
                (path, "1_6", 16),
                (path, "+16", 16),
                (path, "16", 16),
            ]
    return cases


@pytest.mark.parametrize("path,raw,value", _int_values())
def test_an_integer_is_read_as_written(path: str, raw: str, value: int) -> None:
    model = loads_model(text_with(path, raw))
    assert INTEGERS[path][1](model) == value


@pytest.mark.parametrize("path", NUMBERS)
@pytest.mark.parametrize(
    "raw,value",
    [
        ("1e0", 1.0),
        ("5E-1", 0.5),
        (".5", 0.5),
        ("0.5", 0.5),
        ("1", 1.0),
        ("0x1", 1.0),
        ("0o1", 1.0),
        ("1.", 1.0),
        ("2.5e-1", 0.25),
    ],
)
def test_a_number_is_read_as_written(path: str, raw: str, value: float) -> None:
    model = loads_model(text_with(path, raw))
    assert NUMBERS[path](model) == value


@pytest.mark.parametrize("raw", ["010", '"010"', "00"])
def test_a_port_with_a_leading_zero_is_rejected_also_in_a_link_or_quoted(raw: str) -> None:
    shown = raw.strip('"')
    want = {"010": "010 has a leading zero: write 10, or 0o10 for octal", "00": "00 has a leading zero: write 0"}
    assert errors_of_text(text_with("vms/web1/port", raw)) == [f"vms.web1.port: {want[shown]}"]
    assert errors_of_text(text_with("links/0/0", f"s1:{shown}")) == [f"links[0][0]: {want[shown]}"]


@pytest.mark.parametrize("end,port", [("s1:0x10", 16), ("s1:0o20", 16), ("s1:1_6", 16), ("s1:eth0", "eth0")])
def test_a_link_port_is_read_like_a_plain_scalar(end: str, port: int | str) -> None:
    model = loads_model(text_with("links/0/0", end))
    assert [(e.switch, e.port) for link in model.links for e in (link.a, link.b)] == [("s1", port), ("s2", 10)]


@pytest.mark.parametrize(
    "end,message",
    [
        ("s1:1e3", "expected an integer, got 1e3 (write 1000)"),
        ("s1:1.5", "expected an integer, got 1.5"),
        ("s1:0180", "0180 has a leading zero: write 180"),
    ],
)
def test_a_link_port_that_looks_like_a_bad_number_is_rejected(end: str, message: str) -> None:
    assert errors_of_text(text_with("links/0/0", end)) == [f"links[0][0]: {message}"]


@pytest.mark.parametrize("path", PORT_NAMES)
@pytest.mark.parametrize("word", ["on", "no", "True"])
def test_a_port_written_as_a_yaml_11_boolean_is_an_interface_name(path: str, word: str) -> None:
    model = loads_model(text_with(path, word))
    assert INTEGERS[path][1](model) == word


@pytest.mark.parametrize(
    "raw,dpid",
    [
        ("0000000000000010", 0x10),  # as ovs-vsctl prints it (YAML 1.1: octal 8)
        ("0000000000000089", 0x89),
        ("1000000000000010", 0x1000000000000010),  # 16 digits: hex (YAML 1.1: decimal)
        ("00000000000000ab", 0xAB),
        ("00000000000000AB", 0xAB),
        ("0000000000000e10", 0xE10),
        ('"0000000000000010"', 0x10),
        ("'00000000000000ab'", 0xAB),
        ('"10"', 0x10),
        ('"0x10"', 0x10),
        ("0x10", 0x10),
        ("0x0000000000000010", 0x10),
        ("16", 16),
        ("0o20", 16),
        ("0b10000", 16),
        ("ffffffffffffffff", 2**64 - 1),
    ],
)
def test_a_dpid_is_read_as_written(raw: str, dpid: int) -> None:
    model = loads_model(text_with("switches/s1/dpid", raw))
    assert model.switch_by_name["s1"].dpid == dpid


@pytest.mark.parametrize(
    "raw,message",
    [
        (
            "000000000000010",
            "000000000000010 has a leading zero and 15 digits: write the dpid as 16 hex digits "
            "(as ovs-vsctl prints it) or as 0x10",
        ),
        (
            "00000000000000010",
            "00000000000000010 has a leading zero and 17 digits: write the dpid as 16 hex digits "
            "(as ovs-vsctl prints it) or as 0x10",
        ),
        (
            "010",
            "010 has a leading zero and 3 digits: write the dpid as 16 hex digits (as ovs-vsctl prints it) or as 0x10",
        ),
        (
            "00",
            "00 has a leading zero and 2 digits: write the dpid as 16 hex digits (as ovs-vsctl prints it) or as 0x0",
        ),
        ("1:20", "1:20 reads as 80 in YAML 1.1 (base 60): write 80"),
        ("1e5", "expected an integer or a hex string like '0x1', got 1e5 (write 100000)"),
        ("1.0", "expected an integer or a hex string like '0x1', got 1.0 (write 1)"),
        (".inf", "expected an integer or a hex string like '0x1', got .inf"),
        ("yes", "expected an integer or a hex string like '0x1', got yes"),
        ("on", "expected an integer or a hex string like '0x1', got on"),
        (
            "00000000000000000",
            "00000000000000000 has a leading zero and 17 digits: write the dpid as 16 hex digits "
            "(as ovs-vsctl prints it) or as 0x0",
        ),
        ("0000000000000000", "must be between 0x1 and 0xffffffffffffffff, got 0x0"),
    ],
)
def test_an_ambiguous_dpid_is_rejected(raw: str, message: str) -> None:
    assert errors_of_text(text_with("switches/s1/dpid", raw)) == [f"switches.s1.dpid: {message}"]


def test_two_dpids_that_yaml_11_reads_alike_are_told_apart() -> None:
    """0000000000000010 and 0o10 are both 8 to YAML 1.1: here they are 0x10 and 8."""
    text = text_with("switches/s1/dpid", "0000000000000010").replace("dpid: 2", "dpid: 0o10")
    assert [s.dpid for s in loads_model(text).switches] == [0x10, 8]


@pytest.mark.parametrize(
    "raw,value", [("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False), ("FALSE", False)]
)
def test_a_boolean_is_true_or_false(raw: str, value: bool) -> None:
    model = loads_model(text_with("acls/web-in/0/stateful", raw))
    assert model.acl_by_name["web-in"].rules[0].stateful is value


@pytest.mark.parametrize("raw", ["yes", "no", "on", "off", "Yes", "NO", "On", "OFF", "y", "1", "0", '"true"'])
def test_yes_no_on_off_are_not_booleans(raw: str) -> None:
    shown = "string 'true'" if raw == '"true"' else ("string 'y'" if raw == "y" else raw)
    assert errors_of_text(text_with("acls/web-in/0/stateful", raw)) == [
        f"acls.web-in[0].stateful: expected true or false, got {shown}"
    ]


NAMES = """
switches:
  yes: {dpid: 1}
  1: {dpid: 2}
links: [[yes:10, 1:10]]
networks:
  no: {vlan: 10}
  100: {vlan: 0020}
  1:20: {vlan: 30}
vms:
  on: {switch: yes, port: 1, network: no, ip: 10.0.0.1/24, mac: 10:00:00:00:00:01, acl_in: [off]}
  1e3: {switch: 1, port: 2, network: 100, ip: 10.0.0.2/24}
  2024-01-01: {switch: 1, port: 3, network: 1:20}
  0100: {switch: 1, port: 4, network: no, ip: 10.0.0.3/24, mac: 12:34:56:00:00:01}
acls:
  off: [{match: {eth_src: 12:34:56:00:00:01}, action: allow}, {action: deny}]
load_balancers:
  0o17: {vip: 10.0.0.100, network: no, protocol: tcp, port: 80, backends: [on, {vm: 0100}]}
mirrors:
  Off: {switch: yes, port: 20, vms: [on, 0100], direction: out}
"""


def test_a_name_is_the_text_as_written() -> None:
    """YAML 1.1 would make these keys booleans, ints, a float and a date (and 0100 octal 64)."""
    with pytest.raises(ConfigError) as info:
        loads_model(NAMES)
    assert info.value.errors == ("networks.100.vlan: 0020 has a leading zero: write 20, or 0o20 for octal",)
    model = loads_model(NAMES.replace("0020", "20"))
    assert [s.name for s in model.switches] == ["1", "yes"]
    assert [(link.a.switch, link.b.switch) for link in model.links] == [("1", "yes")]
    assert [n.name for n in model.networks] == ["100", "1:20", "no"]
    assert [(v.name, v.network, v.switch) for v in model.vms] == [
        ("0100", "no", "1"),
        ("1e3", "100", "1"),
        ("2024-01-01", "1:20", "1"),
        ("on", "no", "yes"),
    ]
    assert model.vm_by_name["on"].mac == "10:00:00:00:00:01"
    assert model.vm_by_name["on"].acl_in == ("off",)
    assert model.acls[0].name == "off"
    assert model.acls[0].rules[0].match.eth_src == "12:34:56:00:00:01"
    (lb,) = model.load_balancers
    assert (lb.name, lb.network, [b.vm for b in lb.backends]) == ("0o17", "no", ["on", "0100"])
    assert (model.mirrors[0].name, model.mirrors[0].vms) == ("Off", ("on", "0100"))
    for name in [s.name for s in model.switches] + [v.name for v in model.vms] + [lb.name, lb.backends[0].vm]:
        assert type(name) is str


def test_names_that_yaml_11_reads_alike_are_different_names() -> None:
    """0100 and 64 are both 64 to YAML 1.1 (a duplicate key); here they are two networks."""
    text = "switches: {s1: {dpid: 1}}\nnetworks: {0100: {vlan: 1}, 64: {vlan: 2}, no: {vlan: 3}, false: {vlan: 4}}\n"
    assert [n.name for n in loads_model(text).networks] == ["0100", "64", "false", "no"]


def test_a_name_written_plain_and_quoted_is_one_key() -> None:
    with pytest.raises(ConfigError) as info:
        loads_model('switches: {s1: {dpid: 1}}\nnetworks: {100: {vlan: 1}, "100": {vlan: 2}}\n', "n.yaml")
    assert info.value.errors == ("n.yaml:2:28: invalid YAML: while constructing a mapping: found duplicate key '100'",)


def test_a_mac_that_yaml_11_reads_as_base_60_is_a_mac() -> None:
    text = text_with("vms/web1/mac", "10:00:00:00:00:01").replace(
        "tcp_dst: 80", "tcp_dst: 80\n      eth_dst: 52:00:00:00:00:01"
    )
    model = loads_model(text)
    assert model.vm_by_name["web1"].mac == "10:00:00:00:00:01"
    assert model.acl_by_name["web-in"].rules[0].match.eth_dst == "52:00:00:00:00:01"


def test_python_values_are_read_as_before() -> None:
    """parse_model takes what Python code builds (controller.tools.topo): ints are ints, True is no number."""
    from controller.config import parse_model
    from tests.unit.test_config import edited, errors_of

    assert parse_model(edited(("networks/tenant-a/vlan", 0o100))).network_by_name["tenant-a"].vlan == 64
    assert errors_of(edited(("acls/web-in/0/stateful", "yes"))) == [
        "acls.web-in[0].stateful: expected true or false, got string 'yes'"
    ]
