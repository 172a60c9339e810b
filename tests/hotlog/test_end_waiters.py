"""Waiters for a position: answered once it covers their end, failed together, and those
whose callers gave up are dropped."""

from __future__ import annotations

import asyncio

import pytest

from hotlog.end_waiters import EndWaiters


def test_a_position_answers_the_waiters_it_covers_and_keeps_the_rest() -> None:
    async def scenario() -> None:
        waiters = EndWaiters()
        early, late, gave_up = waiters.add(5), waiters.add(9), waiters.add(3)
        gave_up.cancel()
        waiters.release(6)
        assert early.done() and early.result() is None and not late.done() and bool(waiters)
        waiters.release(9)
        assert late.done() and not waiters

    asyncio.run(scenario())


def test_a_failure_reaches_every_waiter_and_says_whether_there_was_one() -> None:
    async def scenario() -> None:
        waiters = EndWaiters()
        assert waiters.fail(OSError(5, "Input/output error")) is False
        first, second = waiters.add(1), waiters.add(2)
        assert waiters.fail(OSError(5, "Input/output error")) is True and not waiters
        for future in (first, second):
            with pytest.raises(OSError):
                future.result()

    asyncio.run(scenario())
