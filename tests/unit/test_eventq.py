"""The app's event-queue slots (controller.eventq): bounded, blocking, senders woken once per batch."""

from __future__ import annotations

import threading
import time

import pytest

from controller.eventq import EventSlots


def test_slots_are_bounded_both_ways() -> None:
    slots = EventSlots(3, 2)
    assert all(slots.acquire() for _ in range(3)) and slots.free == 0
    for _ in range(3):
        slots.release()
    with pytest.raises(ValueError, match="released too many times"):
        slots.release()
    with pytest.raises(ValueError, match="batch must be within 1..3, got 4"):
        EventSlots(3, 4)


def test_a_waiting_sender_is_woken_once_a_batch_is_free() -> None:
    slots = EventSlots(4, 3)
    for _ in range(4):
        slots.acquire()
    taken = threading.Event()

    def sender() -> None:
        slots.acquire()
        taken.set()

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not slots._waiting and time.monotonic() < deadline:  # the sender is waiting
        time.sleep(0.01)
    assert slots._waiting == 1
    slots.release()
    slots.release()
    assert not taken.wait(0.2)  # 2 free, batch 3: not woken yet
    slots.release()
    assert taken.wait(5)  # 3 free: woken, takes one
    thread.join(5)
    assert slots.free == 2
