"""Port mirroring on real OVS: a tap on another bridge sees one VM's requests and replies, and nothing else.

Two bridges cabled port 10 to port 10; web1 and web2 on the first, db and
the tap on the second. The tap captures (tcpdump) while web1 and web2 ping
db; it must see web1's echo requests and db's replies to web1, untagged,
and nothing of web2. Frames the tap sends reach nobody.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from controller.tools.lab import ControllerProcess, Lab, wait_until
from tests.ovs.test_isolation_ovs import (
    BCAST,
    ETH_IPV4,
    ETH_TEST,
    Capture,
    Seen,
    eth,
    ipv4_udp,
    send,
    start_two_switches,
)

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]
WEB1, WEB2, DB, TAP = "02:00:00:00:71:01", "02:00:00:00:71:02", "02:00:00:00:71:03", "02:00:00:00:71:09"

NET = """
controller: {{metrics_port: 0, lldp_interval: 0.5}}
switches:
  s1: {{dpid: {d1}, bridge: {b1}}}
  s2: {{dpid: {d2}, bridge: {b2}}}
links: [[s1:10, s2:10]]
networks: {{red: {{vlan: 171}}}}
vms:
  web1: {{switch: s1, port: 1, network: red, mac: "02:00:00:00:71:01", ip: 10.71.0.1/24}}
  web2: {{switch: s1, port: 2, network: red, mac: "02:00:00:00:71:02", ip: 10.71.0.2/24}}
  db: {{switch: s2, port: 1, network: red, mac: "02:00:00:00:71:03", ip: 10.71.0.3/24}}
mirrors:
  tap: {{switch: s2, port: 20, vms: [web1], direction: both}}
"""


def icmp_echo(frame: Seen) -> tuple[str, str, int] | None:
    """(IPv4 source, destination, ICMP type) of an ICMP frame, else None."""
    src = frame.ipv4_src()
    if src is None or frame.payload[9] != 1:
        return None
    dst = ".".join(str(b) for b in frame.payload[16:20])
    return src, dst, frame.payload[(frame.payload[0] & 0x0F) * 4]


def test_tap_sees_the_vms_requests_and_replies_and_cannot_send(
    lab: Lab, controller_factory: Factory, tmp_path: Path
) -> None:
    ctl, b1, b2 = start_two_switches(lab, controller_factory, tmp_path, NET, (0x71, 0x72))
    web1 = lab.add_host("web1", b1, 1, ip="10.71.0.1", mac=WEB1)
    web2 = lab.add_host("web2", b1, 2, ip="10.71.0.2", mac=WEB2)
    db = lab.add_host("db", b2, 1, ip="10.71.0.3", mac=DB)
    tap = lab.add_host("tap", b2, 20, mac=TAP)
    wait_until(lambda: web1.ping(db) and web2.ping(db), 30, message="web1 and web2 reach db")
    tap_capture = Capture(tap, tmp_path / "tap.pcap")
    db_capture = Capture(db, tmp_path / "db.pcap")
    assert web1.ping(db, count=3, timeout=2)
    assert web2.ping(db, count=3, timeout=2)
    marker = b"VMN-FROM-TAP"
    send(tap, [eth(BCAST, TAP, ETH_TEST, marker), eth(DB, TAP, ETH_TEST, marker)], count=3)
    seen_by_db = db_capture.stop()
    # A sentinel web1 sends (as itself: port security) is copied to the tap: it flushes the tap's capture.
    sentinel = b"VMN-SENTINEL-web1"
    send(web1, [eth(DB, WEB1, ETH_IPV4, ipv4_udp("10.71.0.1", "10.71.0.3", sentinel))])
    wait_until(
        lambda: any(sentinel in f.payload for f in tap_capture.frames()),
        10,
        message="web1's sentinel copied to the tap",
    )
    tap_capture.proc.terminate()
    tap_capture.proc.communicate(timeout=10)
    frames = tap_capture.frames()

    echoes = [e for e in map(icmp_echo, frames) if e is not None]
    assert echoes.count(("10.71.0.1", "10.71.0.3", 8)) >= 3, echoes
    assert echoes.count(("10.71.0.3", "10.71.0.1", 0)) >= 3, echoes
    assert not [e for e in echoes if "10.71.0.2" in e[:2]], "the tap saw web2's traffic"
    assert not [f for f in frames if f.src == WEB2], "the tap saw a frame of web2"
    assert all(not f.tags for f in frames), "copies leave the tap untagged"
    assert not [f for f in seen_by_db if marker in f.payload], "a frame sent by the tap was delivered"
    assert ctl.alive()
