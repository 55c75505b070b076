"""TCP/UDP servers and probes inside lab namespaces, for policy tests.

:func:`start_servers` runs one small Python process in a host's namespace
that accepts TCP on some ports (answers ``ok``) and echoes UDP on others;
:func:`tcp_connects` / :func:`udp_answers` say whether a connection or a
datagram round trip works, within a timeout; :class:`Case`, :func:`exchange_works`
and :func:`trace_disagreements` compare ``vmn trace`` with what real OVS does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from controller.tools.lab import Host
from controller.tools.trace import Fabric, Proto, trace

SERVER = r"""
import selectors, socket, sys
tcp = [int(p) for p in sys.argv[1].split(",") if p]
udp = [int(p) for p in sys.argv[2].split(",") if p]
sel = selectors.DefaultSelector()
for port in tcp:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64); sel.register(s, selectors.EVENT_READ, "tcp")
for port in udp:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    sel.register(s, selectors.EVENT_READ, "udp")
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.data == "tcp":
            conn, _ = key.fileobj.accept()
            try:
                conn.sendall(b"ok\n")
            except OSError:
                pass
            conn.close()
        else:
            data, peer = key.fileobj.recvfrom(2048)
            key.fileobj.sendto(data, peer)
"""

TCP_CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
s.settimeout(float(sys.argv[3]))
sys.exit(0 if s.recv(16).startswith(b"ok") else 1)
"""

UDP_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[3]))
for _ in range(2):
    s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
    try:
        if s.recvfrom(64)[0] == b"ping":
            sys.exit(0)
    except OSError:
        pass
sys.exit(1)
"""


def start_servers(host: Host, tcp: Iterable[int] = (), udp: Iterable[int] = ()) -> subprocess.Popen[str]:
    """Serve TCP on ``tcp`` and UDP echo on ``udp`` in ``host``; returns once listening."""
    proc = host.popen([sys.executable, "-c", SERVER, ",".join(map(str, tcp)), ",".join(map(str, udp))])
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(
            f"servers in {host.name} did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc


def tcp_connects(host: Host, ip: str, port: int, timeout: float = 1.0) -> bool:
    """Whether ``host`` completes a TCP connection to ``ip:port`` and reads the answer."""
    return (
        host.run([sys.executable, "-c", TCP_CLIENT, ip, str(port), str(timeout)], timeout=timeout * 3 + 10).returncode
        == 0
    )


def udp_answers(host: Host, ip: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a datagram from ``host`` to ``ip:port`` is echoed back (two tries)."""
    return (
        host.run([sys.executable, "-c", UDP_CLIENT, ip, str(port), str(timeout)], timeout=timeout * 3 + 10).returncode
        == 0
    )


UDP_REFUSED = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[3]))
s.connect((sys.argv[1], int(sys.argv[2])))
for _ in range(3):
    s.send(b"ping")
    try:
        s.recv(64)
        print("answer")
        break
    except ConnectionRefusedError:
        print("refused")
        break
    except TimeoutError:
        pass
else:
    print("timeout")
"""


def udp_outcome(host: Host, ip: str, port: int, timeout: float = 1.0) -> str:
    """``refused`` when an ICMP port unreachable ends a connected UDP socket's ``recv`` (ECONNREFUSED),
    ``answer`` or ``timeout`` (three tries of ``timeout`` s): ``host`` sends to ``ip:port``."""
    out = host.run([sys.executable, "-c", UDP_REFUSED, ip, str(port), str(timeout)], timeout=timeout * 3 + 10)
    return out.stdout.strip()


@dataclass(frozen=True)
class Case:
    """One exchange: ``src`` opens ``proto`` (to ``port``) towards ``dst`` and expects an answer."""

    src: str
    dst: str
    proto: Proto
    port: int | None = None

    def __str__(self) -> str:
        return f"{self.src}->{self.dst} {self.proto}{'' if self.port is None else f'/{self.port}'}"


def exchange_works(src: Host, ip: str, proto: Proto, port: int | None, timeout: float) -> bool:
    """Does ``src`` get an answer from ``ip`` (a ping, a TCP connection to ``port`` or a UDP echo)?"""
    if proto == "icmp":
        return src.ping(ip, count=1, timeout=timeout)
    assert port is not None
    if proto == "tcp":
        return tcp_connects(src, ip, port, timeout)
    return udp_answers(src, ip, port, timeout)


def trace_disagreements(
    fabric: Fabric, cases: Iterable[Case], ip_of: Callable[[str], str], works: Callable[[Case, float], bool]
) -> tuple[list[str], dict[Case, bool]]:
    """Where ``vmn trace`` and real OVS (``works(case, timeout)``) disagree, and what trace said per case.

    An exchange trace allows gets three tries of 1 s (a first packet may
    find a cold path); one it denies, one try of 0.5 s.
    """
    expected = {c: trace(fabric, c.src, ip_of(c.dst), c.proto, c.port).connects for c in cases}
    out = []
    for case, allowed in expected.items():
        got = any(works(case, 1.0) for _ in range(3)) if allowed else works(case, 0.5)
        if got != allowed:
            out.append(f"{case}: trace says {'allow' if allowed else 'deny'}, OVS {'passed' if got else 'dropped'}")
    return out, expected


NAMED_SERVER = r"""
import socket, sys, threading
name = sys.argv[2].encode()
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(128)
print("ready", flush=True)
def serve(conn):
    try:
        conn.sendall(name + b"\n")
        while True:
            data = conn.recv(1024)
            if not data:
                break
            conn.sendall(data)
    except OSError:
        pass
    conn.close()
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

FAN_OUT = r"""
import socket, sys
ip, port, first, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
for sport in range(first, first + count):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(timeout)
    try:
        s.bind(("0.0.0.0", sport)); s.connect((ip, port))
        print(s.recv(64).decode().strip() or "-", flush=True)
    except OSError as err:
        print("-", flush=True)
    s.close()
"""


def start_named_server(host: Host, port: int, name: str) -> subprocess.Popen[str]:
    """A TCP server on ``port`` that greets with ``name`` and then echoes; returns once listening."""
    proc = host.popen([sys.executable, "-c", NAMED_SERVER, str(port), name])
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"server in {host.name} did not start")
    return proc


def fan_out(host: Host, ip: str, port: int, first_sport: int, count: int, timeout: float = 2.0) -> list[str]:
    """Open ``count`` connections from source ports ``first_sport``...; each one's greeting, or ``-``."""
    out = host.run(
        [sys.executable, "-c", FAN_OUT, ip, str(port), str(first_sport), str(count), str(timeout)],
        timeout=count * timeout + 20,
    )
    return out.stdout.split()
