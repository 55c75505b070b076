"""/metrics on real OVS: every metric the operations issue names, with real values."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.tools.lab import ControllerProcess, Lab, free_port, wait_until
from tests.ovs.metrics_client import scrape, total
from tests.ovs.traffic import fan_out, start_named_server

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]
NETWORK = """
controller: {metrics_port: %(metrics)d, stats_interval: 0.5}
switches: {s1: {dpid: 0xa1}, s2: {dpid: 0xa2}}
links: [[s1:10, s2:10]]
networks: {red: {vlan: 201}}
vms:
  client: {switch: s1, port: 1, network: red, ip: 10.101.0.1/24, acl_in: [client-out]}
  web1: {switch: s1, port: 2, network: red, ip: 10.101.0.11/24, mac: "02:a1:00:00:00:11"}
  web2: {switch: s2, port: 3, network: red, ip: 10.101.0.12/24, mac: "02:a1:00:00:00:12"}
acls:
  client-out:
    - {match: {ip_proto: tcp, tcp_dst: 8080}, action: allow}
    - {match: {ip_proto: icmp}, action: allow}
load_balancers:
  web:
    vip: 10.101.0.100
    network: red
    protocol: tcp
    port: 8080
    backends: [web1, web2]
    health_check: {type: tcp, interval: 0.5, timeout: 0.4, fall: 2, rise: 2}
"""


def test_every_operations_metric_has_real_values(lab: Lab, controller_factory: Factory, tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "net.yaml"
    cfg.write_text(NETWORK % {"metrics": port})
    ctl = controller_factory(cfg)
    b1, b2 = lab.add_bridge("b1", 0xA1, ctl.port), lab.add_bridge("b2", 0xA2, ctl.port)
    lab.add_link("b1", 10, "b2", 10)
    client = lab.add_host("client", "b1", 1, ip="10.101.0.1")
    web1 = lab.add_host("web1", "b1", 2, ip="10.101.0.11", mac="02:a1:00:00:00:11")
    web2 = lab.add_host("web2", "b2", 3, ip="10.101.0.12", mac="02:a1:00:00:00:12")
    start_named_server(web1, 8080, "web1")
    start_named_server(web2, 8080, "web2")
    ctl.wait_connected(b1, 20)
    ctl.wait_connected(b2, 20)
    wait_until(lambda: client.ping(web2), 20, message="client -> web2 across the link")
    wait_until(lambda: total(port, "vmn_lb_backend_up", lb="web") == 2, 15, message="both backends up")
    assert set(fan_out(client, "10.101.0.100", 8080, 23000, 6)) <= {"web1", "web2"}
    os.kill(ctl.pid, signal.SIGHUP)
    wait_until(
        lambda: total(port, "vmn_acl_rule_hits_total", acl="client-out", rule="0") >= 6,
        10,
        message="ACL hits for the 6 connections",
    )
    wait_until(lambda: total(port, "vmn_config_reloads_total", result="ok") == 1, 10, message="reload counted")
    wait_until(
        lambda: total(port, "vmn_lb_backend_connections_total", lb="web") == 6,
        10,
        message="6 connections counted over the backends",
    )

    samples = scrape(port)

    def value(name: str, **labels: str) -> float:
        return total(port, name, **labels)

    assert value("vmn_switches_connected") == 2
    assert value("vmn_links_up") == 1
    assert value("vmn_packet_in_total", switch="a1", reason="learn") >= 1
    assert value("vmn_packet_in_total", reason="lldp") >= 2
    assert value("vmn_packet_in_total", reason="lb-probe") >= 4
    assert value("vmn_flow_mods_total", switch="a1", command="add") >= 20
    assert value("vmn_flows_installed", switch="a1", app="acl") >= 5
    assert value("vmn_flows_installed", switch="a2", app="lb") >= 5
    assert value("vmn_hosts_learned", network="red") == 3
    assert value("vmn_lb_backend_up", lb="web", backend="10.101.0.11") == 1
    assert value("vmn_lb_check_latency_seconds_count", lb="web", backend="10.101.0.12") >= 2
    assert value("vmn_acl_rule_hits_total", acl="client-out", rule="arp-allow") >= 1
    assert value("vmn_reconcile_seconds_count") == 2
    names = {name for name, _ in samples}
    assert {
        "vmn_switches_connected",
        "vmn_packet_in_total",
        "vmn_flow_mods_total",
        "vmn_flows_installed",
        "vmn_hosts_learned",
        "vmn_links_up",
        "vmn_config_reloads_total",
        "vmn_lb_backend_up",
        "vmn_acl_rule_hits_total",
    } <= names
