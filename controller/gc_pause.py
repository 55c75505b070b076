"""The cyclic garbage collector paused around a large compile (:func:`paused_gc`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector inside the block, then set what survived it aside.

    Reference counting still frees everything meanwhile (rules hold no
    cycles). When the block made more than :data:`FREEZE_AFTER` objects (a
    compile at scale), one full collection then finds any cyclic garbage,
    and :func:`gc.freeze` moves the survivors (the compiled state) out of
    the collector's view, so later events are not slowed by collections
    walking millions of objects again. A frozen object that later becomes
    part of an unreachable cycle is never collected; the state's objects
    are acyclic. Small blocks (tests, small fabrics) leave the collector as it was.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_count()[0] > FREEZE_AFTER:
            gc.collect()
            gc.freeze()
        if enabled:
            gc.enable()


FREEZE_AFTER = 200_000
"""Objects made by a compile beyond which :func:`paused_gc` freezes what survived it."""
