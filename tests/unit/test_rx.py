"""The receive loop's framing and its shedding of repeated packet-ins, on raw OpenFlow 1.3 bytes."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from typing import Any

import pytest

from controller.app import VmnController  # noqa: F401  (imports os-ken in the order its modules need)
from controller.flows.pipeline import T_LEARN
from controller.rx import RxDatapath, Shedder, packet_in_key

LEARN = frozenset({T_LEARN})


def packet_in(src: bytes, in_port: int = 1, table: int = T_LEARN, vlan: int = 100) -> bytes:
    """An OpenFlow 1.3 PACKET_IN as OVS sends it: in_port match, a tagged frame (OpenFlow 1.3.5 §7.4.1)."""
    frame = b"\x02\xee\xee\xee\xee\x02" + src + struct.pack("!HHH", 0x8100, vlan, 0x88B5) + bytes(46)
    match = struct.pack("!HHIIxxxx", 1, 12, 0x80000004, in_port)
    body = struct.pack("!IHBBQ", 0xFFFFFFFF, len(frame), 1, table, 0) + match + b"\0\0" + frame
    return struct.pack("!BBHI", 4, 10, 8 + len(body), 7) + body


A, B = b"\x02\xb2\x00\x00\x00\x01", b"\x02\xb2\x00\x00\x00\x02"
HELLO = struct.pack("!BBHI", 4, 0, 8, 1)
ECHO_REQUEST = struct.pack("!BBHI", 4, 2, 12, 2) + b"ping"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_key_names_table_port_and_source_only() -> None:
    a1 = packet_in(A)
    assert packet_in_key(a1, 0, len(a1), LEARN) == packet_in_key(a1 + b"junk", 0, len(a1), LEARN)
    keys = {
        packet_in_key(m, 0, len(m), LEARN) for m in (a1, packet_in(B), packet_in(A, in_port=2), packet_in(A, vlan=200))
    }
    assert len(keys) == 4 and None not in keys
    other = packet_in(A, table=0)
    assert packet_in_key(other, 0, len(other), LEARN) is None  # not a per-source table
    assert packet_in_key(a1[:40], 0, 40, LEARN) is None  # too short to hold the frame's source


def test_a_repeat_is_shed_while_its_first_is_in_flight_only() -> None:
    clock = Clock()
    shedder = Shedder(LEARN, clock=clock, in_flight=5)
    a, b = packet_in(A), packet_in(B)
    assert not shedder.shed(a, 0, len(a))  # first: passed, in flight
    clock.now += 3  # the app thread lags behind a burst
    assert shedder.shed(a, 0, len(a))
    assert not shedder.shed(b, 0, len(b))  # another source
    moved = packet_in(A, in_port=2)
    assert not shedder.shed(moved, 0, len(moved))  # the same MAC on another port is news (a move)
    shedder.handled(a)  # whatever the app decided, the next frame is heard at once
    assert not shedder.shed(a, 0, len(a))
    assert shedder.shed_count == 1


def test_a_packet_in_the_app_never_reports_is_passed_again_after_in_flight() -> None:
    clock = Clock()
    shedder = Shedder(LEARN, clock=clock, in_flight=5)
    a = packet_in(A)
    assert not shedder.shed(a, 0, len(a))
    clock.now += 5.1
    assert not shedder.shed(a, 0, len(a))


def test_keys_are_pruned_when_their_windows_are_over() -> None:
    clock = Clock()
    shedder = Shedder(LEARN, clock=clock)
    for i in range(Shedder.PRUNE_AT - 1):
        m = packet_in(b"\x02" + i.to_bytes(5, "big"))
        shedder.shed(m, 0, len(m))
    clock.now += shedder.in_flight + 0.1
    last = packet_in(b"\x02\xff\xff\xff\xff\xff")
    shedder.shed(last, 0, len(last))
    assert len(shedder) == 1


def test_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="in_flight must be positive, got 0"):
        Shedder(LEARN, in_flight=0)


class Recording(RxDatapath):
    """The receive loop's framing with os-ken's real parser; dispatched messages are recorded."""

    def __init__(self) -> None:  # no socket: _dispatch_all is fed directly
        self.seen: list[Any] = []

    def _dispatch(self, msg: Any) -> None:
        self.seen.append(msg)


@pytest.mark.parametrize("cut", [1, 7, 9, 30, 61])
def test_messages_split_anywhere_are_parsed_once_and_repeats_shed(cut: int) -> None:
    dp = Recording()
    dp.shedder = Shedder(LEARN)
    stream = HELLO + packet_in(A) + packet_in(A) + packet_in(B) + ECHO_REQUEST
    buf = bytearray()
    for start in range(0, len(stream), cut):
        buf += stream[start : start + cut]
        del buf[: dp._dispatch_all(buf)]
    assert not buf
    assert [type(m).__name__ for m in dp.seen] == ["OFPHello", "OFPPacketIn", "OFPPacketIn", "OFPEchoRequest"]
    assert [bytes(m.data[6:12]) for m in dp.seen[1:3]] == [A, B]
    assert dp.seen[1].match["in_port"] == 1 and dp.shedder.shed_count == 1


def test_without_a_shedder_every_packet_in_is_parsed() -> None:
    dp = Recording()
    stream = bytearray(packet_in(A) * 3)
    assert dp._dispatch_all(stream) == len(stream)
    assert len(dp.seen) == 3


def test_the_loop_reads_until_the_switch_closes_then_closes_its_socket() -> None:
    ours, switch = socket.socketpair()
    dp = Recording()
    dp.socket, dp.state = ours, "main"
    switch.sendall(HELLO + packet_in(A) + packet_in(A))
    switch.close()
    dp._recv_loop()
    assert [type(m).__name__ for m in dp.seen] == ["OFPHello", "OFPPacketIn", "OFPPacketIn"]  # no shedder here
    assert ours.fileno() == -1


def _connected() -> tuple[RxDatapath, socket.socket]:
    """A datapath on one end of a loopback TCP connection (no threads running) and the switch's end."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        switch = socket.create_connection(server.getsockname(), timeout=5.0)
        ours, address = server.accept()
    return RxDatapath(ours, address), switch


def _received(switch: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes from the switch's end (its timeout bounds the wait)."""
    data = b""
    while len(data) < size:
        chunk = switch.recv(size - len(data))
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def _pending(switch: socket.socket) -> bool:
    ready, _, _ = select.select([switch], [], [], 0.2)
    return bool(ready)


def test_direct_send_writes_on_the_senders_thread() -> None:
    dp, switch = _connected()
    dp.direct_send = True
    assert dp.send(HELLO)  # no send thread runs: only a direct write reaches the switch
    assert _received(switch, len(HELLO)) == HELLO
    assert dp.send_q.empty()


def test_direct_sends_queue_behind_what_is_still_queued() -> None:
    dp, switch = _connected()
    assert dp.send(HELLO)  # before direct_send: queued for the send thread
    dp.direct_send = True
    assert dp.send(ECHO_REQUEST)  # HELLO is still queued: this one queues behind it
    assert not _pending(switch)
    sender = threading.Thread(target=dp._send_loop)
    sender.start()
    assert _received(switch, len(HELLO + ECHO_REQUEST)) == HELLO + ECHO_REQUEST
    deadline = time.monotonic() + 5
    while dp._queued and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dp._queued == 0
    assert dp.send(HELLO) and _received(switch, len(HELLO)) == HELLO
    assert dp.send(b"", close_socket=True)  # ends the send thread, as in os-ken
    sender.join(5)
    assert not sender.is_alive() and dp.send_q is None
    assert not dp.send(HELLO)  # no more sends


def test_a_failed_direct_write_ends_the_connection_through_the_send_thread() -> None:
    dp, switch = _connected()
    dp.direct_send = True
    switch.close()
    assert not dp.send(bytes(1 << 20))  # the peer is gone: the write fails
    sender = threading.Thread(target=dp._send_loop)
    sender.start()
    sender.join(5)
    assert not sender.is_alive() and dp.send_q is None
    assert not dp.send(HELLO)


def _fields(msg: Any) -> dict[str, Any]:
    """Every field of a parsed PACKET_IN, the match as os-ken's JSON form."""
    return {
        "head": (msg.version, msg.msg_type, msg.msg_len, msg.xid),
        "body": (msg.buffer_id, msg.total_len, msg.reason, msg.table_id, msg.cookie),
        "match": msg.match.to_jsondict(),
        "data": (type(msg.data), bytes(msg.data)),
        "buf": (type(msg.buf), bytes(msg.buf)),
    }


def test_packet_ins_with_a_known_match_parse_as_os_ken_does() -> None:
    cached, plain = Recording(), Recording()
    cached.cache_matches, cached._matches = True, {}
    stream = bytearray(packet_in(A) + packet_in(B) + packet_in(A, in_port=2) + packet_in(B, in_port=2))
    padded = packet_in(B) + bytes(4)  # 4 bytes past the frame's total_len: os-ken cuts them off
    stream += packet_in(A, table=0) + padded[:2] + struct.pack("!H", len(padded)) + padded[4:]  # another table
    for dp in (cached, plain):
        assert dp._dispatch_all(bytearray(stream)) == len(stream)
    assert [_fields(m) for m in cached.seen] == [_fields(m) for m in plain.seen]
    assert len(cached._matches) == 2  # in_port 1 and 2
    assert cached.seen[1].match is cached.seen[0].match  # parsed once, shared
    assert [m.match["in_port"] for m in cached.seen] == [1, 1, 2, 2, 1, 1]
