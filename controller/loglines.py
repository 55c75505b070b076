"""Log lines written together while the app thread is busy: one record of many lines.

Under a burst of new hosts the L2 app logs one INFO line per learned host.
One logging record costs far more than the line itself (caller lookup, the
record, the handler's lock, formatting, one write to stderr; about 30 µs
against 1 µs of ``%``-formatting), which made it a tenth of a packet-in's
cost. :class:`Lines` keeps such lines while batching is on and writes them
as one record per logger and level, a line each, when :meth:`Lines.flush`
is called. The os-ken shim makes the one its apps log through
(``AppContext.lines``) with batching on and flushes whenever its event
queue is empty (so a lone packet-in's line goes out at once, as one
record, as before), at every tick (0.1 s) and every :data:`LIMIT` lines.
With the default ``%(message)s`` format the output is the same lines;
with a format that adds a prefix, only the first line of a batch gets it.
Lines logged through one :class:`Lines` keep their order (the L2 app logs
all its host lines through it); a line logged directly meanwhile, by
another module, may come out before pending ones, at most a tick early.
Off (the default: tests, tools, the core run in-process) every line is
its own record at once.

Only the app thread logs through it, like every other core and app call.
"""

from __future__ import annotations

import logging

LIMIT = 256
"""Lines kept at most before they are written."""


class Lines:
    """Pending lines, in order: (logger, level, ``%``-format, args)."""

    def __init__(self, batching: bool = False, limit: int = LIMIT) -> None:
        self.batching = batching
        self.limit = limit
        self._pending: list[tuple[logging.Logger, int, str, tuple[object, ...]]] = []

    def log(self, logger: logging.Logger, level: int, msg: str, *args: object) -> None:
        """``logger.log(level, msg, *args)``, or kept for the next :meth:`flush` while batching."""
        if not self.batching:
            logger.log(level, msg, *args)
            return
        if not logger.isEnabledFor(level):
            return
        self._pending.append((logger, level, msg, args))
        if len(self._pending) >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Write the pending lines: one record per run of lines of the same logger and level."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        start = 0
        for i in range(1, len(pending) + 1):
            if i == len(pending) or pending[i][:2] != pending[start][:2]:
                logger, level = pending[start][:2]
                text = "\n".join(msg % args if args else msg for _, _, msg, args in pending[start:i])
                logger.log(level, "%s", text)
                start = i

    def __len__(self) -> int:
        return len(self._pending)
