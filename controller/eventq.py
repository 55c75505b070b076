"""The app's event-queue slots: a blocked sender is woken once a batch of slots is free, not at each.

os-ken bounds an app's event queue (128 events) with a semaphore: a sender
(a switch's receive thread) takes a slot before it queues an event, the
app thread gives one back as it takes an event off. Under a burst of
packet-ins the receive thread outruns the app thread, fills the queue and
waits for a slot; with os-ken's ``BoundedSemaphore`` every event the app
thread takes then wakes it, so the two threads hand over after every
event (a thread wake-up and a GIL switch each: 8 % of the app's time in
the packet-in benchmark). :class:`EventSlots` keeps the same bound and the
same blocking but wakes waiting senders only once ``batch`` slots are free
(or the queue is empty), so the receive thread fills them in one go.
"""

from __future__ import annotations

import threading


class EventSlots:
    """A bounded semaphore of ``size`` slots whose :meth:`release` wakes waiters only at ``batch`` free.

    Same contract as os-ken's ``hub.BoundedSemaphore`` as an app uses it:
    :meth:`acquire` blocks while no slot is free; :meth:`release` raises
    ValueError when every slot is already free. ``1 <= batch <= size``.
    Waiters are woken once per batch: a woken sender that finds no slot
    (another took it) waits for the next batch.
    """

    def __init__(self, size: int, batch: int) -> None:
        if not 1 <= batch <= size:
            raise ValueError(f"batch must be within 1..{size}, got {batch}")
        self.size = size
        self.batch = batch
        self._free = size
        self._waiting = 0
        self._cond = threading.Condition(threading.Lock())

    def acquire(self) -> bool:
        """Take a slot, waiting while none is free; True."""
        with self._cond:
            while not self._free:
                self._waiting += 1
                self._cond.wait()
            self._free -= 1
            return True

    def release(self) -> None:
        """Give a slot back; wake the waiting senders once ``batch`` slots are free."""
        with self._cond:
            if self._free >= self.size:
                raise ValueError("EventSlots released too many times")
            self._free += 1
            if self._waiting and self._free >= self.batch:
                self._waiting = 0  # those woken count themselves again if they must wait on
                self._cond.notify_all()

    @property
    def free(self) -> int:
        """Slots free now."""
        return self._free
