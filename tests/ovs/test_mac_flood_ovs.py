"""A VM flooding new source MACs cannot starve learning for the others."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from controller.tools.lab import ControllerProcess, Lab, free_port, sh, wait_until
from tests.ovs.metrics_client import total

pytestmark = pytest.mark.ovs

FLOOD_SECONDS = 6
MAC_FLOOD = (
    "import os,socket,sys,time; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[1], 0)); "
    "end=time.time()+float(sys.argv[2]); n=0\n"
    "while time.time()<end:\n"
    " f=b'\\xff'*6+b'\\x02'+os.urandom(5)+b'\\x88\\xb5'+bytes(46); s.send(f); n+=1\n"
    "print(n)"
)


def test_mac_flood_from_one_vm_does_not_stop_others(
    lab: Lab, controller_factory: Callable[..., ControllerProcess], tmp_path: Path
) -> None:
    metrics = free_port()
    cfg = tmp_path / "net.yaml"
    cfg.write_text(f"""
controller: {{metrics_port: {metrics}, max_hosts_per_port: 8, packet_in_rate: 200}}
switches: {{s1: {{dpid: 0x41}}}}
networks: {{red: {{vlan: 100}}}}
vms:
  bad: {{switch: s1, port: 1, network: red}}
  h2: {{switch: s1, port: 2, network: red}}
  h3: {{switch: s1, port: 3, network: red}}
""")
    ctl = controller_factory(cfg)
    br = lab.add_bridge("b1", 0x41, ctl.port)
    bad = lab.add_host("bad", "b1", 1)
    h2 = lab.add_host("h2", "b1", 2, ip="10.64.0.2")
    h3 = lab.add_host("h3", "b1", 3, ip="10.64.0.3")
    ctl.wait_connected(br, 20)
    wait_until(
        lambda: "meter=1" in sh(["ovs-ofctl", "-O", "OpenFlow13", "dump-meters", br]).stdout,
        10,
        message="packet-in meter installed",
    )
    flood = bad.popen(["/usr/bin/python3", "-c", MAC_FLOOD, bad.iface, str(FLOOD_SECONDS)])
    try:
        ctl.wait_for_log("learning stopped there", 5)
        wait_until(lambda: h2.ping(h3), FLOOD_SECONDS - 1, message="h2 and h3 learn and talk during the flood")
        assert flood.poll() is None, "the check must happen while the flood is still running"
    finally:
        out, _ = flood.communicate(timeout=FLOOD_SECONDS + 10)
    sent = int(out.strip() or 0)
    assert sent > 1000 * FLOOD_SECONDS, f"flood too weak to mean anything: {sent} frames"
    assert total(metrics, "vmn_hosts_learned") <= 8 + 2
    assert total(metrics, "vmn_packet_in_total") < sent / 10  # meter and port lock kept it away
    assert ctl.alive() and h2.ping(h3)
