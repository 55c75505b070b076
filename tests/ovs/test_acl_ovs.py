"""ACLs on real OVS: allow/deny by TCP/UDP/ICMP, stateful replies through
conntrack, hit counters on /metrics, and ``vmn trace`` agreeing with OVS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.config import load_model
from controller.tools.lab import ControllerProcess, Host, Lab, free_port, wait_until
from controller.tools.trace import Fabric, build_fabric
from tests.ovs.metrics_client import total
from tests.ovs.traffic import Case, exchange_works, start_servers, tcp_connects, trace_disagreements

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]

NETWORK = """
controller: {metrics_port: %(metrics)d, stats_interval: 0.5}
switches: {s1: {dpid: 0x71}, s2: {dpid: 0x72}}
links: [[s1:10, s2:10]]
networks:
  red: {vlan: 171, acl_in: [no-telnet]}
  blue: {vlan: 172}
vms:
  client: {switch: s1, port: 1, network: red, ip: 10.71.0.1/24, acl_in: [client-out]}
  web:    {switch: s1, port: 2, network: red, ip: 10.71.0.2/24}
  db:     {switch: s2, port: 3, network: red, ip: 10.71.0.3/24, acl_in: [deny-all]}
  ops:    {switch: s2, port: 4, network: red, ip: 10.71.0.4/24, acl_in: [ops-out]}
  guest:  {switch: s2, port: 5, network: blue, ip: 10.71.0.5/24}
acls:
  client-out:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow}
    - {match: {ip_proto: tcp, tcp_dst: 5432, ipv4_dst: 10.71.0.3}, action: allow, stateful: true}
    - {match: {ip_proto: udp, udp_dst: 53}, action: allow, stateful: true}
    - {match: {ip_proto: udp, udp_dst: 54}, action: allow}
    - {match: {ip_proto: icmp}, action: allow, stateful: true}
    - {match: {ip_proto: tcp, ipv4_dst: 10.71.0.4/32}, action: allow}
    - {action: deny}
  deny-all:
    - {action: deny}
  ops-out:
    - {match: {ip_proto: tcp}, action: allow}
    - {match: {ip_proto: udp}, action: allow}
  no-telnet:
    - {match: {ip_proto: tcp, tcp_dst: 23}, action: deny}
    - {action: allow}
"""
PLACES = {"client": ("b1", 1), "web": ("b1", 2), "db": ("b2", 3), "ops": ("b2", 4), "guest": ("b2", 5)}
SERVERS = {
    "client": ([7000], [7001]),
    "web": ([80, 23, 8080], [53, 54]),
    "db": ([5432, 80], [53]),
    "ops": ([80, 23, 9000], [53, 54]),
    "guest": ([80], []),
}


CASES = [
    Case("client", "web", "tcp", 80),
    Case("client", "web", "tcp", 8080),
    Case("client", "web", "tcp", 23),
    Case("client", "web", "udp", 53),
    Case("client", "web", "udp", 54),
    Case("client", "web", "icmp"),
    Case("client", "db", "tcp", 5432),
    Case("client", "db", "tcp", 80),
    Case("client", "db", "udp", 53),
    Case("client", "db", "icmp"),
    Case("client", "ops", "tcp", 9000),
    Case("client", "ops", "tcp", 23),
    Case("client", "ops", "udp", 54),
    Case("db", "client", "tcp", 7000),
    Case("db", "web", "icmp"),
    Case("web", "client", "tcp", 7000),
    Case("web", "client", "icmp"),
    Case("web", "ops", "tcp", 23),
    Case("web", "ops", "tcp", 80),
    Case("ops", "web", "tcp", 8080),
    Case("ops", "client", "udp", 7001),
    Case("client", "guest", "icmp"),
    Case("web", "db", "tcp", 5432),
    Case("ops", "db", "udp", 53),
]


@dataclass
class AclLab:
    lab: Lab
    ctl: ControllerProcess
    hosts: dict[str, Host]
    fabric: Fabric
    metrics: int

    def ip(self, name: str) -> str:
        return str(self.hosts[name].ip)

    def works(self, case: Case, timeout: float) -> bool:
        """Does the exchange of ``case`` (request and answer) complete on real OVS?"""
        return exchange_works(self.hosts[case.src], self.ip(case.dst), case.proto, case.port, timeout)


@pytest.fixture
def acl_lab(lab: Lab, controller_factory: Factory, tmp_path: Path) -> Iterator[AclLab]:
    metrics = free_port()
    cfg = tmp_path / "acl.yaml"
    cfg.write_text(NETWORK % {"metrics": metrics})
    ctl = controller_factory(cfg)
    b1 = lab.add_bridge("b1", 0x71, ctl.port)
    b2 = lab.add_bridge("b2", 0x72, ctl.port)
    lab.add_link("b1", 10, "b2", 10)
    model = load_model(cfg)
    hosts = {vm.name: lab.add_host(vm.name, PLACES[vm.name][0], PLACES[vm.name][1], ip=str(vm.ip)) for vm in model.vms}
    for name, (tcp, udp) in SERVERS.items():
        start_servers(hosts[name], tcp, udp)
    ctl.wait_connected(b1, 20)
    ctl.wait_connected(b2, 20)
    acl = AclLab(lab, ctl, hosts, build_fabric(model), metrics)
    # ARP is allowed everywhere: learn every host and fill the ARP caches
    wait_until(lambda: acl.works(Case("client", "web", "icmp"), 1), 20, message="client -> web ping")
    wait_until(lambda: acl.works(Case("web", "ops", "tcp", 80), 1), 20, message="web -> ops (link up)")
    for a in hosts.values():
        for b in hosts.values():
            if a is not b:
                a.ping(b, timeout=0.3)
    yield acl


def test_trace_agrees_with_ovs_on_every_case(acl_lab: AclLab) -> None:
    disagreements, expected = trace_disagreements(acl_lab.fabric, CASES, acl_lab.ip, acl_lab.works)
    assert sum(expected.values()) >= 8 and sum(not v for v in expected.values()) >= 8
    assert not disagreements, "\n".join(disagreements)


def test_stateful_rule_admits_replies_only(acl_lab: AclLab) -> None:
    client, db = acl_lab.hosts["client"], acl_lab.hosts["db"]
    assert wait_until(lambda: tcp_connects(client, "10.71.0.3", 5432), 6, message="stateful tcp")
    assert not tcp_connects(client, "10.71.0.3", 80, 0.5)  # allowed out, reply denied: no handshake
    assert not tcp_connects(db, "10.71.0.1", 7000, 0.5)  # same traffic initiated by db: denied
    assert not db.ping(client, timeout=0.5)
    assert client.ping(db)  # echo reply admitted by conntrack


def test_denies_are_silent_and_counters_move(acl_lab: AclLab) -> None:
    port = acl_lab.metrics
    client = acl_lab.hosts["client"]
    log_lines = acl_lab.ctl.log_text().count("\n")
    packet_ins = total(port, "vmn_packet_in_total", reason="learn")
    for _ in range(3):
        assert not tcp_connects(client, "10.71.0.2", 8080, 0.3)
    assert total(port, "vmn_packet_in_total", reason="learn") == packet_ins
    assert acl_lab.ctl.log_text().count("\n") == log_lines
    wait_until(
        lambda: total(port, "vmn_acl_rule_hits_total", acl="client-out", rule="6") >= 3,
        10,
        message="hits of the explicit deny (rule 6) on /metrics",
    )
    before = total(port, "vmn_acl_rule_hits_total", acl="client-out", rule="0")
    assert tcp_connects(client, "10.71.0.2", 80)
    wait_until(
        lambda: total(port, "vmn_acl_rule_hits_total", acl="client-out", rule="0") > before,
        10,
        message="rule 0 hits grow",
    )
