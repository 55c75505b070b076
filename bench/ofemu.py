"""A cbench-style emulated OpenFlow 1.3 switch that measures packet-in service.

It connects to a controller over TCP, completes the handshake (HELLO,
FEATURES_REPLY with ``--dpid``, port-desc and empty flow-stats multipart
replies, barrier/echo/role replies, ONF bundle open/commit replies), then
keeps up to ``--window`` PACKET_INs outstanding. Each carries a 64-byte
802.1Q-tagged frame (VLAN ``--vlan``) from port 1 with a fresh source MAC,
all addressed to one destination MAC that was announced once from port 2
beforehand, so each needs a learning decision and a learning switch that
knows the destination installs a flow. PACKET_INs use the learn table's id and
``reason`` OFPR_ACTION, like a copy from VMN's learn table.

A packet-in counts as answered when a top-level FLOW_MOD or an ONF bundle
COMMIT request arrives (one per learning decision for both a textbook
switch and VMN). If the window stays full and nothing arrives for
``--stall`` seconds, the outstanding packet-ins are written off as lost.

Standard library only. Run ``python -m bench.ofemu --port P --dpid D``;
prints one JSON object (see :class:`EmuResult`) on stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass

from bench.procstat import cpu_seconds
from controller.flows.pipeline import T_LEARN

OFP_VERSION = 4
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY, EXPERIMENTER = 0, 1, 2, 3, 4
FEATURES_REQUEST, FEATURES_REPLY = 5, 6
GET_CONFIG_REQUEST, GET_CONFIG_REPLY = 7, 8
PACKET_IN, FLOW_MOD = 10, 14
MULTIPART_REQUEST, MULTIPART_REPLY = 18, 19
BARRIER_REQUEST, BARRIER_REPLY = 20, 21
ROLE_REQUEST, ROLE_REPLY = 24, 25
MP_PORT_DESC = 13
ONF_EXPERIMENTER = 0x4F4E4600
ONF_BUNDLE_CONTROL = 2300
ONF_BUNDLE_ADD = 2301
BUNDLE_COMMIT_REQUEST = 4
OFPR_ACTION = 1
LEARN_TABLE = T_LEARN
ETH_VLAN, ETH_EXPERIMENTAL = 0x8100, 0x88B5
DST_MAC = bytes.fromhex("02eeeeeeee02")


class ControllerClosed(ConnectionError):
    """The controller closed the connection."""


@dataclass(frozen=True)
class EmuConfig:
    """What to connect to and how hard to push."""

    port: int
    dpid: int
    host: str = "127.0.0.1"
    ports: int = 2
    vlan: int = 1
    window: int = 500
    warmup: float = 0.5
    duration: float = 3.0
    controller_pid: int | None = None
    stall: float = 0.5
    connect_timeout: float = 20.0
    settle_quiet: float = 0.5
    settle_timeout: float = 15.0


@dataclass(frozen=True)
class EmuResult:
    """Counts over the measured interval (after warm-up).

    ``rate`` is answered packet-ins per second; ``ctrl_cpu_us`` the
    controller's CPU microseconds per answered packet-in (None without a
    pid); ``emu_cpu_share`` the fraction of one core the emulator itself used;
    ``macs_total`` the fresh source MACs sent since the start (warm-up included).
    """

    seconds: float
    packet_ins: int
    answered: int
    flow_mods: int
    bundle_commits: int
    lost: int
    rate: float
    ctrl_cpu_us: float | None
    emu_cpu_share: float
    macs_total: int


def _header(msg_type: int, length: int, xid: int) -> bytes:
    return struct.pack("!BBHI", OFP_VERSION, msg_type, length, xid)


def packet_in_parts(in_port: int, vlan: int) -> tuple[bytes, bytes]:
    """Bytes before and after the 6-byte source MAC of a PACKET_IN (xid 0, no buffer)."""
    frame_tail = struct.pack("!HHH", ETH_VLAN, vlan & 0x0FFF, ETH_EXPERIMENTAL) + bytes(46)
    frame_len = 12 + len(frame_tail)
    match = struct.pack("!HHIIxxxx", 1, 12, 0x80000004, in_port)  # OXM in_port, padded to 16
    body = struct.pack("!IHBBQ", 0xFFFFFFFF, frame_len, OFPR_ACTION, LEARN_TABLE, 0) + match + b"\0\0"
    length = 8 + len(body) + frame_len
    return _header(PACKET_IN, length, 0) + body + DST_MAC, frame_tail


def _port(port_no: int, dpid: int) -> bytes:
    mac = struct.pack("!HI", 0x0200 | (dpid & 0xFF), port_no)
    name = f"emu{dpid & 0xFFFF:x}-{port_no}".encode()[:15]
    return struct.pack("!I4x6s2x16sIIIIIIII", port_no, mac, name, 0, 0, 0x820, 0x820, 0x820, 0, 10_000_000, 10_000_000)


class EmulatedSwitch:
    """One OpenFlow 1.3 connection; :meth:`run` returns an :class:`EmuResult`."""

    def __init__(self, cfg: EmuConfig) -> None:
        self.cfg = cfg
        self.sock = self._connect()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.sent = self.answered = self.flow_mods = self.commits = self.lost = 0
        self.last_rx = time.monotonic()
        self.features_done = False
        self.next_mac = 1
        self._head, self._tail = packet_in_parts(1, cfg.vlan)

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.cfg.connect_timeout
        while True:
            try:
                sock = socket.create_connection((self.cfg.host, self.cfg.port), timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock

    # -- message handling --------------------------------------------------
    def _handle(self, msg: memoryview) -> None:
        msg_type = msg[1]
        xid = struct.unpack_from("!I", msg, 4)[0]
        if msg_type == FLOW_MOD:
            self.flow_mods += 1
            self.answered += 1
        elif msg_type == EXPERIMENTER:
            self._experimenter(msg)
        elif msg_type == ECHO_REQUEST:
            self.outbuf += _header(ECHO_REPLY, len(msg), xid) + msg[8:]
        elif msg_type == FEATURES_REQUEST:
            self.outbuf += _header(FEATURES_REPLY, 32, xid) + struct.pack(
                "!QIBB2xII", self.cfg.dpid, 0, 254, 0, 0x4F, 0
            )
            self.features_done = True
        elif msg_type == MULTIPART_REQUEST:
            self._multipart(msg, xid)
        elif msg_type == BARRIER_REQUEST:
            self.outbuf += _header(BARRIER_REPLY, 8, xid)
        elif msg_type == GET_CONFIG_REQUEST:
            self.outbuf += _header(GET_CONFIG_REPLY, 12, xid) + struct.pack("!HH", 0, 0xFFFF)
        elif msg_type == ROLE_REQUEST:
            self.outbuf += _header(ROLE_REPLY, len(msg), xid) + msg[8:]

    def _experimenter(self, msg: memoryview) -> None:
        if len(msg) < 24:
            return
        exp_id, exp_type = struct.unpack_from("!II", msg, 8)
        if exp_id != ONF_EXPERIMENTER or exp_type != ONF_BUNDLE_CONTROL:
            return
        ctrl_type = struct.unpack_from("!H", msg, 20)[0]
        if ctrl_type == BUNDLE_COMMIT_REQUEST:
            self.commits += 1
            self.answered += 1
        reply = bytearray(msg)  # same bundle id and flags; request type + 1 is its reply
        struct.pack_into("!H", reply, 20, ctrl_type + 1)
        self.outbuf += reply

    def _multipart(self, msg: memoryview, xid: int) -> None:
        mp_type = struct.unpack_from("!H", msg, 8)[0]
        body = b""
        if mp_type == MP_PORT_DESC:
            body = b"".join(_port(p, self.cfg.dpid) for p in range(1, self.cfg.ports + 1))
        self.outbuf += _header(MULTIPART_REPLY, 16 + len(body), xid) + struct.pack("!HH4x", mp_type, 0) + body

    # -- I/O ---------------------------------------------------------------
    def _packet_ins(self, count: int) -> bytes:
        head, tail, first = self._head, self._tail, self.next_mac
        self.next_mac += count
        return b"".join(head + (0x020000000000 | (first + i)).to_bytes(6, "big") + tail for i in range(count))

    def _pump(self, timeout: float) -> bool:
        """One round of select/recv/send; True if anything was received."""
        want_write = bool(self.outbuf)
        readable, writable, _ = select.select([self.sock], [self.sock] if want_write else [], [], timeout)
        got = False
        if readable:
            data = self.sock.recv(1 << 18)
            if not data:
                raise ControllerClosed("controller closed the connection")
            self.inbuf += data
            got = True
            self.last_rx = time.monotonic()
            self._parse()
        if writable and self.outbuf:
            try:
                sent = self.sock.send(self.outbuf)
            except BlockingIOError:
                sent = 0
            del self.outbuf[:sent]
        return got

    def _parse(self) -> None:
        buf = self.inbuf
        view = memoryview(buf)
        off, end = 0, len(buf)
        while end - off >= 8:
            length = (buf[off + 2] << 8) | buf[off + 3]
            if length < 8:
                raise ValueError(f"bad OpenFlow length {length}")
            if end - off < length:
                break
            self._handle(view[off : off + length])
            off += length
        view.release()
        del buf[:off]

    def settle(self) -> None:
        """Answer the handshake until the controller has been quiet for a while."""
        self.outbuf += _header(HELLO, 8, 1)
        deadline = time.monotonic() + self.cfg.settle_timeout
        while time.monotonic() < deadline:
            self._pump(0.05)
            quiet = time.monotonic() - self.last_rx
            if self.features_done and not self.outbuf and quiet >= self.cfg.settle_quiet:
                return
        raise TimeoutError("controller did not finish the handshake")

    def prime(self) -> None:
        """Announce the destination MAC from port 2, then settle."""
        head, tail = packet_in_parts(2, self.cfg.vlan)
        self.outbuf += head + DST_MAC + tail
        start = time.monotonic()
        while time.monotonic() - start < self.cfg.settle_quiet or self.outbuf:
            self._pump(0.05)

    def drive(self, seconds: float) -> None:
        """Keep the window of outstanding packet-ins full for ``seconds``."""
        window = self.cfg.window
        deadline = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            outstanding = self.sent - self.answered - self.lost
            if outstanding < window and len(self.outbuf) < 65536:
                count = min(window - outstanding, 256)
                self.outbuf += self._packet_ins(count)
                self.sent += count
            elif outstanding >= window and now - self.last_rx > self.cfg.stall:
                self.lost += outstanding
                self.last_rx = now
            self._pump(0.01)

    def run(self) -> EmuResult:
        """Handshake, prime, warm up, then measure for ``duration`` seconds."""
        self.settle()
        self.prime()
        self.drive(self.cfg.warmup)
        pid = self.cfg.controller_pid
        base = (self.sent, self.answered, self.flow_mods, self.commits, self.lost)
        cpu0 = cpu_seconds(pid) if pid else 0.0
        own0 = _own_cpu()
        t0 = time.monotonic()
        self.drive(self.cfg.duration)
        seconds = time.monotonic() - t0
        cpu1 = cpu_seconds(pid) if pid else 0.0
        own = _own_cpu() - own0
        sent, answered, flow_mods, commits, lost = (
            now - then
            for now, then in zip(
                (self.sent, self.answered, self.flow_mods, self.commits, self.lost), base, strict=False
            )
        )
        ctrl_us = (cpu1 - cpu0) / answered * 1e6 if pid and answered else None
        return EmuResult(
            seconds,
            sent,
            answered,
            flow_mods,
            commits,
            lost,
            answered / seconds,
            ctrl_us,
            own / seconds,
            self.next_mac - 1,
        )

    def close(self) -> None:
        self.sock.close()


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parse_args(argv: list[str]) -> EmuConfig:
    """Command-line options -> :class:`EmuConfig`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True, help="controller TCP port on 127.0.0.1")
    p.add_argument("--dpid", type=lambda s: int(s, 0), required=True)
    p.add_argument("--vlan", type=int, default=1)
    p.add_argument("--window", type=int, default=500, help="packet-ins outstanding at most")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--pid", type=int, default=None, help="controller pid, for its CPU time")
    a = p.parse_args(argv)
    return EmuConfig(
        port=a.port,
        dpid=a.dpid,
        vlan=a.vlan,
        window=a.window,
        warmup=a.warmup,
        duration=a.duration,
        controller_pid=a.pid,
    )


def main(argv: list[str] | None = None) -> int:
    """Run one measurement and print its :class:`EmuResult` as JSON."""
    switch = EmulatedSwitch(parse_args(sys.argv[1:] if argv is None else argv))
    try:
        result = switch.run()
    finally:
        switch.close()
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
