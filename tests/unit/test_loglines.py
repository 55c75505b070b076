"""Log lines written together while the app thread is busy (controller.loglines)."""

from __future__ import annotations

import logging

import pytest

from controller.loglines import Lines

A, B = logging.getLogger("vmn.test.a"), logging.getLogger("vmn.test.b")


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str]]:
    return [(r.name, r.levelno, r.getMessage()) for r in caplog.records]


def test_without_batching_each_line_is_its_own_record_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    lines = Lines()
    lines.log(A, logging.INFO, "host %s learned", "02:00:00:00:00:01")
    assert messages(caplog) == [("vmn.test.a", logging.INFO, "host 02:00:00:00:00:01 learned")]
    assert not lines


def test_batched_lines_wait_for_flush_then_go_as_one_record_per_logger_and_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    lines = Lines(batching=True)
    lines.log(A, logging.INFO, "host %s learned", "m1")
    lines.log(A, logging.INFO, "host %s learned", "m2")
    lines.log(A, logging.WARNING, "port %d full", 3)
    lines.log(B, logging.INFO, "100% done")
    lines.log(A, logging.INFO, "host %s learned", "m3")
    lines.log(A, logging.DEBUG, "not enabled: %s", "dropped")
    assert caplog.records == [] and len(lines) == 5
    lines.flush()
    assert messages(caplog) == [
        ("vmn.test.a", logging.INFO, "host m1 learned\nhost m2 learned"),
        ("vmn.test.a", logging.WARNING, "port 3 full"),
        ("vmn.test.b", logging.INFO, "100% done"),
        ("vmn.test.a", logging.INFO, "host m3 learned"),
    ]
    assert not lines
    lines.flush()  # nothing pending: nothing written
    assert len(caplog.records) == 4


def test_batched_lines_are_written_at_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    lines = Lines(batching=True, limit=3)
    for i in range(7):
        lines.log(A, logging.INFO, "line %d", i)
    assert [m for _, _, m in messages(caplog)] == ["line 0\nline 1\nline 2", "line 3\nline 4\nline 5"]
    assert len(lines) == 1
