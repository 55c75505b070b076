"""TCP/UDP servers and probes inside lab namespaces, for policy tests.

:func:`start_servers` runs one small Python process in a host's namespace
that accepts TCP on some ports (answers ``ok``) and echoes UDP on others;
:func:`tcp_connects` / :func:`udp_answers` say whether a connection or a
datagram round trip works, within a timeout.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable

from tests.netlab import Host

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
        raise RuntimeError(f"servers in {host.name} did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc


def tcp_connects(host: Host, ip: str, port: int, timeout: float = 1.0) -> bool:
    """Whether ``host`` completes a TCP connection to ``ip:port`` and reads the answer."""
    return host.run([sys.executable, "-c", TCP_CLIENT, ip, str(port), str(timeout)],
                    timeout=timeout * 3 + 10).returncode == 0


def udp_answers(host: Host, ip: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a datagram from ``host`` to ``ip:port`` is echoed back (two tries)."""
    return host.run([sys.executable, "-c", UDP_CLIENT, ip, str(port), str(timeout)],
                    timeout=timeout * 3 + 10).returncode == 0
