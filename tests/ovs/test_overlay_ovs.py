"""The overlay on real OVS: three emulated hypervisors joined by VXLAN tunnels over a veth underlay.

One lab for the module (:func:`fabric`): hypervisors hv1..hv3, each its own
``ovsdb-server`` and ``ovs-vswitchd`` in its own namespace, on a 1600-byte
underlay, provisioned only by ``vmn provision FILE --host H`` (bridges,
tunnel ports with BFD, the patch pair of hv1's ``links`` entry, the VM
interfaces). Networks: ``red`` and ``blue`` (plain) with a VM on every host,
``web`` (tracked: stateful ACLs and a load balancer) with a client on hv1 and
two backends on hv2 and hv3.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.config import load_model
from controller.config.overlay import vm_mtu
from controller.tools.lab import REPO_ROOT, ControllerProcess, MultiHostLab, free_port, wait_until
from controller.tools.lab.hypervisor import VM, Hypervisor
from tests.ovs.metrics_client import total
from tests.ovs.traffic import fan_out, start_named_server, start_servers, tcp_connects

pytestmark = pytest.mark.ovs

CONFIG = """
controller: {{metrics_port: {metrics}, lldp_interval: 0.5, api_port: {api}, api_token_file: token}}
hosts:
  hv1: {{tunnel_ip: 172.31.0.1, switch: s1}}
  hv2: {{tunnel_ip: 172.31.0.2, switch: s2}}
  hv3: {{tunnel_ip: 172.31.0.3, switch: s3}}
overlay: {{type: vxlan, mtu: 1600}}
switches:
  s1: {{dpid: 0x71, bridge: br-int}}
  s2: {{dpid: 0x72, bridge: br-int}}
  s3: {{dpid: 0x73, bridge: br-int}}
  s4: {{dpid: 0x74, bridge: br-vm, host: hv1}}
links: [[s1:int-vm, s4:vm-int]]
networks:
  red: {{vlan: 100, vni: 5100}}
  blue: {{vlan: 200}}
  web: {{vlan: 300, vni: 5300}}
vms:
{vms}
acls:
  client:
    - {{match: {{ip_proto: tcp, tcp_dst: 80}}, action: allow, stateful: true}}
    - {{action: deny}}
  server:
    - {{match: {{ip_proto: tcp, tcp_dst: 80}}, action: allow, stateful: true}}
    - {{match: {{ip_proto: icmp}}, action: allow}}
    - {{action: deny}}
  nothing:
    - {{action: deny}}
load_balancers:
  web:
    vip: 10.93.0.100
    network: web
    protocol: tcp
    port: 80
    backends: [w2, w3]
    health_check: {{type: tcp, interval: 0.5, timeout: 0.3, fall: 2, rise: 1}}
"""
# name: (host, switch, bridge, network, ip, extra keys); red and blue share a subnet (isolation shows)
VMS: dict[str, tuple[str, str, str, str, str, str]] = {
    "r1": ("hv1", "s4", "br-vm", "red", "10.91.0.1", ""),
    "r2": ("hv2", "s2", "br-int", "red", "10.91.0.2", ""),
    "r3": ("hv3", "s3", "br-int", "red", "10.91.0.3", ""),
    "b1": ("hv1", "s1", "br-int", "blue", "10.91.0.11", ""),
    "b2": ("hv2", "s2", "br-int", "blue", "10.91.0.12", ""),
    "b3": ("hv3", "s3", "br-int", "blue", "10.91.0.13", ""),
    "c1": ("hv1", "s4", "br-vm", "web", "10.93.0.1", ", acl_in: [client], acl_out: [nothing]"),
    "w2": ("hv2", "s2", "br-int", "web", "10.93.0.2", ", acl_out: [server]"),
    "w3": ("hv3", "s3", "br-int", "web", "10.93.0.3", ", acl_out: [server]"),
    "mv": ("hv2", "s2", "br-int", "red", "10.91.0.9", ""),
}
TOKEN = "overlay-test-token"
CUT = r"""
import signal, socket, struct, subprocess, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
old, new, mac, ip = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3].replace(":", "")), sys.argv[4]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((new, 0))
addr = socket.inet_aton(ip)
garp = b"\xff" * 6 + mac + struct.pack("!HHHBBH", 0x0806, 1, 0x0800, 6, 4, 2) + mac + addr + b"\xff" * 6 + addr
print("ready", flush=True)
signal.sigwait({signal.SIGUSR1})
batch = f"address del {ip}/24 dev {old}\naddress add {ip}/24 dev {new}\n"  # the source tap goes later
subprocess.run(["ip", "-batch", "-"], input=batch.encode(), check=True)
for _ in range(3):  # what QEMU does after a live migration (it sends RARP; a gratuitous ARP works alike)
    s.send(garp.ljust(60, b"\0"))
    time.sleep(0.002)
print("done", flush=True)
"""


@dataclass
class Fabric:
    lab: MultiHostLab
    ctl: ControllerProcess
    hvs: dict[str, Hypervisor]
    vms: dict[str, VM]
    config: Path
    metrics: int
    api: int
    first: dict[str, str]
    """What the first ``vmn provision`` printed, per host."""


def mac(i: int) -> str:
    return f"02:93:00:00:00:{i:02x}"


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    from tests.conftest import _ovs_unavailable_reason

    reason = _ovs_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    config = tmp_path_factory.mktemp("overlay") / "net.yaml"
    (config.parent / "token").write_text(TOKEN)
    metrics, api = free_port(), free_port()
    with MultiHostLab() as lab:
        hvs = {name: lab.add_hypervisor(name) for name in ("hv1", "hv2", "hv3")}
        for i, hv in enumerate(hvs.values(), 1):
            lab.underlay(hv, f"172.31.0.{i}", mtu=1600)
        vms: dict[str, VM] = {}
        lines = []
        for i, (name, (host, switch, bridge, net, ip, extra)) in enumerate(VMS.items(), 1):
            vm = hvs[host].add_vm(name, bridge, None, ip=f"{ip}/24", mac=mac(i), attach=False)
            vms[name] = vm
            lines.append(
                f'  {name}: {{switch: {switch}, port: {vm.port}, network: {net}, ip: {ip}/24, mac: "{mac(i)}"{extra}}}'
            )
        config.write_text(CONFIG.format(metrics=metrics, api=api, vms="\n".join(lines)))
        ctl = ControllerProcess(config, listen_host=lab.controller_ip)
        ctl.start()
        try:
            first = {}
            for name, hv in hvs.items():
                done = hv.provision(config, name, ctl.port)
                assert done.returncode == 0, done.stderr
                first[name] = done.stdout
            for hv in hvs.values():  # warm the underlay neighbour caches (multihost.md)
                for other in hvs.values():
                    if other is not hv:
                        assert other.underlay_ip is not None
                        wait_until(lambda hv=hv, o=other.underlay_ip: hv.ping(o), 10, message="underlay")
            wait_until(lambda: total(metrics, "vmn_links_up") == 4, 30, message="3 tunnels and the patch found")
            yield Fabric(lab, ctl, hvs, vms, config, metrics, api, first)
        finally:
            ctl.stop()
            print(ctl.log_text()[-6000:])
            ctl.log_path.unlink(missing_ok=True)


def test_provision_made_bridges_tunnels_patches_and_attached_vms_and_a_second_run_changes_nothing(
    fabric: Fabric,
) -> None:
    hv1 = fabric.hvs["hv1"]
    out = fabric.first["hv1"]
    assert "bridge br-int: created" in out and "bridge br-vm: created" in out
    assert "port vxlan-ac1f0002 (tunnel to host hv2): created on br-int" in out
    assert "port int-vm (patch to s4:vm-int): created on br-int" in out
    assert f"vm r1: {fabric.vms['r1'].port} attached to br-vm" in out
    assert "br-vm" not in fabric.first["hv2"] and "vxlan-ac1f0001" in fabric.first["hv2"]
    assert hv1.vsctl("get", "interface", "vxlan-ac1f0003", "options:remote_ip").strip() == '"172.31.0.3"'
    assert hv1.vsctl("get", "interface", "vxlan-ac1f0003", "bfd:enable").strip() == '"true"'
    assert hv1.vsctl("get", "interface", "vm-int", "options:peer").strip() == "int-vm"
    for name, hv in fabric.hvs.items():
        again = hv.provision(fabric.config, name, fabric.ctl.port)
        assert again.returncode == 0 and again.stdout.strip() == "nothing to change", again.stdout
    bad = hv1.provision(fabric.config, "hv9", fabric.ctl.port)
    assert bad.returncode == 1 and "unknown host 'hv9'" in bad.stderr


def test_same_network_pairs_reach_each_other_across_hosts_and_no_cross_network_pair_does(fabric: Fabric) -> None:
    vms = fabric.vms
    for group in (("r1", "r2", "r3"), ("b1", "b2", "b3")):
        for a in group:
            for b in group:
                if a != b:
                    wait_until(lambda a=a, b=b: vms[a].ping(vms[b]), 15, message=f"{a} -> {b}")
    for a in ("r1", "r2", "r3"):
        for b in ("b1", "b2", "b3"):
            assert not vms[a].ping(vms[b], timeout=0.3), f"{a} reached {b} across networks"
            assert not vms[b].ping(vms[a], timeout=0.3), f"{b} reached {a} across networks"
    flows = "\n".join(fabric.hvs["hv2"].dump_flows("br-int"))
    assert "tun_id=0x13ec" in flows and "set_field:0x13ec->tun_id" in flows  # red's VNI 5100


def test_a_blue_broadcast_reaches_blue_vms_on_other_hosts_and_no_red_vm(fabric: Fabric) -> None:
    vms = fabric.vms
    listeners = {
        name: vms[name].popen(["tcpdump", "-l", "-n", "-c", "1", "-i", vms[name].iface, "arp and host 10.91.0.99"])
        for name in ("b1", "b3", "r1", "r3", "w3")
    }
    try:
        for proc in listeners.values():  # tcpdump says "listening on ..." once it captures
            assert proc.stderr is not None
            for _ in range(3):
                if "listening on" in proc.stderr.readline():
                    break
        vms["b2"].run(["ping", "-n", "-c", "1", "-W", "1", "10.91.0.99"], timeout=10)  # ARPs, broadcast
        got = {}
        for name, proc in listeners.items():
            try:
                proc.wait(timeout=3 if name.startswith("b") else 0.5)
            except subprocess.TimeoutExpired:
                proc.kill()
            got[name] = proc.returncode == 0
    finally:
        for proc in listeners.values():
            if proc.poll() is None:
                proc.kill()
    assert got == {"b1": True, "b3": True, "r1": False, "r3": False, "w3": False}


def test_stateful_policy_and_a_load_balancer_across_hosts(fabric: Fabric) -> None:
    vms = fabric.vms
    c1, w2, w3 = vms["c1"], vms["w2"], vms["w3"]
    for vm, name in ((w2, "w2"), (w3, "w3")):
        start_named_server(vm, 80, name)
        start_servers(vm, tcp=[22])
    start_servers(c1, tcp=[80])
    wait_until(lambda: fan_out(c1, "10.93.0.2", 80, 40000, 1) == ["w2"], 15, message="c1 -> w2:80, replies admitted")
    assert fan_out(c1, "10.93.0.3", 80, 40001, 1) == ["w3"]
    assert not tcp_connects(c1, "10.93.0.2", 22, timeout=0.5), "a denied port stays denied"
    assert not tcp_connects(w2, "10.93.0.1", 80, timeout=0.5), "no connection into c1 (acl_out: nothing)"
    wait_until(lambda: w2.ping(w3), 10, message="stateless ICMP in a tracked network")
    assert w3.ping(w2)
    wait_until(lambda: "-" not in fan_out(c1, "10.93.0.100", 80, 41000, 2), 15, message="the VIP answers")
    names = fan_out(c1, "10.93.0.100", 80, 42000, 20)
    assert "-" not in names, names
    assert {"w2", "w3"} <= set(names), f"20 connections spread over both backends: {names}"
    for hv in ("hv1", "hv2", "hv3"):
        assert fabric.hvs[hv].dump_conntrack(), f"{hv} tracks connections of its own"


def test_mtu_the_vm_mtu_crosses_and_a_larger_df_packet_is_refused_at_the_sender(fabric: Fabric) -> None:
    r1, r3 = fabric.vms["r1"], fabric.vms["r3"]
    assert r1.ip is not None and r3.ip is not None
    wait_until(lambda: r1.ping(r3), 10, message="r1 -> r3")
    assert _ping_df(r1, r3.ip, 1400), "a 1400-byte DF ping over the 1600-byte underlay"
    assert _ping_df(r1, r3.ip, 1500 - 28), "full-size VM frames over the 1600-byte underlay"
    lab, hvs = fabric.lab, fabric.hvs
    model = load_model(fabric.config)
    assert model.overlay is not None
    small = vm_mtu(type(model.overlay)(model.overlay.type, 1500))
    assert small == 1446
    try:
        _set_underlay_mtu(lab, hvs.values(), 1500)
        for vm in (r1, r3):  # what DHCP offers: the underlay MTU less the encapsulation
            vm.run(["ip", "link", "set", "dev", vm.iface, "mtu", str(small)], check=True)
        assert _ping_df(r1, r3.ip, small - 28), "the offered MTU crosses a 1500-byte underlay"
        refused = r1.run(["ping", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", "1472", r3.ip])
        assert refused.returncode != 0
        assert re.search(r"message too long|mtu", refused.stdout + refused.stderr, re.I), refused
    finally:
        _set_underlay_mtu(lab, hvs.values(), 1600)
        for vm in (r1, r3):
            vm.run(["ip", "link", "set", "dev", vm.iface, "mtu", "1500"], check=True)
    wait_until(lambda: _ping_df(r1, r3.ip, 1472), 10, message="full size again")


def _ping_df(vm: VM, ip: str, size: int) -> bool:
    return any(
        vm.run(["ping", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", str(size), ip]).returncode == 0 for _ in range(3)
    )


def _set_underlay_mtu(lab: MultiHostLab, hvs: Iterable[Hypervisor], mtu: int) -> None:
    for hv in hvs:
        hv.run(["ip", "link", "set", "dev", "ul0", "mtu", str(mtu)], check=True)
        hv.vsctl("set", "interface", "br-phy", f"mtu_request={mtu}")
        subprocess.run(["ip", "-n", lab.underlay_netns, "link", "set", "dev", hv.name, "mtu", str(mtu)], check=True)


def test_migrate_moves_a_vm_to_another_host_losing_at_most_one_10ms_ping(fabric: Fabric) -> None:
    """``vmn migrate`` pre-installs the destination; the VM's NIC then moves hv2 -> hv3 in one cut."""
    lab, hv3, mv, r1 = fabric.lab, fabric.hvs["hv3"], fabric.vms["mv"], fabric.vms["r1"]
    assert mv.ip is not None
    dest, nic = f"{lab.prefix}mvd", f"{lab.prefix}mv1"  # hv3's end of the new NIC, and the VM's
    subprocess.run(
        ["ip", "link", "add", "name", dest, "netns", hv3.netns, "type", "veth", "peer", "name", nic, "netns", mv.netns],
        check=True,
    )
    mv.run(["ip", "link", "set", "dev", nic, "address", mv.mac], check=True)
    mv.run(["ethtool", "-K", nic, "tx", "off"], check=True)
    for iface in (nic, mv.iface):  # the idle NIC answers no ARP for the other's address
        mv.run(["sysctl", "-q", "-w", f"net.ipv4.conf.{iface}.arp_ignore=1", f"net.ipv4.conf.{iface}.arp_announce=2"])
    mv.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{nic}.disable_ipv6=1"])
    mv.run(["ip", "link", "set", "dev", nic, "up"], check=True)
    hv3.attach("br-int", dest, 77)
    wait_until(lambda: r1.ping(mv), 10, message="r1 -> mv before")
    cli = ["env", f"PYTHONPATH={REPO_ROOT}", f"VMN_API_TOKEN={TOKEN}", sys.executable, "-m", "controller.cli"]
    url = f"http://127.0.0.1:{fabric.api}"
    done = subprocess.run([*cli, "migrate", "mv", "--to", f"s3:{dest}", "--url", url], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert r1.ping(mv, count=3), "pre-installing the destination changes nothing yet"
    cutter = mv.popen([sys.executable, "-c", CUT, mv.iface, nic, mv.mac, mv.ip])
    assert cutter.stdout is not None and cutter.stdout.readline().strip() == "ready"
    pinger = r1.popen(["ping", "-n", "-i", "0.01", "-c", "300", "-W", "1", mv.ip])
    time.sleep(1.0)
    cutter.send_signal(signal.SIGUSR1)  # `ip netns exec` execs python: this is its pid
    out, _ = pinger.communicate(timeout=30)
    sent, got = (int(x) for x in re.findall(r"(\d+) packets transmitted, (\d+) received", out)[0])
    lost = sent - got
    assert cutter.communicate(timeout=10)[0].strip().endswith("done")
    print(f"migration: {lost} of {sent} pings at 10 ms lost")
    assert lost <= 1, out
    assert r1.ping(mv, count=3), "mv answers at its new place"
