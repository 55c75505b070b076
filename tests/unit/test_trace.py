"""``vmn trace`` and the ACL hit counters."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main
from controller.metrics import Metrics, StatCounter

NET = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks: {red: {vlan: 100}, blue: {vlan: 200}}
vms:
  client: {switch: s1, port: 1, network: red, ip: 10.70.0.1/24, acl_in: [client-out]}
  db: {switch: s2, port: vnet3, network: red, ip: 10.70.0.3/24, acl_in: [deny-all]}
  guest: {switch: s2, port: 4, network: blue, ip: 10.70.0.4/24}
acls:
  client-out:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow}
    - {match: {ip_proto: tcp, tcp_dst: 5432, ipv4_dst: 10.70.0.3}, action: allow, stateful: true}
  deny-all:
    - {action: deny}
"""


@pytest.fixture
def netfile(tmp_path: Path) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(NET)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_stateful_allow_shows_rule_path_and_admitted_reply(netfile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "trace", str(netfile), "--from", "client", "--to", "10.70.0.3", "--tcp", "5432")
    assert code == 0
    assert out.splitlines() == [
        "verdict: allow (reply: allow)",
        "path: s1:1 -> s2:10 -> out s2:vnet3 (db)",
        "decided by: vm acl client-out rule 1 (allow, stateful)",
        "reply path: s2:vnet3 -> s1:10 -> out s1:1 (client)",
        "reply decided by: conntrack: reply of an allowed connection",
        "reply decided by: conntrack at delivery: reply of an allowed connection",
    ]


def test_stateless_allow_reply_denied_and_implicit_deny(netfile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "trace", str(netfile), "--from", "client", "--to", "10.70.0.3", "--tcp", "80")
    assert code == 0 and out.splitlines()[0] == "verdict: allow (reply: deny)"
    assert "reply decided by: vm acl deny-all rule 0 (deny)" in out
    code, out, _ = run(capsys, "trace", str(netfile), "--from", "client", "--to", "10.70.0.3", "--udp", "53")
    assert code == 1
    assert out.splitlines() == ["verdict: deny", "path: s1:1", "decided by: vm acl client-out implicit-deny (deny)"]


def test_other_network_is_unreachable(netfile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "trace", str(netfile), "--from", "guest", "--to", "10.70.0.1", "--icmp")
    assert code == 1 and out.startswith("verdict: deny\n")
    assert "(client)" not in out


def test_bad_input_is_named(netfile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(capsys, "trace", str(netfile), "--from", "nobody", "--to", "10.70.0.1")[2]
        == "vmn trace: unknown vm or uplink 'nobody'\n"
    )
    assert (
        run(capsys, "trace", str(netfile), "--from", "client", "--to", "10.70.0.1", "--tcp", "70000")[2]
        == "vmn trace: port 70000 is not in 0-65535\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(NET.replace("tcp_dst: 80}", "tcp_dst: 80, udp_dst: 5}"))
    code, _, err = run(capsys, "trace", str(bad), "--from", "client", "--to", "10.70.0.3")
    assert code == 2 and "acls.client-out[0].match.udp_dst" in err


def test_counters_count_increments_and_restart_from_zero() -> None:
    metrics = Metrics()
    counters: StatCounter[int] = StatCounter(metrics.acl_rule_hits)
    origins: dict[int, tuple[str, ...]] = {
        7: ("web", "0", "in"),
        8: ("web", "0", "in"),
        9: ("web", "implicit-deny", "in"),
    }
    assert counters.update(1, {7: 5, 9: 1, 42: 100}, origins) == 6
    assert counters.update(2, {8: 2}, origins) == 2  # same rule on another switch adds up
    assert counters.update(1, {7: 8, 9: 1}, origins) == 3
    assert counters.update(1, {7: 2, 9: 1}, origins) == 2  # flow re-added: counts from zero
    value = metrics.registry.get_sample_value("vmn_acl_rule_hits_total", {"acl": "web", "rule": "0", "direction": "in"})
    assert value == 5 + 2 + 3 + 2


LB_NET = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks: {red: {vlan: 100}}
vms:
  client: {switch: s1, port: 1, network: red, ip: 10.0.0.1/24}
  web1: {switch: s2, port: 2, network: red, ip: 10.0.0.11/24}
load_balancers:
  web: {vip: 10.0.0.100, network: red, protocol: tcp, port: 80, backends: [web1]}
"""


def test_trace_to_a_vip_reaches_a_backend_and_the_reply_comes_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lb.yaml"
    path.write_text(LB_NET)
    code, out, _ = run(capsys, "trace", str(path), "--from", "client", "--to", "10.0.0.100", "--tcp", "80")
    assert code == 0 and out.splitlines()[:2] == [
        "verdict: allow (reply: allow)",
        "path: s1:1 -> s2:10 -> out s2:2 (web1)",
    ]
    assert run(capsys, "trace", str(path), "--from", "client", "--to", "10.0.0.100", "--tcp", "81")[0] == 1


NET6 = """
switches: {s1: {dpid: 1}, s2: {dpid: 2}}
links: [[s1:10, s2:10]]
networks: {red: {vlan: 100}}
vms:
  client: {switch: s1, port: 1, network: red, mac: "02:00:00:00:00:01", ip: 10.70.0.1/24, ipv6: "2001:db8::1/64",
           acl_in: [client-out]}
  db: {switch: s2, port: 2, network: red, mac: "02:00:00:00:00:02", ipv6: "2001:db8::2/64", acl_in: [deny-all]}
acls:
  client-out:
    - {match: {ipv6_dst: "2001:db8::2", ip_proto: tcp, tcp_dst: 5432}, action: allow, stateful: true}
    - {match: {ip_proto: icmpv6, icmpv6_type: 128}, action: allow}
  deny-all:
    - {action: deny}
"""


def test_ipv6_targets_are_traced_from_the_vms_ipv6(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "net6.yaml"
    path.write_text(NET6)
    code, out, _ = run(capsys, "trace", str(path), "--from", "client", "--to", "2001:db8::2", "--tcp", "5432")
    assert code == 0
    assert out.splitlines() == [
        "verdict: allow (reply: allow)",
        "path: s1:1 -> s2:10 -> out s2:2 (db)",
        "decided by: vm acl client-out rule 0 (allow, stateful)",
        "reply path: s2:2 -> s1:10 -> out s1:1 (client)",
        "reply decided by: conntrack: reply of an allowed connection",
        "reply decided by: conntrack at delivery: reply of an allowed connection",
    ]
    code, out, _ = run(capsys, "trace", str(path), "--from", "client", "--to", "2001:db8::2", "--icmp")
    assert code == 0 and out.splitlines()[0] == "verdict: allow (reply: deny)"
    assert "reply decided by: vm acl deny-all rule 0 (deny)" in out
    assert (
        run(capsys, "trace", str(path), "--from", "db", "--to", "10.70.0.1")[2]
        == "vmn trace: vm 'db' has no ip in the network file\n"
    )
    assert (
        run(capsys, "trace", str(path), "--from", "client", "--to", "2001:db8::zz")[2]
        == "vmn trace: '2001:db8::zz' is not an IPv4 or IPv6 address\n"
    )
