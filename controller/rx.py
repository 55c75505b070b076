"""The switch connection's receive loop: read the socket in chunks, shed repeated packet-ins unparsed.

os-ken's ``Datapath._recv_loop`` reads one message with two ``recv()`` calls
(its 8-byte header, then the rest) and parses every message into objects
before any app sees it. Under a burst of new hosts most packet-ins are
repeats: every frame a host sends before its learn rule is in force is
copied to the controller, and each repeat costs the parse, an event and
a queue hand-off to the app thread only to be found "known" there.

:class:`RxDatapath` replaces that loop: one ``recv()`` of up to
:data:`RECV_CHUNK` bytes takes every message the switch has queued, and a
PACKET_IN that :class:`Shedder` recognises as a repeat is dropped from the
raw bytes, before os-ken parses it. Everything else goes through os-ken
exactly as before (same parser, same events, same handlers).

A repeat is a PACKET_IN of a table whose packet-ins mean the same for every
frame of one source on one port (the pipeline's ``Trap.per_source``: the
learn table), with the same table, match (``in_port`` and the other
pipeline fields OVS reports) and frame bytes 6-16 (source MAC and the
802.1Q tag) as one still on its way to the app thread (parsed and queued,
not yet handled).
Layout: OpenFlow 1.3.5 §7.4.1 (``ofp_packet_in``: 8-byte header,
``buffer_id`` 4, ``total_len`` 2, ``reason`` 1, ``table_id`` 1, ``cookie`` 8,
then the ``ofp_match`` padded to 8 bytes, 2 bytes of padding, the frame).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from os_ken.controller import controller as osken_controller
from os_ken.controller import ofp_event
from os_ken.controller.handler import DEAD_DISPATCHER
from os_ken.lib import hub
from os_ken.ofproto import ofproto_parser, ofproto_v1_3_parser

LOG = logging.getLogger("vmn.rx")
OFP13_VERSION = 4
OFPT_PACKET_IN = 10
OFP_HEADER = struct.Struct("!BBHI")
MATCH_AT = 24
"""Offset of ``ofp_match`` in an OpenFlow 1.3 PACKET_IN."""
TABLE_AT = 15
SOURCE = slice(6, 16)
"""Frame bytes that name a source: the source MAC and the 802.1Q TPID and TCI after it."""
RECV_CHUNK = 256 * 1024
PACKET_IN_HEAD = struct.Struct("!IHBBQ")
"""``buffer_id``, ``total_len``, ``reason``, ``table_id``, ``cookie`` after the header (os-ken's pack string)."""
MATCH_CACHE = 1024
"""Distinct PACKET_IN match encodings kept at most (the in-port, mostly; cleared when full)."""
DEFAULT_IN_FLIGHT = 5.0
"""Seconds a source's repeats are shed at most while the app thread has not reported it."""


def packet_in_key(buf: bytes | bytearray | memoryview, start: int, length: int, tables: frozenset[int]) -> bytes | None:
    """The repeat key of the OpenFlow 1.3 PACKET_IN at ``buf[start:start+length]``: table id, match
    and source bytes of the frame; None if its table is not in ``tables`` or it is too short to hold
    a frame header.
    """
    end = start + length
    if length < MATCH_AT + 4 or buf[start + TABLE_AT] not in tables:
        return None
    match_len = (buf[start + MATCH_AT + 2] << 8) | buf[start + MATCH_AT + 3]
    frame = start + MATCH_AT + (match_len + 7) // 8 * 8 + 2
    if match_len < 4 or frame + SOURCE.stop > end:
        return None
    return (
        bytes(buf[start + TABLE_AT : start + TABLE_AT + 1])
        + bytes(buf[start + MATCH_AT : start + MATCH_AT + match_len])
        + bytes(buf[frame + SOURCE.start : frame + SOURCE.stop])
    )


class Shedder:
    """Sheds the repeats of one switch's per-source packet-ins; shared by its receive and app threads.

    The first PACKET_IN of a key goes on to os-ken and the key is in flight:
    its repeats are shed until the app thread has dealt with it
    (:meth:`handled`); the next one after that is heard, so no decision of
    the app is ever held (a host ignored while its port was not up yet, or
    learned again after a move, is heard at its next frame). A key the app
    never reports is passed again after ``in_flight`` seconds. So however
    far the app thread lags behind a burst, it parses each queued source
    about once. ``clock`` returns seconds (``time.monotonic``). Keys are
    forgotten when handled or when their window is over (pruned when the
    table doubles, at least :data:`PRUNE_AT` keys). The two threads only
    get, set and pop single dict items, atomic in CPython; a key lost to a
    concurrent prune is only heard once more.
    """

    PRUNE_AT = 4096

    def __init__(
        self, tables: frozenset[int], clock: Callable[[], float] = time.monotonic, in_flight: float = DEFAULT_IN_FLIGHT
    ) -> None:
        if in_flight <= 0:
            raise ValueError(f"in_flight must be positive, got {in_flight}")
        self.tables = tables
        self.in_flight = in_flight
        self.clock = clock
        self._until: dict[bytes, float] = {}
        self._prune_at = self.PRUNE_AT
        self.shed_count = 0
        """Packet-ins shed so far (read by the app thread for the metric)."""

    def shed(self, buf: bytes | bytearray, start: int, length: int) -> bool:
        """Receive thread: True if the PACKET_IN at ``buf[start:start+length]`` repeats a key in flight;
        otherwise (or not per-source) False, and its key is in flight.
        """
        key = packet_in_key(buf, start, length, self.tables)
        if key is None:
            return False
        now = self.clock()
        if self._until.get(key, 0.0) > now:
            self.shed_count += 1
            return True
        self._until[key] = now + self.in_flight
        if len(self._until) >= self._prune_at:
            self._until = {k: t for k, t in self._until.items() if t > now}
            self._prune_at = max(self.PRUNE_AT, 2 * len(self._until))
        return False

    def handled(self, raw: bytes | bytearray) -> None:
        """App thread: the PACKET_IN ``raw`` (the whole message) was dealt with; its next repeat is heard."""
        key = packet_in_key(raw, 0, len(raw), self.tables)
        if key is not None:
            self._until.pop(key, None)

    def __len__(self) -> int:
        return len(self._until)


class RxDatapath(osken_controller.Datapath):  # type: ignore[misc]
    """os-ken's ``Datapath`` with a chunked receive loop that consults :attr:`shedder` (None: shed nothing),
    and, once an app sets :attr:`direct_send`, sends written on the sender's own thread.

    os-ken's :meth:`send` queues every buffer for the connection's send
    thread: a queue hand-off and a thread wake-up per message, which on a
    learning burst cost as much as the socket write itself. With
    ``direct_send`` the sender writes the buffer itself, under a lock that
    the send thread takes too, so writes never interleave; while anything
    is still queued (sent before ``direct_send``, or with ``close_socket``)
    new sends queue behind it, so the order is kept. A failed direct write
    ends the connection the way a failed write of the send thread does
    (os-ken's loop ends, closing the write side). A switch that stops
    reading blocks the sender in the write, as a full send queue blocks it
    in os-ken.
    """

    shedder: Shedder | None = None
    direct_send = False
    cache_matches = False
    """Set by an app to have PACKET_IN matches parsed once per distinct match bytes (:meth:`_packet_in`)."""
    send_q: Any
    """os-ken's queue for the send thread (``hub.Queue``); None once that thread has ended."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tx_lock = threading.Lock()
        self._queued = 0
        self._matches: dict[bytes, Any] = {}
        """PACKET_IN match bytes -> os-ken's ``OFPMatch`` of them (:meth:`_packet_in`)."""
        """Buffers in os-ken's send queue not yet written (under ``_tx_lock``)."""

    def send(self, buf: bytes, close_socket: bool = False) -> bool:
        """Write ``buf`` now (``direct_send``, nothing queued), else queue it for the send thread as os-ken."""
        if self.direct_send and not close_socket:
            with self._tx_lock:
                if not self._queued and self.send_q is not None:
                    try:
                        self.socket.sendall(buf)
                        return True
                    except OSError as err:  # a timeout too: the connection is over, as in os-ken's loop
                        LOG.debug("write to switch at %s failed: %s", self.address, err)
                        buf, close_socket = b"", True  # the send thread ends the connection and cleans up
            if close_socket:
                self._enqueue(buf, close_socket)
                return False
        return self._enqueue(buf, close_socket)

    def _enqueue(self, buf: bytes, close_socket: bool) -> bool:
        """os-ken's send: queue ``buf`` for the send thread (blocks while its queue is full)."""
        with self._tx_lock:
            self._queued += 1
        if super().send(buf, close_socket):
            return True
        with self._tx_lock:
            self._queued -= 1
        return False

    def _send_loop(self) -> None:
        """os-ken's send thread, writing under the lock that direct sends take."""
        try:
            while self.state != DEAD_DISPATCHER:
                buf, close_socket = self.send_q.get()
                self._send_q_sem.release()
                with self._tx_lock:
                    try:
                        self.socket.sendall(buf)
                    finally:
                        self._queued -= 1
                if close_socket:
                    break
        except OSError as err:  # os-ken logs a timeout or a socket error at debug level and ends
            LOG.debug("write to switch at %s failed: %s", self.address, err)
        finally:
            q = self.send_q
            self.send_q = None  # no new sends; then release every sender waiting for a queue slot
            try:
                while q.get(block=False):
                    self._send_q_sem.release()
            except hub.QueueEmpty:
                pass
            self._close_write()

    def _recv_loop(self) -> None:
        """Read and dispatch until the switch closes or the datapath dies; then close the socket (as os-ken)."""
        buf = bytearray()
        try:
            while self.state != DEAD_DISPATCHER:
                try:
                    chunk = self.socket.recv(RECV_CHUNK)
                except (TimeoutError, ssl.SSLError):
                    continue  # a read timeout (eventlet raises SSLError for it on TLS)
                except (EOFError, OSError):
                    break
                if not chunk:
                    break
                buf += chunk
                del buf[: self._dispatch_all(buf)]
        finally:
            with contextlib.suppress(OSError):
                self.socket.close()

    def _dispatch_all(self, buf: bytearray) -> int:
        """Hand every whole message in ``buf`` to os-ken (repeats shed); return the bytes consumed."""
        pos, size = 0, len(buf)
        while size - pos >= OFP_HEADER.size:
            version, msg_type, msg_len, xid = OFP_HEADER.unpack_from(buf, pos)
            msg_len = max(msg_len, OFP_HEADER.size)  # a message claiming less: skip its header, as os-ken
            if size - pos < msg_len:
                break
            shedder = self.shedder
            if msg_type != OFPT_PACKET_IN or version != OFP13_VERSION:
                self._dispatch(ofproto_parser.msg(self, version, msg_type, msg_len, xid, buf[pos : pos + msg_len]))
            elif shedder is None or not shedder.shed(buf, pos, msg_len):
                self._dispatch(self._packet_in(msg_len, xid, buf[pos : pos + msg_len]))
            pos += msg_len
        return pos

    def _packet_in(self, msg_len: int, xid: int, raw: bytearray) -> Any:
        """An OpenFlow 1.3 PACKET_IN as os-ken's ``OFPPacketIn.parser`` makes it; with :attr:`cache_matches`,
        its match is parsed once per distinct match bytes and shared (read-only) by the next ones."""
        if not self.cache_matches or len(raw) < MATCH_AT + 4:
            return ofproto_parser.msg(self, OFP13_VERSION, OFPT_PACKET_IN, msg_len, xid, raw)
        match_len = (raw[MATCH_AT + 2] << 8) | raw[MATCH_AT + 3]
        key = bytes(raw[MATCH_AT : MATCH_AT + match_len])
        match = self._matches.get(key)
        if match is None:  # os-ken's own parse (and error handling); its match serves the next ones
            msg = ofproto_parser.msg(self, OFP13_VERSION, OFPT_PACKET_IN, msg_len, xid, raw)
            if msg is not None and msg.match.length == match_len:
                if len(self._matches) >= MATCH_CACHE:
                    self._matches.clear()
                self._matches[key] = msg.match
            return msg
        msg = ofproto_v1_3_parser.OFPPacketIn(self)
        msg.set_headers(OFP13_VERSION, OFPT_PACKET_IN, msg_len, xid)
        msg.set_buf(raw)
        msg.buffer_id, msg.total_len, msg.reason, msg.table_id, msg.cookie = PACKET_IN_HEAD.unpack_from(msg.buf, 8)
        msg.match = match
        data = msg.buf[MATCH_AT + (match_len + 7) // 8 * 8 + 2 :]
        msg.data = data[: msg.total_len] if msg.total_len < len(data) else data
        return msg

    def _dispatch(self, msg: Any) -> None:
        """What os-ken's loop does with a parsed message: the event to the apps, then the brick's handlers."""
        if not msg or self.ofp_brick is None:
            return
        ev = ofp_event.ofp_msg_to_ev(msg)
        self.ofp_brick.send_event_to_observers(ev, self.state)
        for handler in self.ofp_brick.get_handlers(ev):
            if self.state in handler.callers[ev.__class__].dispatchers:
                handler(ev)


def connection_factory(sock: Any, address: Any) -> None:
    """os-ken's ``datapath_connection_factory`` with :class:`RxDatapath`: serve one switch connection."""
    with contextlib.closing(RxDatapath(sock, address)) as datapath:
        try:
            datapath.serve()
        except Exception:
            LOG.error("error in the datapath %s from %s", datapath.id, address)
            raise


def install() -> None:
    """Make os-ken's listener serve every switch connection with :class:`RxDatapath`.

    Call before the listener starts (it looks the factory up when it starts).
    """
    osken_controller.datapath_connection_factory = connection_factory
