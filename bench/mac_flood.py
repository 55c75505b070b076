"""Send frames from many fresh source MACs out of one interface (AF_PACKET raw socket).

Run inside a namespace with Debian's ``/usr/bin/python3`` (standard library only)::

    mac_flood.py IFACE COUNT PPS DST_MAC SRC_PREFIX MAX_SECONDS [BURST_PAUSE [BURST_SIZE]]

Source MACs are ``SRC_PREFIX`` (two octets, e.g. ``02:b1``) followed by a
4-octet counter 1..COUNT; every frame goes to ``DST_MAC`` with the local
experimental ethertype 0x88b5. The MACs are sent round-robin, again and
again (a host that is not learned yet keeps talking), paced at ``PPS``
frames per second, until ``MAX_SECONDS`` have passed or the process is
terminated. With ``BURST_PAUSE`` > 0 (seconds) they arrive in bursts instead,
as when many VMs boot at once or a host reconnects: ``BURST_SIZE`` MACs
(default all) send one frame each, back to back as fast as the socket
takes them (``PPS`` ignored), then silence for ``BURST_PAUSE``, then the
next ``BURST_SIZE`` MACs in round-robin order, and so on. The first line printed is ``start <CLOCK_MONOTONIC seconds>``
taken just before the first frame; on exit it prints ``sent <frames>``.
"""

from __future__ import annotations

import signal
import socket
import sys
import time

BATCH = 50


def frames(count: int, dst: str, prefix: str) -> list[bytes]:
    """One minimum-size frame per source MAC ``prefix:00:00:00:01`` ... ``COUNT``."""
    head = bytes.fromhex(dst.replace(":", ""))
    src_head = bytes.fromhex(prefix.replace(":", ""))
    tail = b"\x88\xb5" + bytes(46)
    return [head + src_head + i.to_bytes(4, "big") + tail for i in range(1, count + 1)]


def main(argv: list[str]) -> int:
    """Flood until the time limit or SIGTERM; see the module docstring."""
    iface, count, pps, dst, prefix, max_seconds = argv[:6]
    pause = float(argv[6]) if len(argv) > 6 else 0.0
    todo = frames(int(count), dst, prefix)
    burst = int(argv[7]) if len(argv) > 7 else len(todo)
    rate, limit = float(pps), float(max_seconds)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    start = time.monotonic()
    print(f"start {start:.6f}", flush=True)
    sent = 0
    while pause > 0 and not stop and time.monotonic() - start < limit:
        for i in range(burst):
            sock.send(todo[(sent + i) % len(todo)])
        sent += burst
        time.sleep(pause)
    while pause <= 0 and not stop and time.monotonic() - start < limit:
        for i in range(BATCH):
            sock.send(todo[(sent + i) % len(todo)])
        sent += BATCH
        ahead = start + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    print(f"sent {sent}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
