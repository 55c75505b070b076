"""Topology spoofing by relay, on real OVS: a host bridging two switch ports never carries tenant traffic.

Field report: two bridges cabled on port 10 (declared); a host on port 5 of
each relayed the controller's own signed LLDP probes from one to the other,
the controller took s1:5-s2:5 for a link, preferred it, and tenant traffic
went through the host. Here the host is a namespace whose Linux bridge
forwards everything between its legs, LLDP included, with a packet capture
on each leg. Its third leg sits on s2:11, the end of a second declared
cable that is not plugged in, so it does get probes to relay (the
controller probes declared link ends only): it turns them into "links"
s1:5-s2:11 and s2:5-s2:11, which must be logged, counted and never used.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.tools.lab import ControllerProcess, Lab, free_port, port_stats, wait_until
from tests.ovs.metrics_client import total
from tests.ovs.test_isolation_ovs import BCAST, ETH_LLDP, ETH_TEST, Capture, Seen, eth, send

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]

CONFIG = """
controller: {{metrics_port: {metrics}, lldp_interval: 0.5}}
switches:
  s1: {{dpid: {d1}, bridge: {b1}}}
  s2: {{dpid: {d2}, bridge: {b2}}}
links:
  - [s1:10, s2:10]
  - [s1:11, s2:11]
networks: {{red: {{vlan: 100}}, blue: {{vlan: 200}}}}
vms:
  r1: {{switch: s1, port: 1, network: red}}
  u1: {{switch: s1, port: 2, network: blue}}
  r2: {{switch: s2, port: 1, network: red}}
  u2: {{switch: s2, port: 2, network: blue}}
"""
VLANS = {100, 200}
BURST = 20


def tenant_frames(frames: list[Seen], macs: set[str]) -> list[Seen]:
    """Frames with a tenant VLAN tag, or from or to a VM's MAC."""
    return [f for f in frames if any(vid in VLANS for _, vid in f.tags) or f.src in macs or f.raw[:6].hex(":") in macs]


def test_a_relay_between_switch_ports_carries_no_tenant_traffic(
    lab: Lab, controller_factory: Factory, tmp_path: Path
) -> None:
    d1, d2 = 0x7A, 0x7B
    metrics = free_port()
    b1, b2 = f"{lab.prefix}b1", f"{lab.prefix}b2"
    cfg = tmp_path / "net.yaml"
    cfg.write_text(CONFIG.format(metrics=metrics, b1=b1, b2=b2, d1=d1, d2=d2))
    ctl = controller_factory(cfg)
    for br, dpid in ((b1, d1), (b2, d2)):
        lab.add_bridge(br, dpid, ctl.port)
    lab.add_link(b1, 10, b2, 10)
    vms = [
        lab.add_host("r1", b1, 1, ip="10.83.0.1", mac="02:83:00:00:01:01"),
        lab.add_host("u1", b1, 2, ip="10.83.0.11", mac="02:83:00:00:02:01"),
        lab.add_host("r2", b2, 1, ip="10.83.0.2", mac="02:83:00:00:01:02"),
        lab.add_host("u2", b2, 2, ip="10.83.0.12", mac="02:83:00:00:02:02"),
    ]
    r1, u1, r2, u2 = vms
    legs = lab.add_relay("y", [(b1, 5), (b2, 5), (b2, 11)])
    captures = {leg.name: Capture(leg, tmp_path / f"{leg.name}.pcap") for leg in legs}
    for br in (b1, b2):
        ctl.wait_connected(br, 20)
    ctl.wait_for_log("link up", 20)

    # The relay does relay: s2:11's probes come out of its other legs into s1:5 and s2:5 ...
    wait_until(
        lambda: all(any(f.ethertype == ETH_LLDP for f in captures[f"y{i}"].frames()) for i in (0, 1)),
        10,
        message="the relay forwards the controller's probes",
    )
    # ... and the controller hears them there, reports them and uses none of them.
    for text in (
        "discovered link not used (not declared in links): s1:5 <-> s2:11",
        "discovered link not used (both ends on switch s2): s2:5 <-> s2:11",
        "declared link not discovered: s1:11 <-> s2:11",
    ):
        ctl.wait_for_log(text, 10)
    wait_until(lambda: total(metrics, "vmn_link_mismatches") == 3, 10, message="three mismatches counted")
    assert total(metrics, "vmn_links_up") == 1

    trunk_before = port_stats(b1)[10].tx_packets
    for a, b in ((r1, r2), (u1, u2)):
        wait_until(lambda a=a, b=b: a.ping(b), 20, message=f"{a.name} -> {b.name}")
        wait_until(lambda a=a, b=b: b.ping(a), 20, message=f"{b.name} -> {a.name}")
    assert not r1.ping(u2, count=2)
    for h in vms:  # broadcasts and unknown unicast, the frames a flood would put on any trunk
        send(
            h,
            [eth(BCAST, h.mac, ETH_TEST, b"VMN-RELAY"), eth("02:83:ff:ff:ff:ff", h.mac, ETH_TEST, b"VMN-RELAY")],
            BURST,
        )
    for a, b in ((r1, r2), (u1, u2)):
        assert a.ping(b, count=3), f"{a.name} -> {b.name} with the relay in place"
    assert port_stats(b1)[10].tx_packets - trunk_before >= 2 * BURST, "the declared cable carries the traffic"

    seen = {name: cap.stop() for name, cap in captures.items()}
    macs = {h.mac for h in vms}
    for name, frames in seen.items():
        found = tenant_frames(frames, macs)
        assert not found, f"relay leg {name} carried tenant frames: {[f.raw[:18].hex() for f in found[:5]]}"
    for br in (b1, b2):  # OVS sent the relay nothing at all out of port 5: no probe, no flood, no tenant frame
        assert port_stats(br)[5].tx_packets == 0, f"{br} output frames on port 5"
    assert total(metrics, "vmn_links_up") == 1
    assert total(metrics, "vmn_link_mismatches") == 3
    ups = [line for line in ctl.log_text().splitlines() if "link up" in line]
    assert ups and not [line for line in ups if re.search(r":(5|11)$", line)], ups
