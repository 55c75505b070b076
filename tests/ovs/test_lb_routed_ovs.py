"""A load-balancer VIP reached from a routed network, on real OVS: two linked bridges.

The balancer lives in blue (backends on both bridges); router ``r`` joins
red and blue; green has a gateway but is on no router. A client in red
connects over TCP to the VIP through its gateway and is answered by both
backends (each greets with its name), so the NAT, the routing both ways and
the un-NAT of replies at the client work; green's client gets nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.tools.lab import ControllerProcess, Host, Lab, free_port, wait_until
from tests.ovs.metrics_client import total
from tests.ovs.traffic import fan_out, start_named_server

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]
VIP = "10.93.2.100"
PORT = 8080
NETWORK = """
controller: {metrics_port: %(metrics)d}
switches: {s1: {dpid: 0xb1}, s2: {dpid: 0xb2}}
links: [[s1:10, s2:10]]
networks:
  red: {vlan: 291, gateway: 10.93.1.1/24}
  blue: {vlan: 292, gateway: 10.93.2.1/24}
  green: {vlan: 293, gateway: 10.93.3.1/24}
vms:
  client: {switch: s1, port: 1, network: red, ip: 10.93.1.11/24, mac: "02:93:00:00:01:11"}
  web1: {switch: s1, port: 2, network: blue, ip: 10.93.2.11/24, mac: "02:93:00:00:02:11"}
  web2: {switch: s2, port: 3, network: blue, ip: 10.93.2.12/24, mac: "02:93:00:00:02:12"}
  outsider: {switch: s1, port: 4, network: green, ip: 10.93.3.11/24, mac: "02:93:00:00:03:11"}
routers:
  r: {networks: [red, blue]}
load_balancers:
  web:
    vip: 10.93.2.100
    network: blue
    protocol: tcp
    port: 8080
    backends: [web1, web2]
    health_check: {type: tcp, interval: 0.5, timeout: 0.4, fall: 2, rise: 2}
"""
HOSTS = {
    # name: (bridge, port, ip/prefix, mac, gateway)
    "client": ("y1", 1, "10.93.1.11/24", "02:93:00:00:01:11", "10.93.1.1"),
    "web1": ("y1", 2, "10.93.2.11/24", "02:93:00:00:02:11", "10.93.2.1"),
    "web2": ("y2", 3, "10.93.2.12/24", "02:93:00:00:02:12", "10.93.2.1"),
    "outsider": ("y1", 4, "10.93.3.11/24", "02:93:00:00:03:11", "10.93.3.1"),
}


@dataclass
class RoutedVipLab:
    hosts: dict[str, Host]
    metrics: int


@pytest.fixture
def routed_vip(lab: Lab, controller_factory: Factory, tmp_path: Path) -> Iterator[RoutedVipLab]:
    metrics = free_port()
    cfg = tmp_path / "routed-vip.yaml"
    cfg.write_text(NETWORK % {"metrics": metrics})
    ctl = controller_factory(cfg)
    y1 = lab.add_bridge("y1", 0xB1, ctl.port)
    y2 = lab.add_bridge("y2", 0xB2, ctl.port)
    lab.add_link("y1", 10, "y2", 10)
    hosts = {}
    for name, (bridge, port, ip, mac, gw) in HOSTS.items():
        host = lab.add_host(name, bridge, port, ip=ip, mac=mac)
        host.run(["ip", "route", "add", "default", "via", gw], check=True)
        hosts[name] = host
    for name in ("web1", "web2"):
        start_named_server(hosts[name], PORT, name)  # the lab stops them
    ctl.wait_connected(y1, 20)
    ctl.wait_connected(y2, 20)
    backends = ("10.93.2.11", "10.93.2.12")
    wait_until(
        lambda: all(total(metrics, "vmn_lb_backend_up", lb="web", backend=ip) == 1 for ip in backends),
        15,
        message="both backends up",
    )
    wait_until(lambda: hosts["client"].ping("10.93.2.12"), 15, message="client reaches web2 (routed, link up)")
    yield RoutedVipLab(hosts, metrics)


def wait_for_the_vip(client: Host) -> None:
    """Poll until one connection from ``client`` to the VIP is answered (a fresh source port each try)."""
    sports = iter(range(25000, 25100))
    wait_until(lambda: fan_out(client, VIP, PORT, next(sports), 1) != ["-"], 10, message="red reaches the VIP")


def test_a_routed_client_reaches_the_vip_and_both_backends_answer(routed_vip: RoutedVipLab) -> None:
    wait_for_the_vip(routed_vip.hosts["client"])
    answers = fan_out(routed_vip.hosts["client"], VIP, PORT, 26000, 20)
    counts = Counter(answers)
    assert len(answers) == 20 and counts["-"] == 0, answers  # every connection answered, from the VIP
    assert set(counts) == {"web1", "web2"}, counts  # spread over the backends of both bridges


def test_a_network_not_on_the_router_does_not_reach_the_vip(routed_vip: RoutedVipLab) -> None:
    wait_for_the_vip(routed_vip.hosts["client"])  # the VIP works: the refusal below is green's
    assert fan_out(routed_vip.hosts["outsider"], VIP, PORT, 27000, 3, timeout=0.5) == ["-"] * 3
