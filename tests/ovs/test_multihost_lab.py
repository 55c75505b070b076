"""Tests of the multi-host lab: emulated hypervisors, each with its own OVS, on one machine.

One network without conntrack across two hypervisors cabled like a
declared link; and the underlay the tunnels will ride on.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.tools.lab import ControllerProcess, MultiHostLab, flows, free_port, wait_until
from tests.ovs.metrics_client import total
from tests.ovs.traffic import start_servers, tcp_connects

pytestmark = pytest.mark.ovs

Factory = Callable[..., ControllerProcess]

NET = """
controller: {{metrics_port: {metrics}, lldp_interval: 0.5}}
switches: {{s1: {{dpid: 0x51}}, s2: {{dpid: 0x52}}}}
links: [[s1:10, s2:10]]
networks: {{red: {{vlan: 100}}}}
vms:
  a: {{switch: s1, port: 1, network: red, ip: 10.81.0.1/24, mac: "02:81:00:00:00:01"}}
  b: {{switch: s2, port: 1, network: red, ip: 10.81.0.2/24, mac: "02:81:00:00:00:02"}}
"""


def running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (PID 1 here reaps orphans seconds late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_removed(lab: MultiHostLab, netns: list[str], pids: list[int]) -> None:
    """Nothing ``lab`` made is left: directory, namespaces, daemons, root-side links."""
    assert not lab.dir.exists()
    existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert not set(netns) & set(existing)
    assert pids and not [pid for pid in pids if running(pid)]
    root_links = [lab.mgmt_bridge] + [f"{lab.prefix}{name}m" for name in ("hv1", "hv2", "hv3")]
    assert not [link for link in root_links if Path(f"/sys/class/net/{link}").exists()]


def test_vms_on_two_hypervisors_reach_each_other_over_a_cable(
    multihost: MultiHostLab, controller_factory: Factory, tmp_path: Path
) -> None:
    metrics = free_port()
    cfg = tmp_path / "net.yaml"
    cfg.write_text(NET.format(metrics=metrics))
    ctl = controller_factory(cfg, listen_host=multihost.controller_ip)
    hv1, hv2 = multihost.add_hypervisor("hv1"), multihost.add_hypervisor("hv2")
    hv1.add_bridge("br-int", 0x51, ctl.port)
    hv2.add_bridge("br-int", 0x52, ctl.port)
    cable = multihost.link((hv1, "br-int", 10), (hv2, "br-int", 10))
    a = hv1.add_vm("a", "br-int", 1, ip="10.81.0.1/24", mac="02:81:00:00:00:01")
    b = hv2.add_vm("b", "br-int", 1, ip="10.81.0.2/24", mac="02:81:00:00:00:02")
    for hv in (hv1, hv2):
        ctl.wait_connected("br-int", 20, vsctl=hv.vsctl_cmd)
    wait_until(lambda: total(metrics, "vmn_links_up") == 1, 20, message="LLDP finds the cable")
    wait_until(lambda: a.ping(b), 15, message="a -> b across hypervisors")
    assert b.ping(a, count=3)
    start_servers(b, tcp=[5001])
    assert tcp_connects(a, "10.81.0.2", 5001), "TCP across hypervisors (checksum offload off)"

    # Two separate OVS instances, neither of them the system one.
    assert hv1.vsctl("list-br").split() == ["br-int"] == hv2.vsctl("list-br").split()
    assert "dl_dst=02:81:00:00:00:02" in "\n".join(hv1.dump_flows("br-int"))
    # the dumps helpers take the hypervisor's socket for a bridge name
    assert {f.identity for f in flows(hv2.target("br-int"))} == {f.identity for f in hv2.flows("br-int")}
    assert hv1.ofctl("show", "br-int").count("dpid:0000000000000051") == 1
    system = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout
    assert multihost.prefix not in system
    assert hv1.dump_conntrack() == []  # no conntrack in this network

    multihost.set_cable(cable, up=False)
    wait_until(lambda: total(metrics, "vmn_links_up") == 0, 10, message="the cut cable goes down")
    assert not a.ping(b)
    multihost.set_cable(cable, up=True)
    wait_until(lambda: a.ping(b), 15, message="a -> b once the cable is back")


def test_hypervisors_reach_each_other_over_the_underlay(require_ovs: None) -> None:
    with MultiHostLab() as lab:
        hvs = [lab.add_hypervisor(f"hv{i}") for i in (1, 2, 3)]
        for i, hv in enumerate(hvs, 1):
            assert lab.underlay(hv, f"172.31.0.{i}") == f"172.31.0.{i}"
        hv1 = hvs[0]
        wait_until(lambda: hv1.ping("172.31.0.2"), 10, message="hv1 -> hv2 on the underlay")
        assert hv1.ping("172.31.0.3") and hvs[2].ping("172.31.0.2")
        assert hv1.ping("172.31.0.2", size=1600 - 28), "a 1600-byte underlay MTU"
        # ovs-vswitchd knows the connected route (what tunnels are routed by)
        assert "172.31.0.0/24 dev br-phy" in hv1.appctl("ovs/route/show")
        lab.set_underlay(hvs[1], up=False)
        assert not hv1.ping("172.31.0.2") and hv1.ping("172.31.0.3")
        lab.set_underlay(hvs[1], up=True)
        wait_until(lambda: hv1.ping("172.31.0.2"), 10, message="hv2 back on the underlay")
        netns = [hv.netns for hv in hvs] + [lab.underlay_netns]
        pids = [int(p.read_text()) for p in lab.dir.glob("*/*.pid")]
        assert len(pids) == 6  # an ovsdb-server and an ovs-vswitchd per hypervisor
    assert_removed(lab, netns, pids)


def test_everything_is_removed_when_the_body_fails(require_ovs: None) -> None:
    with pytest.raises(RuntimeError, match="boom"), MultiHostLab() as lab:
        hv = lab.add_hypervisor("hv1")
        hv.add_bridge("br-int", 0x61, None, fail_mode="standalone")
        vm = hv.add_vm("a", "br-int", 1, ip="10.82.0.1")
        with pytest.raises(ValueError, match="bridge 'br-x' is not on hypervisor hv1"):
            hv.add_vm("b", "br-x", 2)
        with pytest.raises(ValueError, match="name 'hv1' already used"):
            lab.add_hypervisor("hv1")
        pids = [int(p.read_text()) for p in lab.dir.glob("*/*.pid")]
        netns = [hv.netns, vm.netns]
        raise RuntimeError("boom")
    assert_removed(lab, netns, pids)
