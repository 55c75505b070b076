"""Tests of the real-OVS harness (controller/tools/lab) itself.

Bridges run in fail_mode standalone with no controller, so OVS acts as a
plain learning switch: whatever fails here is the harness, not VMN.
"""

from __future__ import annotations

import subprocess

import pytest

from controller.tools import topo
from controller.tools.lab import (
    Host,
    Lab,
    dump_flows,
    flow_durations,
    free_port,
    parse_flow,
    port_stats,
    sh,
    wait_until,
    wire,
)
from controller.tools.lab.oftrace import Packet, follow
from controller.tools.topo import NetworkSpec

pytestmark = pytest.mark.ovs

PAYLOAD_BYTES = 256 * 1024

# Run inside the server namespace with /usr/bin/python3: accept one
# connection, read until EOF, answer with the byte count.
TCP_SERVER = """
import socket, sys
srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
conn, _ = srv.accept()
total = 0
while chunk := conn.recv(65536):
    total += len(chunk)
conn.sendall(str(total).encode())
conn.close()
"""

TCP_CLIENT = """
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
conn.sendall(b"x" * int(sys.argv[3]))
conn.shutdown(socket.SHUT_WR)
print(conn.recv(100).decode())
"""


def _objects() -> tuple[set[str], set[str], set[str]]:
    """(bridges, namespaces, links) that exist right now."""
    bridges = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True, check=True).stdout.split()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}
    return set(bridges), set(netns), names


def _assert_gone(prefix: str) -> None:
    bridges, netns, links = _objects()
    assert not [b for b in bridges if b.startswith(prefix)], bridges
    assert not [n for n in netns if n.startswith(prefix)], netns
    assert not [n for n in links if n.startswith(prefix)], links


def _two_hosts(lab: Lab) -> tuple[str, Host, Host]:
    br = lab.add_bridge("b1", dpid=1, controller_port=None, fail_mode="standalone")
    h1 = lab.add_host("h1", br, ofport=1, ip="10.0.0.1/24", mac="02:00:00:00:00:01")
    h2 = lab.add_host("h2", br, ofport=2, ip="10.0.0.2/24", mac="02:00:00:00:00:02")
    return br, h1, h2


def test_two_hosts_ping_and_cleanup(require_ovs: None) -> None:
    with Lab() as lab:
        br = lab.add_bridge("b1", dpid=0x1234, controller_port=None, fail_mode="standalone")
        h1 = lab.add_host("h1", br, ofport=1, ip="10.0.0.1/24", mac="02:00:00:00:00:01")
        h2 = lab.add_host("h2", br, ofport=2, ip="10.0.0.2", mac="02:00:00:00:00:02")
        assert br == f"{lab.prefix}b1"
        assert (h1.ip, h1.mac, h2.ip) == ("10.0.0.1", "02:00:00:00:00:01", "10.0.0.2")
        bridges, netns, links = _objects()
        assert br in bridges
        assert {h1.netns, h2.netns} <= netns
        assert {h1.port, h2.port} <= links
        dpid = subprocess.run(
            ["ovs-ofctl", "-O", "OpenFlow13", "show", br], capture_output=True, text=True, check=True
        ).stdout
        assert "dpid:0000000000001234" in dpid

        wait_until(lambda: h1.ping(h2), timeout=10, message="h1 pings h2")
        assert h2.ping(h1, count=3)
        assert not h1.ping("10.0.0.99")  # nobody there
        stats = port_stats(br)
        assert stats[1].rx_packets > 0 and stats[2].tx_packets > 0
        assert "LOCAL" in stats
    _assert_gone(lab.prefix)


def test_tcp_between_namespaces(lab: Lab) -> None:
    _, h1, h2 = _two_hosts(lab)
    server = h2.popen(["/usr/bin/python3", "-c", TCP_SERVER, "10.0.0.2", "5001"])
    wait_until(lambda: ":5001" in h2.run(["ss", "-ltnH"]).stdout, timeout=10, message="server listening")
    client = h1.run(["/usr/bin/python3", "-c", TCP_CLIENT, "10.0.0.2", "5001", str(PAYLOAD_BYTES)], timeout=30)
    assert client.returncode == 0, client.stderr
    assert client.stdout.strip() == str(PAYLOAD_BYTES)
    assert server.wait(timeout=10) == 0


def test_set_mac_and_port_down(lab: Lab) -> None:
    _, h1, h2 = _two_hosts(lab)
    h1.set_mac("02:00:00:00:00:aa")
    assert h1.mac == "02:00:00:00:00:aa"
    wait_until(lambda: h1.ping(h2), timeout=10)
    lab.set_port_down(h2.port)
    assert not h1.ping(h2)
    lab.set_port_up(h2.port)
    wait_until(lambda: h1.ping(h2), timeout=10, message="ping after port up")
    with pytest.raises(ValueError, match="not created by this lab"):
        lab.set_port_down("eth0")


def test_link_between_bridges(lab: Lab) -> None:
    b1 = lab.add_bridge("b1", dpid=1, controller_port=None, fail_mode="standalone")
    b2 = lab.add_bridge("b2", dpid=2, controller_port=None, fail_mode="standalone")
    h1 = lab.add_host("h1", b1, ofport=1, ip="10.0.0.1/24")
    h2 = lab.add_host("h2", b2, ofport=1, ip="10.0.0.2/24")
    link = lab.add_link(b1, 10, b2, 20)
    wait_until(lambda: h1.ping(h2), timeout=10, message="ping across the link")
    assert port_stats(b1)[10].tx_packets > 0
    lab.set_port_down(link.iface_a)
    assert not h1.ping(h2)


def test_named_ports_take_their_name_and_the_number_ovs_chooses(lab: Lab) -> None:
    b1 = lab.add_bridge("b1", dpid=1, controller_port=None, fail_mode="standalone")
    b2 = lab.add_bridge("b2", dpid=2, controller_port=None, fail_mode="standalone")
    h1 = lab.add_host("h1", b1, ofport=2, ip="10.0.0.1/24")
    h2 = lab.add_host("h2", b1, ofport=f"{lab.prefix}zz", ip="10.0.0.2/24")
    link = lab.add_link(b1, f"{lab.prefix}up", b2, 20)
    h3 = lab.add_host("h3", b2, ofport=f"{lab.prefix}aa", ip="10.0.0.3/24", attach=False)
    assert h2.port == f"{lab.prefix}zz" and h2.ofport not in (None, 2)
    assert link.iface_a == f"{lab.prefix}up" and link.port_a not in (2, h2.ofport) and link.port_b == 20
    assert h3.ofport is None and f"{lab.prefix}aa" not in sh(["ovs-vsctl", "list-ports", b2]).stdout.split()
    sh(["ovs-vsctl", "add-port", b2, h3.port])
    wait_until(lambda: h1.ping(h2) and h2.ping(h3), timeout=10, message="pings over named ports")
    # ofproto/trace, followed over the link: a broadcast from h1 leaves by h2's and h3's ports
    # (and, NORMAL being a plain learning switch, by each bridge's own LOCAL port)
    links = {(b1, link.port_a): (b2, link.port_b), (b2, link.port_b): (b1, link.port_a)}
    arp = Packet("arp", (("dl_src", h1.mac), ("dl_dst", "ff:ff:ff:ff:ff:ff"), ("arp_op", "1")))
    traced = follow(b1, arp, 2, links)
    assert {(o.bridge, o.iface) for o in traced.outputs} == {(b1, h2.port), (b2, h3.port), (b1, b1), (b2, b2)}, (
        traced.texts
    )


def test_wire_builds_a_network_file(lab: Lab) -> None:
    net = topo.linear(2, networks=(NetworkSpec("red", 100, "r"),), subnet="10.0.0.0/24", mac_prefix="02:00:00:00")
    wired = wire(lab, net, controller_port=None, fail_mode="standalone")
    assert wired.bridges == {"s1": f"{lab.prefix}s1", "s2": f"{lab.prefix}s2"}
    [link] = wired.links
    assert (link.bridge_a, link.port_a, link.bridge_b, link.port_b) == (f"{lab.prefix}s1", 10, f"{lab.prefix}s2", 11)
    r1, r2 = wired.hosts["r1"], wired.hosts["r2"]
    assert (r1.bridge, r1.ofport, r1.ip, r1.mac) == (f"{lab.prefix}s1", 1, "10.0.0.1", "02:00:00:00:01:01")
    wait_until(lambda: r1.ping(r2), timeout=10, message="r1 pings r2 across the link")
    assert port_stats(wired.bridges["s1"])[10].tx_packets > 0


def test_hosts_with_ipv6_ping_each_other_and_wire_gives_vms_their_ipv6(lab: Lab) -> None:
    net = topo.single(2, networks=(NetworkSpec("red", 100, "r"),), mac_prefix="02:00:00:00")
    net["vms"]["r1"]["ipv6"] = "2001:db8::1/64"
    net["vms"]["r2"]["ipv6"] = "2001:db8::2/64"
    wired = wire(lab, net, controller_port=None, fail_mode="standalone")
    r1, r2 = wired.hosts["r1"], wired.hosts["r2"]
    assert (r1.ipv6, r2.ipv6) == ("2001:db8::1", "2001:db8::2")
    assert "fe80::ff:fe00:101/64" in r1.run(["ip", "-6", "addr", "show", "dev", r1.iface]).stdout  # EUI-64
    wait_until(lambda: r1.ping("2001:db8::2") and r2.ping("2001:db8::1"), timeout=15, message="ping -6")
    bare = lab.add_host("h3", wired.bridges["s1"], ofport=9, ipv6="2001:db8::3")  # /64 by default
    wait_until(lambda: bare.ping("2001:db8::1"), timeout=15, message="ping -6 from a bare address")
    plain = lab.add_host("h4", wired.bridges["s1"], ofport=10, ip="10.0.0.9/24")
    assert plain.ipv6 is None and "inet6" not in plain.run(["ip", "-6", "addr", "show", "dev", plain.iface]).stdout


def test_wire_checks_the_file_before_creating_anything(lab: Lab) -> None:
    net = topo.single(1, networks=(NetworkSpec("red", 100, "r"),))
    net["vms"]["r1"]["port"] = 0
    with pytest.raises(ValueError, match="invalid network file"):
        wire(lab, net, None)
    assert not lab.bridges


def test_flow_inspection(lab: Lab) -> None:
    br = lab.add_bridge("b1", dpid=1, controller_port=None, fail_mode="secure")
    add = ["ovs-ofctl", "-O", "OpenFlow13", "add-flow", br]
    subprocess.run([*add, "cookie=0x5,table=1,priority=10,ip,nw_dst=10.0.0.1,actions=output:1"], check=True)
    subprocess.run([*add, "table=0,actions=goto_table:1"], check=True)
    lines = dump_flows(br)
    assert len(lines) == 2
    durations = flow_durations(br)
    assert set(durations) == {"cookie=0x5,table=1,priority=10,ip,nw_dst=10.0.0.1", "cookie=0x0,table=0,priority=32768"}
    assert all(d >= 0 for d in durations.values())


def test_set_controller_keeps_flows_and_fast_backoff(lab: Lab) -> None:
    br = lab.add_bridge("b1", dpid=1, controller_port=free_port())
    sh(["ovs-ofctl", "-O", "OpenFlow13", "add-flow", br, "table=0,actions=drop"])
    port = free_port()
    lab.set_controller(br, port)
    assert sh(["ovs-vsctl", "get", "controller", br, "target"]).stdout.strip() == f'"tcp:127.0.0.1:{port}"'
    assert sh(["ovs-vsctl", "get", "controller", br, "max_backoff"]).stdout.strip() == "1000"
    assert len(dump_flows(br)) == 1
    lab.set_controller(br, None)
    assert sh(["ovs-vsctl", "get", "bridge", br, "controller"]).stdout.strip() == "[]"


def test_parse_flow_formats() -> None:
    flow = parse_flow(
        " cookie=0xa, duration=1.5s, table=3, n_packets=7, n_bytes=420, "
        "hard_timeout=100, send_flow_rem reset_counts in_port=1 actions=drop"
    )
    assert (flow.cookie, flow.table, flow.priority, flow.match) == (0xA, 3, 32768, "in_port=1")
    assert (flow.duration, flow.n_packets, flow.n_bytes, flow.actions) == (1.5, 7, 420, "drop")
    flow = parse_flow(
        "cookie=0x0, duration=0.1s, table=0, n_packets=0, n_bytes=0, idle_timeout=30, priority=5,ip actions=output:1"
    )
    assert (flow.priority, flow.match) == (5, "ip")
    with pytest.raises(ValueError):
        parse_flow("OFPST_FLOW reply (OF1.3) (xid=0x2):")


def test_cleanup_when_body_raises(require_ovs: None) -> None:
    lab = Lab()
    with pytest.raises(RuntimeError, match="boom"), lab:
        br = lab.add_bridge("b1", dpid=1, controller_port=None, fail_mode="standalone")
        lab.add_host("h1", br, ofport=1, ip="10.0.0.1/24")
        lab.add_host("h2", br, ofport=2)
        lab.add_link(br, 5, lab.add_bridge("b2", 2, None), 6)
        raise RuntimeError("boom")
    _assert_gone(lab.prefix)


def test_cleanup_leaves_foreign_objects(require_ovs: None) -> None:
    """A name clash with something the lab did not make fails and is not removed."""
    with Lab() as outer:
        foreign = outer.add_bridge("b1", dpid=1, controller_port=None)
        inner = Lab(prefix=outer.prefix)
        with pytest.raises(subprocess.CalledProcessError), inner:
            inner.add_bridge("b1", dpid=2, controller_port=None)
        assert foreign in _objects()[0]
    _assert_gone(outer.prefix)
