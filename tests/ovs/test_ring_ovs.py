"""A ring of three real OVS bridges: discovery, no storm, reroute on a cut link."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

from tests.netlab import ControllerProcess, Host, Lab, Link, port_stats, wait_until
from tests.ovs.metrics_client import total
from tests.netlab import free_port

pytestmark = pytest.mark.ovs

RING = """
controller: {{metrics_port: {metrics}, lldp_interval: 0.5}}
switches:
  s1: {{dpid: 0x31, bridge: {b1}}}
  s2: {{dpid: 0x32, bridge: {b2}}}
  s3: {{dpid: 0x33, bridge: {b3}}}
links:
  - [s1:10, s2:11]
  - [s2:10, s3:11]
  - [s3:10, s1:11]
networks: {{red: {{vlan: 100}}, blue: {{vlan: 200}}}}
vms:
  r1: {{switch: s1, port: 1, network: red}}
  r2: {{switch: s2, port: 1, network: red}}
  r3: {{switch: s3, port: 1, network: red}}
  u1: {{switch: s1, port: 2, network: blue}}
  u3: {{switch: s3, port: 2, network: blue}}
"""

BURST = 200
SEND_BROADCASTS = (
    "import socket,sys; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[1], 0)); "
    "f=bytes.fromhex('ffffffffffff'+sys.argv[2].replace(':','')+'88b5')+bytes(46); "
    f"[s.send(f) for _ in range({BURST})]")


class Ring:
    def __init__(self, lab: Lab, ctl: ControllerProcess, bridges: list[str]) -> None:
        self.bridges = bridges
        self.links: list[Link] = [lab.add_link(bridges[i], 10, bridges[(i + 1) % 3], 11) for i in range(3)]
        self.red = [lab.add_host(f"r{i + 1}", bridges[i], 1, ip=f"10.70.0.{i + 1}") for i in range(3)]
        self.blue = [lab.add_host("u1", bridges[0], 2, ip="10.70.0.11"),
                     lab.add_host("u3", bridges[2], 2, ip="10.70.0.13")]
        for br in bridges:
            ctl.wait_connected(br, 20)

    def trunk_tx(self) -> int:
        return sum(s.tx_packets for br in self.bridges for p, s in port_stats(br).items() if p in (10, 11))


@pytest.fixture
def ring(lab: Lab, controller_factory: Callable[..., ControllerProcess], tmp_path: Path) -> tuple[Ring, int]:
    metrics = free_port()
    bridges = [f"{lab.prefix}b{i}" for i in (1, 2, 3)]
    cfg = tmp_path / "ring.yaml"
    cfg.write_text(RING.format(metrics=metrics, b1=bridges[0], b2=bridges[1], b3=bridges[2]))
    ctl = controller_factory(cfg)
    for i, br in enumerate(bridges):
        lab.add_bridge(br, 0x31 + i, ctl.port)
    the_ring = Ring(lab, ctl, bridges)
    wait_until(lambda: total(metrics, "vmn_links_up") == 3, 20, message="three links discovered")
    assert total(metrics, "vmn_link_mismatches") == 0
    return the_ring, metrics


def _all_reach(hosts: list[Host]) -> None:
    for a in hosts:
        for b in hosts:
            if a is not b:
                wait_until(lambda: a.ping(b), 15, message=f"{a.name} -> {b.name}")


def test_ring_connects_each_network_and_a_broadcast_burst_does_not_storm(ring: tuple[Ring, int]) -> None:
    r, _ = ring
    _all_reach(r.red)
    _all_reach(r.blue)
    assert not r.red[0].ping(r.blue[0], count=2)
    rx_before = [port_stats(h.bridge)[1].tx_packets for h in r.red[1:]]
    tx_before = r.trunk_tx()
    src = r.red[0]
    src.run(["/usr/bin/python3", "-c", SEND_BROADCASTS, src.iface, src.mac], check=True)
    wait_until(lambda: all(port_stats(h.bridge)[1].tx_packets - b >= BURST
                           for h, b in zip(r.red[1:], rx_before)), 10,
               message="every red VM receives the burst")
    crossings = r.trunk_tx() - tx_before
    # A loop-free tree of 2 links: each frame crosses each tree link once (plus LLDP probes).
    assert 2 * BURST <= crossings <= 2 * BURST + 60, crossings
    blue_rx = [port_stats(h.bridge)[2].tx_packets for h in r.blue]
    assert all(n < BURST for n in blue_rx), "the burst must not reach the blue network"


def test_cut_link_traffic_moves_to_the_other_way_round(ring: tuple[Ring, int], lab: Lab) -> None:
    r, _ = ring
    a, b = r.red[0], r.red[1]
    wait_until(lambda: a.ping(b), 15, message="r1 -> r2")
    proc = a.popen(["ping", "-n", "-i", "0.01", "-c", "400", "-W", "1", b.ip or ""])
    wait_until(lambda: True, 1)
    import time
    time.sleep(1.0)
    lab.set_port_down(r.links[0].iface_a)  # cut s1 <-> s2
    out, _ = proc.communicate(timeout=30)
    sent, got = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())  # type: ignore[union-attr]
    gap_ms = (sent - got) * 10
    print(f"failover gap through the controller: ~{gap_ms} ms ({sent - got} of {sent} pings lost)")
    wait_until(lambda: a.ping(b), 10, message="r1 reaches r2 the long way round")
    assert got > 0 and gap_ms < 1000, out
    lab.set_port_up(r.links[0].iface_a)
    wait_until(lambda: a.ping(b), 15, message="link back")
