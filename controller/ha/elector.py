"""Leader election through tooz, on a thread of its own, with a lease.

tooz (https://docs.openstack.org/tooz/latest/) elects one member of a group
as leader. Its drivers that implement election (``run_elect_coordinator``,
tooz 9): ``zookeeper://`` (``kazoo://``; the leader holds an ephemeral lock
node, gone when its session expires, ``timeout`` seconds, default 10),
``redis://`` (a lock key that expires ``lock_timeout`` seconds after the
leader's last heartbeat, default 30) and ``memcached://`` (the same with a
memcached key). etcd3, the file, IPC, SQL and Kubernetes drivers do not
elect. See :data:`controller.config.load.ELECTION_BACKENDS`.

:class:`Elector` keeps one tooz coordinator on a daemon thread: every
:data:`POLL_SECONDS` it heartbeats and runs the watchers (which try to
take the leadership). It reports to the app thread through ``notify``
(:class:`Change`): ``elected``, ``deposed``. Whether the service answers
is read, not pushed (:meth:`Elector.reachable`): a driver call may block
for a long time (redis-py retries with back-off), so the answer comes
from the time of the last successful heartbeat, not from an error.

The lease. tooz's heartbeat returns the session (or lock) expiry in
seconds; the service cannot elect another leader before that long after
the last heartbeat it received, and it received it after this instance
sent it. So the leader acts only until the start of its last successful
heartbeat plus :data:`LEASE_SHARE` of that expiry: :meth:`lease_valid`
is what the shim asks before every change it sends. A leader that misses
its lease (service unreachable, the process was stopped) is deposed
before another can be elected; it then leaves the session and runs again.
The generation id of the OpenFlow role requests fences whatever was
already on its way (see :mod:`controller.ha.roles`).

tooz is imported only when an :class:`Elector` starts, so an instance
without ``coordination`` needs neither tooz nor a driver's client library.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

LOG = logging.getLogger("vmn.ha")
GROUP = b"vmn-controllers"
"""The tooz group whose leader programs the switches."""
POLL_SECONDS = 0.2
"""Seconds between heartbeats (and election attempts); at most a quarter of the expiry."""
RETRY_SECONDS = 1.0
"""Seconds between attempts to reach the coordination service, and after resigning."""
LEASE_SHARE = 0.75
"""Share of the service's expiry during which a heartbeat keeps this instance leader."""
DEFAULT_EXPIRY = 10.0
"""Expiry assumed until the driver's first heartbeat says."""
STARTUP_GRACE = 2.0
"""Seconds after start without any answer before the service counts as unreachable."""


@dataclass(frozen=True)
class Change:
    """A change of leadership or of the service's reachability, for the app thread.

    ``kind``: ``elected`` (``wall_ms``: the election's wall-clock time in
    ms) or ``deposed``; ``detail`` says why.
    """

    kind: str
    detail: str = ""
    wall_ms: int = 0


def redacted(url: str) -> str:
    """``url`` without a password, for logs (``redis://:secret@h:6379`` -> ``redis://***@h:6379``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


class Elector:
    """Runs for leader of :data:`GROUP` at ``url`` as ``member_id``; tells ``notify`` what changes.

    ``notify`` is called on the elector's thread: it must only hand the
    :class:`Change` over (the shim posts an event to its app thread).
    ``clock`` is monotonic seconds; ``wall`` wall-clock seconds.
    """

    def __init__(
        self,
        url: str,
        member_id: bytes,
        notify: Callable[[Change], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.member_id = member_id
        self.notify = notify
        self.clock = clock
        self.wall = wall
        self.elections = 0
        self._coord: Any = None
        self._leader = False
        self._lease_until = 0.0
        self._expiry = DEFAULT_EXPIRY
        self._beat_started = 0.0
        self._started_at = 0.0
        self._last_ok = float("-inf")
        self._error_at = float("-inf")
        self.last_error = ""
        """The last error of the service or the driver (for the log)."""
        self._stop = threading.Event()
        self._resign = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vmn-elector", daemon=True)

    # -- called from other threads -----------------------------------------
    def start(self) -> None:
        """Start the thread (imports tooz; raises ImportError if it is not installed)."""
        import tooz.coordination  # noqa: F401  (fail at start, not on the thread)

        self._started_at = self.clock()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and leave the session (a leader's lock is released at once)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def lease_valid(self, now: float) -> bool:
        """True if this instance is leader and its lease runs at ``now`` (monotonic seconds)."""
        return self._leader and now < self._lease_until

    @property
    def leader(self) -> bool:
        return self._leader

    def reachable(self, now: float) -> bool | None:
        """Whether the service answers: True if a heartbeat succeeded within the expiry and no error since.

        False after an error, or when nothing succeeded for the expiry
        (:data:`STARTUP_GRACE` before the first answer); None before the
        thread runs and while starting.
        """
        if self._error_at > self._last_ok:
            return False
        if now - self._last_ok < self._expiry:
            return True
        if self._last_ok == float("-inf") and (not self._thread.is_alive() or now - self._started_at < STARTUP_GRACE):
            return None
        return False

    def resign(self) -> None:
        """Give the leadership up (a switch refused this term as stale); run again after a pause."""
        self._resign.set()

    # -- the thread --------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            if self._coord is None and not self._connect():
                self._stop.wait(RETRY_SECONDS)
                continue
            self._beat()
            if self._resign.is_set():
                self._resign.clear()
                self._lose("resigned: a switch refused this term's generation id as stale")
                self._stop.wait(RETRY_SECONDS)
                continue
            self._stop.wait(min(POLL_SECONDS, self._expiry / 4))
        self._lose("stopping")

    def _connect(self) -> bool:
        from tooz import coordination

        try:
            coord = coordination.get_coordinator(self.url, self.member_id)
            coord.start(start_heart=False)
            coord.watch_elected_as_leader(GROUP, self._on_elected)
        except Exception as err:  # tooz wraps most errors; drivers raise their own (redis, kazoo)
            self._failed(err)
            return False
        self._coord = coord
        return True

    def _beat(self) -> None:
        """Heartbeat and try for leader; depose at once if the lease ran out (checked before beating)."""
        started = self.clock()
        if self._leader and started >= self._lease_until:
            self._lose("coordination lease expired: no heartbeat reached the service in time")
            return
        self._beat_started = started
        try:
            expiry = self._coord.heartbeat()
            if expiry:
                self._expiry = float(expiry)
            if self._leader:
                self._lease_until = started + self._expiry * LEASE_SHARE
            self._coord.run_watchers()
        except Exception as err:
            self._failed(err)
            if not self._leader:
                self._disconnect()
            return
        self._last_ok = started

    def _on_elected(self, event: Any) -> None:
        """tooz's callback (from ``run_watchers``, on this thread)."""
        if self._stop.is_set():
            return
        self._leader = True
        self._lease_until = self._beat_started + self._expiry * LEASE_SHARE
        self.elections += 1
        LOG.info("elected leader of %s at %s", GROUP.decode(), redacted(self.url))
        self.notify(Change("elected", "won the election", int(self.wall() * 1000)))

    def _lose(self, reason: str) -> None:
        if self._leader:
            self._leader = False
            self._lease_until = 0.0
            LOG.warning("no longer leader: %s", reason)
            self.notify(Change("deposed", reason))
        self._disconnect()

    def _disconnect(self) -> None:
        coord, self._coord = self._coord, None
        if coord is None:
            return
        try:
            coord.stop()  # releases a leader's lock where the service is reachable
        except Exception as err:
            LOG.debug("leaving the coordination session: %s", err)

    def _failed(self, err: BaseException) -> None:
        self.last_error = f"{type(err).__name__}: {err}"
        self._error_at = self.clock()
        LOG.debug("coordination service %s: %s", redacted(self.url), self.last_error)
