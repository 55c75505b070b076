"""``acl_out`` (delivery policy) on real OVS: one host, two linked bridges.

One lab and one controller serve the whole module. Network ``red`` holds
plain clients ``c1`` (bridge b1) and ``c2`` (b2) and servers with delivery
lists: ``web`` (b1) admits only TCP 80 (stateless); ``srv`` (b2) admits TCP
80 and UDP 53/5353 statefully while its own ``acl_in`` denies everything;
``snd`` (b1, ``acl_in`` denies TCP 9001) and ``rcv`` (b2, ``acl_out`` denies
TCP 9000) show that the sender's and the receiver's lists both apply.
Network ``blue`` has a network-level ``acl_out`` (TCP 80 and echo requests,
stateful) over ``ba`` (b1), ``bb`` (b2) and ``bc`` (b1, whose own
``acl_out`` admits only ``ba``). ``cl`` (b1) has an ``acl_out`` that denies
everything; ``sa`` (b1) and ``sb`` (b2) let out all they send, statefully.

The tests check reachability, replies of stateful delivery rules, ICMP
errors (a real port unreachable ends a UDP ``recv`` in ``ECONNREFUSED``; a
crafted error reaches its target only when its inner header names a live
connection, including a "fragmentation needed" for TCP), ``vmn trace``
agreeing with OVS, and ``direction="out"`` hit counters on /metrics.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.config import load_model
from controller.tools.lab import ControllerProcess, Host, Lab, free_port, wait_until
from controller.tools.trace import Fabric, build_fabric
from tests.conftest import _ovs_unavailable_reason
from tests.ovs.metrics_client import total
from tests.ovs.traffic import Case, exchange_works, start_servers, trace_disagreements, udp_outcome

pytestmark = pytest.mark.ovs

NETWORK = """
controller: {metrics_port: %(metrics)d, stats_interval: 0.5}
switches: {s1: {dpid: 0x81}, s2: {dpid: 0x82}}
links: [[s1:10, s2:10]]
networks:
  red: {vlan: 181}
  blue: {vlan: 182, acl_out: [blue-out]}
vms:
  c1:  {switch: s1, port: 1, network: red, ip: 10.81.0.1/24}
  c2:  {switch: s2, port: 2, network: red, ip: 10.81.0.2/24}
  web: {switch: s1, port: 3, network: red, ip: 10.81.0.3/24, acl_out: [web-80]}
  srv: {switch: s2, port: 4, network: red, ip: 10.81.0.4/24, acl_in: [deny-all], acl_out: [srv-out]}
  snd: {switch: s1, port: 5, network: red, ip: 10.81.0.5/24, acl_in: [snd-in]}
  rcv: {switch: s2, port: 6, network: red, ip: 10.81.0.6/24, acl_out: [rcv-out]}
  ba:  {switch: s1, port: 7, network: blue, ip: 10.82.0.7/24}
  bb:  {switch: s2, port: 8, network: blue, ip: 10.82.0.8/24}
  bc:  {switch: s1, port: 9, network: blue, ip: 10.82.0.9/24, acl_out: [from-ba]}
  cl:  {switch: s1, port: 11, network: red, ip: 10.81.0.11/24, acl_out: [deny-all]}
  sa:  {switch: s1, port: 12, network: red, ip: 10.81.0.12/24, acl_in: [all-stateful]}
  sb:  {switch: s2, port: 13, network: red, ip: 10.81.0.13/24, acl_in: [all-stateful]}
acls:
  web-80:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow}
  srv-out:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow, stateful: true}
    - {match: {ip_proto: udp, udp_dst: 53}, action: allow, stateful: true}
    - {match: {ip_proto: udp, udp_dst: 5353}, action: allow, stateful: true}
  deny-all:
    - {action: deny}
  snd-in:
    - {match: {ip_proto: tcp, tcp_dst: 9001}, action: deny}
    - {action: allow}
  rcv-out:
    - {match: {ip_proto: tcp, tcp_dst: 9000}, action: deny}
    - {action: allow}
  blue-out:
    - {match: {ip_proto: tcp, tcp_dst: 80}, action: allow, stateful: true}
    - {match: {ip_proto: icmp, icmp_type: 8}, action: allow, stateful: true}
  from-ba:
    - {match: {ipv4_src: 10.82.0.7}, action: allow}
  all-stateful:
    - {action: allow, stateful: true}
"""
SERVERS: dict[str, tuple[list[int], list[int]]] = {
    "c1": ([7000], []),
    "c2": ([7000], []),
    "web": ([80, 22], [53]),
    "srv": ([80, 22], [5353]),  # UDP 53 stays closed: its datagrams draw a port unreachable
    "snd": ([7000], []),
    "rcv": ([9000, 9001, 9002], []),
    "ba": ([80, 22], [53]),
    "bb": ([80, 22], [53]),
    "bc": ([80, 22], [53]),
    "sa": ([22], []),
    "sb": ([22], []),
}


CASES = [
    Case("c1", "web", "tcp", 80),
    Case("c2", "web", "tcp", 80),
    Case("c1", "web", "tcp", 22),
    Case("c2", "web", "tcp", 22),
    Case("c1", "web", "udp", 53),
    Case("c1", "web", "icmp"),
    Case("c1", "srv", "tcp", 80),
    Case("c2", "srv", "tcp", 80),
    Case("c1", "srv", "tcp", 22),
    Case("c1", "srv", "udp", 5353),
    Case("c1", "srv", "icmp"),
    Case("srv", "c1", "tcp", 7000),
    Case("srv", "c2", "icmp"),
    Case("snd", "rcv", "tcp", 9000),
    Case("snd", "rcv", "tcp", 9001),
    Case("snd", "rcv", "tcp", 9002),
    Case("c1", "rcv", "tcp", 9000),
    Case("c2", "rcv", "tcp", 9001),
    Case("rcv", "snd", "tcp", 7000),
    Case("snd", "srv", "tcp", 80),
    Case("snd", "web", "tcp", 80),
    Case("ba", "bb", "tcp", 80),
    Case("bb", "ba", "tcp", 80),
    Case("ba", "bb", "tcp", 22),
    Case("ba", "bb", "udp", 53),
    Case("ba", "bb", "icmp"),
    Case("ba", "bc", "tcp", 80),
    Case("bc", "ba", "tcp", 80),
    Case("bb", "bc", "tcp", 80),
    Case("ba", "bc", "tcp", 22),
    Case("bb", "bc", "icmp"),
    Case("c1", "sa", "tcp", 22),
    Case("cl", "sa", "tcp", 22),
    Case("cl", "sb", "tcp", 22),
]
"""Trace-vs-OVS cases: every kind of list (VM/network, in/out, stateless/stateful), on one bridge and across."""


UDP_FROM = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[3])))
for _ in range(3):
    s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
    try:
        if s.recvfrom(64)[0] == b"ping":
            sys.exit(0)
    except OSError:
        pass
sys.exit(1)
"""
"""``ip port sport``: a UDP echo round trip from source port ``sport``; exit 0 when answered."""

TCP_HOLD = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.settimeout(3)
s.bind(("0.0.0.0", int(sys.argv[3])))
s.connect((sys.argv[1], int(sys.argv[2])))
print("up" if s.recv(16).startswith(b"ok") else "no", flush=True)
sys.stdin.read()
"""
"""``ip port sport``: connect from ``sport``, print ``up`` once answered, hold the socket until stdin closes."""

ICMP_WATCH = r"""
import socket, struct, sys, time
code, sport, deadline = int(sys.argv[1]), int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
print("ready", flush=True)
while (left := deadline - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        data = s.recv(2048)
    except TimeoutError:
        break
    ihl = (data[0] & 0x0F) * 4
    icmp = data[ihl:]
    if len(icmp) < 8 + 20 + 4 or icmp[0] != 3 or icmp[1] != code:
        continue
    inner = icmp[8:]
    l4 = inner[(inner[0] & 0x0F) * 4:]
    if struct.unpack("!H", l4[:2])[0] == sport:
        print("seen", flush=True)
        sys.exit(0)
print("unseen", flush=True)
sys.exit(1)
"""
"""``code sport seconds``: exit 0 once a destination unreachable of ``code`` about source port ``sport`` arrives."""

ICMP_SEND = r"""
import socket, struct, sys, time
dst, code, inner_src, inner_dst, proto, sport, dport, count = sys.argv[1:9]
def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xFFFF); t += t >> 16
    return ~t & 0xFFFF
proto = {"udp": 17, "tcp": 6}[proto]
l4 = struct.pack("!HHI", int(sport), int(dport), 1 if proto == 6 else (12 << 16))
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + 4, 1, 0x4000, 64, proto, 0,
                 socket.inet_aton(inner_src), socket.inet_aton(inner_dst))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
mtu = 1400 if int(code) == 4 else 0
body = ip + l4
icmp = struct.pack("!BBHHH", 3, int(code), 0, 0, mtu) + body
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
for _ in range(int(count)):
    s.sendto(icmp, (dst, 0))
    time.sleep(0.2)
"""
"""``dst code inner_src inner_dst udp|tcp sport dport count``: send ``count`` destination unreachables
(``code``; 4 carries next-hop MTU 1400) quoting a datagram/segment ``inner_src:sport -> inner_dst:dport``."""


@dataclass
class OutLab:
    """The module's lab: hosts by VM name, the controller, the trace fabric and the metrics port."""

    lab: Lab
    ctl: ControllerProcess
    hosts: dict[str, Host]
    fabric: Fabric
    metrics: int

    def ip(self, name: str) -> str:
        """The VM's address."""
        ip = self.hosts[name].ip
        assert ip is not None
        return ip

    def works(self, case: Case, timeout: float) -> bool:
        """Does the exchange of ``case`` (request and answer) complete on real OVS?"""
        return exchange_works(self.hosts[case.src], self.ip(case.dst), case.proto, case.port, timeout)

    def works_soon(self, case: Case) -> bool:
        """:meth:`works` with a few tries: a first packet may still find a cold path."""
        return any(self.works(case, 1.0) for _ in range(3))

    def udp_outcome(self, src: str, dst: str, port: int, timeout: float = 1.0) -> str:
        """``refused``, ``answer`` or ``timeout``: a connected UDP socket in ``src`` sends to ``dst:port``."""
        return udp_outcome(self.hosts[src], self.ip(dst), port, timeout)

    def icmp_error_seen(self, sender: str, target: str, code: str, quote: tuple[str, int, int], seconds: float) -> bool:
        """Does ``target`` receive the destination unreachable ``sender`` crafts, within ``seconds``?

        ``quote`` is the quoted packet ``(proto, sport, dport)`` from ``target`` to ``sender``.
        A raw-socket listener in ``target`` watches for it while ``sender`` sends it every 0.2 s.
        """
        proto, sport, dport = quote
        watch = self.hosts[target].popen([sys.executable, "-c", ICMP_WATCH, code, str(sport), str(seconds)])
        assert watch.stdout is not None
        assert watch.stdout.readline().strip() == "ready"
        count = max(1, int(seconds / 0.2) - 1)
        args = [self.ip(target), code, self.ip(target), self.ip(sender), proto, str(sport), str(dport), str(count)]
        self.hosts[sender].run([sys.executable, "-c", ICMP_SEND, *args], check=True, timeout=seconds + 10)
        try:
            watch.wait(timeout=seconds + 5)
        except subprocess.TimeoutExpired:
            watch.kill()
            watch.wait()
            raise
        return watch.returncode == 0


@pytest.fixture(scope="module")
def out_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutLab]:
    """Bridges b1/b2 linked, every VM of :data:`NETWORK` with its servers, learned, ARP caches full."""
    reason = _ovs_unavailable_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI: real-OVS test cannot run: {reason}")
        pytest.skip(reason)
    metrics = free_port()
    cfg: Path = tmp_path_factory.mktemp("acl_out") / "net.yaml"
    cfg.write_text(NETWORK % {"metrics": metrics})
    model = load_model(cfg)
    with Lab() as lab, ControllerProcess(cfg) as ctl:
        bridges = {"s1": lab.add_bridge("b1", 0x81, ctl.port), "s2": lab.add_bridge("b2", 0x82, ctl.port)}
        lab.add_link(bridges["s1"], 10, bridges["s2"], 10)
        hosts = {}
        for vm in model.vms:
            assert isinstance(vm.port, int) and vm.ip is not None
            hosts[vm.name] = lab.add_host(vm.name, bridges[vm.switch], vm.port, ip=str(vm.ip))
        for name, (tcp, udp) in SERVERS.items():
            start_servers(hosts[name], tcp, udp)
        for bridge in bridges.values():
            ctl.wait_connected(bridge, 20)
        out = OutLab(lab, ctl, hosts, build_fabric(model), metrics)
        try:
            wait_until(lambda: out.works(Case("c1", "c2", "icmp"), 1), 30, message="c1 -> c2 ping (link up)")
            wait_until(lambda: out.works(Case("ba", "bb", "icmp"), 1), 10, message="ba -> bb ping")
            for a in hosts.values():  # ARP is allowed everywhere: fill every cache
                for b in hosts.values():
                    if a is not b and a.ip and b.ip and a.ip.rsplit(".", 1)[0] == b.ip.rsplit(".", 1)[0]:
                        a.ping(b, timeout=0.2)
            yield out
        finally:
            print(ctl.log_text()[-5000:])


def test_server_acl_out_admits_port_80_only_from_every_client(out_lab: OutLab) -> None:
    for client in ("c1", "c2", "snd"):  # b1 like web, b2, and a client with its own acl_in
        assert out_lab.works_soon(Case(client, "web", "tcp", 80)), f"{client} -> web:80"
        assert not out_lab.works(Case(client, "web", "tcp", 22), 0.5), f"{client} -> web:22"
    assert not out_lab.works(Case("c1", "web", "udp", 53), 0.5)
    assert not out_lab.works(Case("c2", "web", "icmp"), 0.5)


def test_network_acl_out_applies_to_every_vm(out_lab: OutLab) -> None:
    for src, dst in (("ba", "bb"), ("bb", "ba"), ("ba", "bc"), ("bc", "ba")):
        assert out_lab.works_soon(Case(src, dst, "tcp", 80)), f"{src} -> {dst}:80"
        assert not out_lab.works(Case(src, dst, "tcp", 22), 0.5), f"{src} -> {dst}:22"
        assert not out_lab.works(Case(src, dst, "udp", 53), 0.5), f"{src} -> {dst} udp/53"
    assert out_lab.works_soon(Case("bb", "ba", "icmp"))
    # bc's own acl_out admits only ba: the network's list and the VM's both apply
    assert not out_lab.works(Case("bb", "bc", "tcp", 80), 0.5)
    assert not out_lab.works(Case("bb", "bc", "icmp"), 0.5)


def test_sender_acl_in_and_receiver_acl_out_both_apply(out_lab: OutLab) -> None:
    assert out_lab.works_soon(Case("snd", "rcv", "tcp", 9002))  # both allow
    assert not out_lab.works(Case("snd", "rcv", "tcp", 9000), 0.5)  # acl_in allows, acl_out denies
    assert not out_lab.works(Case("snd", "rcv", "tcp", 9001), 0.5)  # acl_in denies, acl_out allows
    assert out_lab.works_soon(Case("c1", "rcv", "tcp", 9001))  # without snd's acl_in it passes
    assert not out_lab.works(Case("c2", "rcv", "tcp", 9000), 0.5)  # rcv's acl_out alone, same bridge


def test_stateful_acl_out_admits_replies_despite_a_deny_all_acl_in(out_lab: OutLab) -> None:
    for client in ("c1", "c2"):  # across the link and on srv's bridge
        assert out_lab.works_soon(Case(client, "srv", "tcp", 80)), f"{client} -> srv:80"
        assert out_lab.works_soon(Case(client, "srv", "udp", 5353)), f"{client} -> srv udp/5353"
        assert not out_lab.works(Case(client, "srv", "tcp", 22), 0.5)
        assert not out_lab.works(Case(client, "srv", "icmp"), 0.5)
        assert not out_lab.works(Case("srv", client, "tcp", 7000), 0.5), f"srv -> {client}:7000"
        assert not out_lab.works(Case("srv", client, "icmp"), 0.5)


def test_a_reply_a_stateful_acl_in_lets_out_still_meets_the_clients_acl_out(out_lab: OutLab) -> None:
    # cl opens the connection and nothing stateful on its way allows it; the server's stateful acl_in
    # lets the SYN-ACK out, but a reply opens nothing: cl's acl_out refuses it (README "ACLs")
    for server in ("sa", "sb"):  # on cl's bridge and across the link
        assert out_lab.works_soon(Case("c1", server, "tcp", 22)), f"c1 -> {server}:22"  # the server answers
        assert not out_lab.works(Case("cl", server, "tcp", 22), 1.0), f"cl -> {server}:22"


def test_udp_to_a_closed_port_behind_a_stateful_allow_is_refused(out_lab: OutLab) -> None:
    for client in ("c1", "c2"):
        assert wait_until(lambda: out_lab.udp_outcome(client, "srv", 53) == "refused", 6, message=client)
    # not admitted by srv's acl_out: the datagram is dropped, no port unreachable comes back
    assert out_lab.udp_outcome("c1", "srv", 54, timeout=0.5) == "timeout"


def test_only_icmp_errors_of_a_live_connection_are_admitted(out_lab: OutLab) -> None:
    c1 = out_lab.hosts["c1"]
    sport = 41353
    udp = [sys.executable, "-c", UDP_FROM, out_lab.ip("srv"), "5353", str(sport)]
    assert wait_until(lambda: c1.run(udp).returncode == 0, 6, message="c1:41353 -> srv udp/5353")
    # related (the quoted datagram is that connection's): admitted past srv's deny-all acl_in
    assert out_lab.icmp_error_seen("srv", "c1", "13", ("udp", sport, 5353), 3.0)
    # the same error quoting a datagram no connection knows: not admitted
    assert not out_lab.icmp_error_seen("srv", "c1", "13", ("udp", sport + 1, 5353), 1.5)
    assert not out_lab.icmp_error_seen("srv", "c1", "3", ("udp", 41999, 53), 1.5)


def test_fragmentation_needed_of_an_allowed_tcp_connection_reaches_the_sender(out_lab: OutLab) -> None:
    sport = 41080
    hold = out_lab.hosts["c1"].popen([sys.executable, "-c", TCP_HOLD, out_lab.ip("srv"), "80", str(sport)])
    assert hold.stdout is not None and hold.stdout.readline().strip() == "up"
    try:
        assert out_lab.icmp_error_seen("srv", "c1", "4", ("tcp", sport, 80), 3.0)
        assert not out_lab.icmp_error_seen("srv", "c1", "4", ("tcp", sport + 1, 80), 1.5)
    finally:
        hold.kill()
        hold.wait()


def test_trace_agrees_with_ovs_mixing_acl_in_and_acl_out(out_lab: OutLab) -> None:
    assert len(CASES) >= 20
    disagreements, expected = trace_disagreements(out_lab.fabric, CASES, out_lab.ip, out_lab.works)
    assert sum(expected.values()) >= 8 and sum(not v for v in expected.values()) >= 8
    assert not disagreements, "\n".join(disagreements)


def test_acl_out_hits_are_counted_with_direction_out(out_lab: OutLab) -> None:
    port = out_lab.metrics

    def hits(acl: str, rule: str) -> float:
        return total(port, "vmn_acl_rule_hits_total", acl=acl, rule=rule, direction="out")

    allowed, denied = hits("web-80", "0"), hits("web-80", "implicit-deny")
    assert out_lab.works_soon(Case("c1", "web", "tcp", 80))
    for _ in range(2):
        assert not out_lab.works(Case("c2", "web", "tcp", 22), 0.3)
    wait_until(lambda: hits("web-80", "0") > allowed, 10, message="web-80 rule 0 hits (direction out) grow")
    wait_until(lambda: hits("web-80", "implicit-deny") >= denied + 2, 10, message="web-80 implicit-deny hits grow")
    denied = hits("rcv-out", "0")
    assert not out_lab.works(Case("c1", "rcv", "tcp", 9000), 0.3)
    wait_until(lambda: hits("rcv-out", "0") > denied, 10, message="rcv-out rule 0 (explicit deny) hits grow")
    # acl_in lists count with direction="in", and only there
    assert not out_lab.works(Case("snd", "rcv", "tcp", 9001), 0.3)
    wait_until(
        lambda: total(port, "vmn_acl_rule_hits_total", acl="snd-in", rule="0", direction="in") > 0,
        10,
        message="snd-in rule 0 hits (direction in)",
    )
    assert total(port, "vmn_acl_rule_hits_total", acl="web-80", direction="in") == 0
    assert total(port, "vmn_acl_rule_hits_total", acl="snd-in", direction="out") == 0
