"""An uplink on real OVS: source NAT out, floating IPs in, ARP on the uplink, a reload that drops a floating IP.

One lab and one controller serve the whole module. Bridges x1 (s1) and x2
(s2) are linked; router ``r`` joins ``red`` and ``blue`` and leaves through
uplink ``wan`` on s2 port 9 (192.0.2.10/24, upstream gateway 192.0.2.1).
The VMs are namespaces with a default route via their network's gateway:

- ``r1`` (red, s1): no floating IP, so it crosses the fabric and leaves as
  192.0.2.10;
- ``b1`` (blue, s1): floating IP 192.0.2.50, ``acl_out`` admits TCP 80 only
  (stateful); its ``acl_in`` allows everything statefully, so the replies
  of its own connections out come back marked and skip its ``acl_out`` (as
  between VMs: without it, ``acl_out`` would judge them, and drop them);
- ``r2`` (red, s2, the uplink's switch): floating IP 192.0.2.51, no lists;
  its server on port 7001 greets with the source address it sees.

The outside is one namespace on the uplink port: it holds the upstream
gateway address 192.0.2.1 (the controller finds its MAC by ARP), a server
address 198.51.100.7 behind it (on its loopback) whose TCP server greets
each client with the source address it sees and then echoes, and a route to
the inside subnets via 192.0.2.10, so it can at least try to reach them.

The tests check what the schema's "Uplinks" promises on a real datapath:
who a VM is seen as outside; that replies and related ICMP errors come
back; that the outside reaches a VM only through its floating IP, subject
to its ``acl_out``, and nothing else of the inside nor the uplink address's
own ports; that hostile packets (to an inside address, from a spoofed
inside source) drop and are counted; that ARP on the uplink answers only
the uplink address and the floating IPs; the uplink metrics; and (last, as it
changes the file) that a reload removing a floating IP cuts it at once
while established connections through SNAT and another floating IP keep
carrying data.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.config.uplinks import uplink_mac
from controller.tools.lab import ControllerProcess, Host, Lab, dump_flows, free_port, wait_until
from tests.conftest import _ovs_unavailable_reason
from tests.ovs.metrics_client import total
from tests.ovs.traffic import start_named_server, start_servers, tcp_connects, udp_outcome

pytestmark = pytest.mark.ovs

NETWORK = """
controller: {metrics_port: %(metrics)d, stats_interval: 0.5, api_port: 0}
switches: {s1: {dpid: 0xb1}, s2: {dpid: 0xb2}}
links: [[s1:10, s2:10]]
networks:
  red: {vlan: 161, gateway: 10.96.1.1/24}
  blue: {vlan: 162, gateway: 10.96.2.1/24}
vms:
  r1: {switch: s1, port: 1, network: red, ip: 10.96.1.11/24, mac: "02:96:00:00:01:11"}
  b1: {switch: s1, port: 2, network: blue, ip: 10.96.2.11/24, mac: "02:96:00:00:02:11", acl_in: [out-any],
      acl_out: [web-only]}
  r2: {switch: s2, port: 3, network: red, ip: 10.96.1.12/24, mac: "02:96:00:00:01:12"}
acls:
  out-any:
    - {action: allow, stateful: true}
  web-only:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow, stateful: true}
routers:
  r: {networks: [red, blue], uplink: wan}
uplinks:
  wan: {switch: s2, port: 9, ip: 192.0.2.10/24, gateway: 192.0.2.1}
floating_ips:
  192.0.2.50: b1
%(more)s"""
MORE_FLOATING = "  192.0.2.51: r2\n"
"""r2's floating IP: in the file at the start, removed by the reload test."""
BRIDGES = {"s1": ("x1", 0xB1), "s2": ("x2", 0xB2)}
VMS = {
    # name: (switch, port, ip/prefix, mac, gateway)
    "r1": ("s1", 1, "10.96.1.11/24", "02:96:00:00:01:11", "10.96.1.1"),
    "b1": ("s1", 2, "10.96.2.11/24", "02:96:00:00:02:11", "10.96.2.1"),
    "r2": ("s2", 3, "10.96.1.12/24", "02:96:00:00:01:12", "10.96.1.1"),
}
UPLINK_IP, UPSTREAM, SERVER, SERVER_PORT = "192.0.2.10", "192.0.2.1", "198.51.100.7", 7000
FLOATING = {"b1": "192.0.2.50", "r2": "192.0.2.51"}
HELD_SPORT = 45678

PEER_SERVER = r"""
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(128)
print("ready", flush=True)
def serve(conn, peer):
    try:
        conn.sendall(peer[0].encode() + b"\n")
        while data := conn.recv(1024):
            conn.sendall(data)
    except OSError:
        pass
    conn.close()
while True:
    conn, peer = srv.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"""
"""``ip port``: a TCP server that greets each client with the source address it sees, then echoes."""

GREETING = r"""
import socket, sys
try:
    where = (sys.argv[1], int(sys.argv[2]))
    s = socket.create_connection(where, timeout=float(sys.argv[3]), source_address=("0.0.0.0", int(sys.argv[4])))
    print(s.makefile("rb").readline().decode().strip())
except OSError:
    print("-")
"""
"""``ip port timeout sport``: connect (from ``sport``, 0: any) and print the server's greeting (``-``: none)."""

PROBES = r"""
import socket, subprocess, sys, threading
timeout, found = float(sys.argv[1]), {}
def tcp(ip, port):
    try:
        socket.create_connection((ip, int(port)), timeout=timeout).close()
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "-"
def icmp(ip):
    cmd = ["ping", "-n", "-q", "-c", "1", "-W", str(timeout), ip]
    return "echo reply" if subprocess.run(cmd, capture_output=True).returncode == 0 else "-"
def run(target):
    kind, *where = target.split(":")
    found[target] = tcp(*where) if kind == "tcp" else icmp(*where)
threads = [threading.Thread(target=run, args=(t,)) for t in sys.argv[2:]]
for t in threads:
    t.start()
for t in threads:
    t.join()
for target, result in sorted(found.items()):
    print(target, result)
"""
"""``timeout target...``: try each ``tcp:IP:PORT`` / ``icmp:IP`` at once; print ``target result``
(``connected``, ``refused`` (a RST came back), ``echo reply``, or ``-``: nothing came back)."""


HOLD = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3, source_address=("0.0.0.0", int(sys.argv[3])))
f = s.makefile("rb")
print(f.readline().decode().strip(), flush=True)
for line in sys.stdin:
    try:
        s.sendall(line.encode())
        got = f.readline().decode().strip()
    except OSError:
        got = ""
    print(got or "-", flush=True)
"""
"""``ip port sport``: hold one connection (from ``sport``, 0: any): print the greeting, then send each stdin line and print its echo (``-``)."""


class Held:
    """One TCP connection held open by a client process in a namespace; :meth:`echo` sends a line over it."""

    def __init__(self, host: Host, ip: str, port: int, sport: int = 0) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, sys.executable, "-c", HOLD, ip, str(port), str(sport)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.greeting = self._line(10.0)

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().strip() if ready else "-"

    def echo(self, text: str, timeout: float = 5.0) -> str:
        """Send ``text`` over the connection and return what came back (``-``: nothing)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self._line(timeout)

    def close(self) -> None:
        """End the client (closing stdin ends it; killed if it does not)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class UplinkLab:
    """The module's lab: VM hosts by name, the outside host, the controller, its file and metrics port."""

    lab: Lab
    ctl: ControllerProcess
    hosts: dict[str, Host]
    outside: Host
    cfg: Path
    metrics: int
    held: list[Held] = field(default_factory=list)

    def write(self, more: str) -> None:
        """Write the network file with ``more`` appended to its ``floating_ips``."""
        self.cfg.write_text(NETWORK % {"metrics": self.metrics, "more": more})

    def seen_as(self, vm: str, timeout: float = 2.0, sport: int = 0) -> str:
        """The source address the outside server sees for a connection from ``vm`` (``-``: none)."""
        cmd = [sys.executable, "-c", GREETING, SERVER, str(SERVER_PORT), str(timeout), str(sport)]
        return self.hosts[vm].run(cmd, timeout=timeout + 10).stdout.strip()

    def from_outside(self, ip: str, port: int, timeout: float = 0.5) -> bool:
        """Does the outside complete a TCP connection to ``ip:port`` (and read ``ok``)?"""
        return tcp_connects(self.outside, ip, port, timeout)

    def probe(self, targets: list[str], timeout: float = 0.5) -> dict[str, str]:
        """Try every target (``tcp:IP:PORT`` or ``icmp:IP``) from the outside at once; the ones that answered."""
        out = self.outside.run([sys.executable, "-c", PROBES, str(timeout), *targets], timeout=timeout + 20).stdout
        return dict(line.split(" ", 1) for line in out.splitlines() if not line.endswith(" -"))

    def hold(self, host: Host, ip: str, port: int, sport: int = 0) -> Held:
        """A connection from ``host`` (from ``sport``, 0: any) to ``ip:port`` held open (closed at teardown)."""
        held = Held(host, ip, port, sport)
        self.held.append(held)
        return held

    def arp_answer(self, ip: str) -> subprocess.Popen[str]:
        """Start one ARP request from the outside for ``ip`` (``arping``, 1 s); see :func:`answered_by`."""
        return self.outside.popen(["arping", "-c", "1", "-w", "1", "-I", self.outside.iface, ip])

    def metric(self, name: str, **labels: str) -> float:
        """The controller's metric ``name`` summed over samples with ``labels``."""
        return total(self.metrics, name, **labels)


def answered_by(arping: subprocess.Popen[str]) -> str | None:
    """The MAC in ``arping``'s reply, lower case (None: no reply)."""
    out, _ = arping.communicate(timeout=10)
    for line in out.splitlines():
        if line.startswith("Unicast reply from"):
            return line.split("[", 1)[1].split("]", 1)[0].lower()
    return None


@pytest.fixture(scope="module")
def up_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UplinkLab]:
    """Bridges x1/x2 linked, the VMs and the outside with their servers, the upstream gateway found."""
    reason = _ovs_unavailable_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI: real-OVS test cannot run: {reason}")
        pytest.skip(reason)
    metrics = free_port()
    cfg: Path = tmp_path_factory.mktemp("uplink") / "net.yaml"
    cfg.write_text(NETWORK % {"metrics": metrics, "more": MORE_FLOATING})
    with Lab() as lab, ControllerProcess(cfg) as ctl:
        bridges = {s: lab.add_bridge(name, dpid, ctl.port) for s, (name, dpid) in BRIDGES.items()}
        lab.add_link(bridges["s1"], 10, bridges["s2"], 10)
        hosts = {}
        for name, (switch, port, ip, mac, gw) in VMS.items():
            hosts[name] = lab.add_host(name, bridges[switch], port, ip=ip, mac=mac)
            hosts[name].run(["ip", "route", "add", "default", "via", gw], check=True)
        outside = lab.add_host("out", bridges["s2"], 9, ip=f"{UPSTREAM}/24")
        outside.run(["ip", "addr", "add", f"{SERVER}/32", "dev", "lo"], check=True)
        outside.run(["ip", "route", "add", "10.96.0.0/16", "via", UPLINK_IP], check=True)
        proc = outside.popen([sys.executable, "-c", PEER_SERVER, SERVER, str(SERVER_PORT)])
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        start_servers(hosts["r1"], tcp=[7000])
        start_named_server(hosts["b1"], 80, "ok")  # greets "ok", then echoes: held across the reload
        start_servers(hosts["b1"], tcp=[22])
        start_servers(hosts["r2"], tcp=[22, 7000])
        peer = hosts["r2"].popen([sys.executable, "-c", PEER_SERVER, "0.0.0.0", str(SERVER_PORT + 1)])
        assert peer.stdout is not None and peer.stdout.readline().strip() == "ready"
        for bridge in bridges.values():
            ctl.wait_connected(bridge, 20)
        ul = UplinkLab(lab, ctl, hosts, outside, cfg, metrics)
        try:
            wait_until(
                lambda: ul.metric("vmn_uplink_gateway_up", uplink="wan") == 1, 20, message="upstream gateway found"
            )
            wait_until(lambda: hosts["r1"].ping(hosts["r2"]), 30, message="r1 -> r2 (link up)")
            wait_until(lambda: ul.seen_as("r1") != "-", 20, message="r1 reaches the outside server")
            yield ul
        finally:
            for held in ul.held:
                held.close()
            print(ctl.log_text()[-5000:])


def test_a_vm_leaves_as_the_uplink_address_or_as_its_floating_ip(up_lab: UplinkLab) -> None:
    """SNAT: the outside server sees r1 (no floating IP, across the link) as the uplink's
    address, and b1 (s1) and r2 (the uplink's switch) as their floating IPs."""
    assert up_lab.seen_as("r1") == UPLINK_IP
    for vm, fip in FLOATING.items():
        assert up_lab.seen_as(vm) == fip, vm
    for vm, host in up_lab.hosts.items():  # and the outside's replies reach them routed: TTL 64 - 1
        assert "ttl=63" in host.run(["ping", "-n", "-c", "1", "-W", "1", SERVER]).stdout, vm


def test_an_icmp_error_about_a_natted_connection_reaches_its_vm(up_lab: UplinkLab) -> None:
    """The outside's port unreachable for r1's UDP datagram (sent as 192.0.2.10, to a closed
    port) is un-NATed back to r1 as related to its connection: its ``recv`` ends in ECONNREFUSED."""
    assert udp_outcome(up_lab.hosts["r1"], SERVER, 9) == "refused"


def test_the_outside_reaches_a_vm_through_its_floating_ip_and_nothing_else(up_lab: UplinkLab) -> None:
    """DNAT: a new connection to r2's floating IP reaches r2, which sees the outside's own
    address (only the destination is translated); the inside addresses (VMs and gateways,
    though the outside routes them to the uplink) and the uplink address's own ports (where
    no port forwarding exists, whatever listens inside) stay unreachable."""
    assert up_lab.from_outside(FLOATING["r2"], 22, 2.0)
    assert up_lab.from_outside(FLOATING["r2"], 7000, 2.0)
    greeting = [sys.executable, "-c", GREETING, FLOATING["r2"], str(SERVER_PORT + 1), "1", "0"]
    assert up_lab.outside.run(greeting).stdout.strip() == UPSTREAM
    assert up_lab.outside.ping(FLOATING["r2"])
    probes = [f"tcp:{UPLINK_IP}:22", f"tcp:{UPLINK_IP}:7000", f"icmp:{UPLINK_IP}"]
    for _, _, ip, _, gw in VMS.values():
        inside = ip.split("/")[0]
        probes += [f"icmp:{inside}", f"tcp:{inside}:22", f"icmp:{gw}", f"tcp:{gw}:22"]
    reached = f"tcp:{FLOATING['r2']}:22"  # the probe's own control: it does see what answers
    assert up_lab.probe(sorted(set(probes)) + [reached]) == {reached: "connected"}


def test_hostile_packets_drop_and_are_counted(up_lab: UplinkLab) -> None:
    """Pings from outside to an inside address, and to a floating IP that answers the outside
    but from a spoofed inside source, drop on the uplink and count in
    ``vmn_uplink_dropped_packets_total`` by reason (flow statistics every 0.5 s)."""

    def dropped(reason: str) -> float:
        return up_lab.metric("vmn_uplink_dropped_packets_total", uplink="wan", reason=reason)

    out, spoofed = up_lab.outside, "10.96.2.99"
    out.run(["ip", "addr", "replace", f"{spoofed}/32", "dev", "lo"], check=True)
    before = {reason: dropped(reason) for reason in ("unknown_destination", "spoofed")}
    assert not out.ping("10.96.1.11", count=3, timeout=0.3)
    assert out.run(["ping", "-n", "-q", "-c", "1", "-W", "1", FLOATING["r2"]]).returncode == 0
    assert out.run(["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "0.3", "-I", spoofed, FLOATING["r2"]]).returncode
    for reason, count in before.items():
        wait_until(lambda r=reason, c=count: dropped(r) >= c + 3, 5, message=f"3 dropped pings counted as {reason}")


def test_arp_on_the_uplink_answers_the_uplink_address_and_floating_ips_only(up_lab: UplinkLab) -> None:
    """The switch answers the outside's ARP for 192.0.2.10 and each floating IP from the uplink's
    MAC; nothing else of the inside (VMs, gateways, unused uplink-subnet addresses) answers."""
    yes = [UPLINK_IP, *FLOATING.values()]
    no = ["192.0.2.99", "10.96.1.1", "10.96.1.11", "10.96.2.11", "10.96.1.12"]
    probes = {ip: up_lab.arp_answer(ip) for ip in yes + no}  # concurrently: a miss costs 1 s each
    answers = {ip: answered_by(p) for ip, p in probes.items()}
    assert answers == {**dict.fromkeys(yes, uplink_mac("wan")), **dict.fromkeys(no)}


def test_acl_out_of_the_floating_ip_vm_limits_what_the_outside_reaches(up_lab: UplinkLab) -> None:
    """b1's ``acl_out`` (TCP 80 stateful) judges connections through its floating IP:
    port 80 answers (its replies pass as a stateful connection's), port 22 and ping do not."""
    assert any(up_lab.from_outside(FLOATING["b1"], 80, 1.0) for _ in range(3))
    assert not up_lab.from_outside(FLOATING["b1"], 22)
    assert not up_lab.outside.ping(FLOATING["b1"], timeout=0.5)
    assert up_lab.hosts["b1"].ping(SERVER)  # its own connections out are not limited by acl_out


def test_uplink_metrics(up_lab: UplinkLab) -> None:
    """The gateway is up, and SNAT and DNAT connections (made by the tests before) are counted."""
    assert up_lab.seen_as("r1") == UPLINK_IP
    assert up_lab.from_outside(FLOATING["r2"], 22, 2.0)
    assert up_lab.metric("vmn_uplink_gateway_up", uplink="wan") == 1
    for nat in ("snat", "dnat"):
        wait_until(
            lambda: up_lab.metric("vmn_uplink_nat_connections_total", uplink="wan", nat=nat) > 0,
            5,
            message=f"{nat} connections counted",
        )
    assert up_lab.metric("vmn_floating_ip_packets_total", floating_ip=FLOATING["r2"]) > 0


def test_a_reload_without_a_floating_ip_cuts_it_at_once_and_keeps_established_connections(
    up_lab: UplinkLab,
) -> None:
    """Runs last (it edits the file). Connections established before the reload, r1 -> the
    outside server (SNAT) and the outside -> b1's floating IP (DNAT, stateful acl_out), carry
    data after it; right after the reload the outside can no longer connect through r2's
    removed floating IP nor ARP it, and r2's new connections leave as the uplink address, also
    from the very source port of r1's held connection (conntrack NAT picks another port)."""
    out_conn = up_lab.hold(up_lab.hosts["r1"], SERVER, SERVER_PORT, HELD_SPORT)
    in_conn = up_lab.hold(up_lab.outside, FLOATING["b1"], 80)
    assert (out_conn.greeting, in_conn.greeting) == (UPLINK_IP, "ok")
    assert (out_conn.echo("before"), in_conn.echo("before")) == ("before", "before")
    assert up_lab.from_outside(FLOATING["r2"], 22, 2.0)

    uplink_switch, removed = up_lab.outside.bridge, FLOATING["r2"]
    assert any(removed in line for line in dump_flows(uplink_switch))
    up_lab.write("")
    os.kill(up_lab.ctl.pid, signal.SIGHUP)
    sent = time.monotonic()
    wait_until(
        lambda: not any(removed in line for line in dump_flows(uplink_switch)),
        2,
        0.02,
        message="the floating IP's rules leave the uplink's switch within 2 s of the reload",
    )
    gone = time.monotonic() - sent
    assert not up_lab.from_outside(removed, 22, 0.5), "a new connection to the removed floating IP"
    assert answered_by(up_lab.arp_answer(removed)) is None, "ARP for the removed floating IP"
    assert up_lab.metric("vmn_config_reloads_total", result="ok") >= 1

    assert (out_conn.echo("after"), in_conn.echo("after")) == ("after", "after")
    assert up_lab.seen_as("r2", 2.0, HELD_SPORT) == UPLINK_IP  # r1's held connection's source port: NAT picks another
    assert out_conn.echo("again") == "again"
    assert up_lab.seen_as("b1", 2.0) == FLOATING["b1"]
    assert up_lab.from_outside(FLOATING["b1"], 80, 2.0)
    print(f"the removed floating IP's rules were gone {gone:.2f} s after SIGHUP")
