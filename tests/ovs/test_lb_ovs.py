"""The load balancer on real OVS: weighted spread over backends on two
bridges, health checks taking a dead backend out and back, established
connections staying put, VIP ARP answered by the switch."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apps.lb.probe import vip_mac
from controller.tools.lab import ControllerProcess, Host, Lab, free_port, wait_until
from tests.ovs.metrics_client import total
from tests.ovs.traffic import fan_out, start_named_server

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]
VIP = "10.81.0.100"
PORT = 8080
NETWORK = """
controller: {metrics_port: %(metrics)d}
switches: {s1: {dpid: 0x81}, s2: {dpid: 0x82}}
links: [[s1:10, s2:10]]
networks: {red: {vlan: 181}}
vms:
  client: {switch: s1, port: 1, network: red, ip: 10.81.0.1/24}
  web1: {switch: s1, port: 2, network: red, ip: 10.81.0.11/24, mac: "02:81:00:00:00:11"}
  web2: {switch: s2, port: 3, network: red, ip: 10.81.0.12/24, mac: "02:81:00:00:00:12"}
  web3: {switch: s2, port: 4, network: red, ip: 10.81.0.13/24}
load_balancers:
  web:
    vip: 10.81.0.100
    network: red
    protocol: tcp
    port: 8080
    backends: [web1, web2, {vm: web3, weight: 2}]
    health_check: {type: tcp, interval: 0.5, timeout: 0.4, fall: 2, rise: 2}
"""
FALL_BOUND = 2 * 0.5 + 1.0  # fall * interval + 1 s


@dataclass
class LbLab:
    lab: Lab
    ctl: ControllerProcess
    hosts: dict[str, Host]
    servers: dict[str, subprocess.Popen[str]]
    metrics: int

    def backend_up(self, name: str) -> float:
        ip = {"web1": "10.81.0.11", "web2": "10.81.0.12", "web3": "10.81.0.13"}[name]
        return total(self.metrics, "vmn_lb_backend_up", lb="web", backend=ip)


@pytest.fixture
def lb_lab(lab: Lab, controller_factory: Factory, tmp_path: Path) -> Iterator[LbLab]:
    metrics = free_port()
    cfg = tmp_path / "lb.yaml"
    cfg.write_text(NETWORK % {"metrics": metrics})
    ctl = controller_factory(cfg)
    b1 = lab.add_bridge("b1", 0x81, ctl.port)
    b2 = lab.add_bridge("b2", 0x82, ctl.port)
    lab.add_link("b1", 10, "b2", 10)
    hosts = {
        "client": lab.add_host("client", "b1", 1, ip="10.81.0.1"),
        "web1": lab.add_host("web1", "b1", 2, ip="10.81.0.11", mac="02:81:00:00:00:11"),
        "web2": lab.add_host("web2", "b2", 3, ip="10.81.0.12", mac="02:81:00:00:00:12"),
        "web3": lab.add_host("web3", "b2", 4, ip="10.81.0.13"),
    }
    servers = {name: start_named_server(hosts[name], PORT, name) for name in ("web1", "web2", "web3")}
    ctl.wait_connected(b1, 20)
    ctl.wait_connected(b2, 20)
    lb = LbLab(lab, ctl, hosts, servers, metrics)
    wait_until(lambda: hosts["client"].ping("10.81.0.13"), 20, message="client reaches web3 (link up)")
    wait_until(lambda: all(lb.backend_up(n) == 1 for n in ("web1", "web2", "web3")), 15, message="all backends up")
    yield lb


def test_vip_answers_arp_from_the_switch_and_spreads_by_weight(lb_lab: LbLab) -> None:
    client = lb_lab.hosts["client"]
    learn_ins = total(lb_lab.metrics, "vmn_packet_in_total", reason="learn")
    client.ping(VIP, timeout=0.5)  # the VIP answers no ping, but ARP resolves it
    neigh = wait_until(lambda: client.run(["ip", "neigh", "show", VIP]).stdout, 5, message="VIP in ARP cache")
    assert f"lladdr {vip_mac(VIP)}" in neigh, neigh
    assert total(lb_lab.metrics, "vmn_packet_in_total", reason="learn") == learn_ins  # answered by the switch
    answers = fan_out(client, VIP, PORT, 20000, 40)
    counts = Counter(answers)
    assert len(answers) == 40 and set(counts) == {"web1", "web2", "web3"}, counts
    assert counts["web3"] > counts["web1"] and counts["web3"] > counts["web2"], counts


def test_dead_backend_leaves_within_bound_and_comes_back(lb_lab: LbLab) -> None:
    client = lb_lab.hosts["client"]
    lb_lab.servers["web2"].kill()
    lb_lab.servers["web2"].wait()
    killed = time.monotonic()
    wait_until(lambda: lb_lab.backend_up("web2") == 0, 10, message="web2 down on /metrics")
    assert time.monotonic() - killed <= FALL_BOUND + 0.5
    answers = fan_out(client, VIP, PORT, 21000, 30)
    assert answers.count("-") == 0 and "web2" not in answers and set(answers) == {"web1", "web3"}, answers
    assert "backend 10.81.0.12 down" in lb_lab.ctl.log_text()
    lb_lab.servers["web2"] = start_named_server(lb_lab.hosts["web2"], PORT, "web2")
    wait_until(lambda: lb_lab.backend_up("web2") == 1, 10, message="web2 back up")
    assert "backend 10.81.0.12 up" in lb_lab.ctl.log_text()
    assert "web2" in fan_out(client, VIP, PORT, 22000, 30)


def test_established_connection_stays_when_another_backend_goes(lb_lab: LbLab) -> None:
    client = lb_lab.hosts["client"]
    script = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(s.recv(64).decode().strip(), flush=True)
for line in sys.stdin:
    s.sendall(line.encode())
    print(s.recv(64).decode().strip(), flush=True)
"""
    long_lived = subprocess.Popen(
        ["ip", "netns", "exec", client.netns, sys.executable, "-c", script, VIP, str(PORT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert long_lived.stdout is not None and long_lived.stdin is not None
        backend = long_lived.stdout.readline().strip()
        assert backend in ("web1", "web2", "web3")
        others = [n for n in ("web1", "web2", "web3") if n != backend]
        victim = others[0]
        lb_lab.servers[victim].kill()
        lb_lab.servers[victim].wait()
        wait_until(lambda: lb_lab.backend_up(victim) == 0, 10, message=f"{victim} down")
        for i in range(5):
            long_lived.stdin.write(f"hello {i}\n")
            long_lived.stdin.flush()
            assert long_lived.stdout.readline().strip() == f"hello {i}"
    finally:
        long_lived.kill()
        long_lived.wait()


def test_a_backend_reaches_its_own_vip(lb_lab: LbLab) -> None:
    """Hairpin: the group may send web2's own connection back to web2; it is answered, from the VIP."""
    web2 = lb_lab.hosts["web2"]
    answers = fan_out(web2, VIP, PORT, 24000, 30)
    counts = Counter(answers)
    assert counts["-"] == 0 and counts["web2"] > 0, counts  # every one answered, some by web2 itself
