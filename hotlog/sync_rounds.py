"""Group commit across logs: the fsyncs of every log that flushes while a round runs (the
partitions of a produce request, and of the requests that arrive meanwhile) go to a
worker thread together, in the next round, instead of a thread hand-off and a wake-up of
the event loop each (bench/request_cost.py: about 100 us of the loop's CPU per flush).
Each fsync still covers its own log only, and its error goes to that log's flush alone.

A round first starts every log's writeback, then waits for each fsync in turn: the
writebacks overlap as the fsyncs of a thread per log did, so the round's fsyncs in one
thread do not add up to the sum of their latencies (bench/group_commit.py)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import NamedTuple


class Sync(NamedTuple):
    """A log's part of a round."""

    start: Callable[[], None]  # begin writing back its dirty pages; waits for nothing, raises nothing
    fsync: Callable[[], None]  # until they are durable; raises what the disk refused


class SyncRounds:
    """Event loop only; the fsyncs of a round run in one worker thread, one after another.
    One round at a time: while it runs, the next one gathers."""

    def __init__(self) -> None:
        self._next: list[tuple[Sync, asyncio.Future[None]]] = []
        self._running: asyncio.Task[None] | None = None

    async def sync(self, sync: Sync) -> None:
        """Run `sync` in the next round; raises what its fsync raised."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._next.append((sync, done))
        if self._running is None:
            self._running = loop.create_task(self._rounds())
        await done

    async def _rounds(self) -> None:
        # Started by the first flush of a turn of the loop, it runs after that turn's other
        # flushes have queued theirs (the partitions of a request start theirs together).
        round_: list[tuple[Sync, asyncio.Future[None]]] = []
        try:
            while self._next:
                round_, self._next = self._next, []
                errors = await asyncio.to_thread(_run_each, [sync for sync, _ in round_])
                for (_, done), error in zip(round_, errors, strict=True):
                    if done.done():  # its flush was cancelled
                        continue
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
        finally:
            self._running = None
            for _, done in (*round_, *self._next):  # cancelled (the loop is closing): no round will answer these
                if not done.done():
                    done.cancel()
            self._next = []


def _run_each(syncs: list[Sync]) -> list[Exception | None]:
    """Every writeback starts, then every fsync runs, whatever the one before raised: each
    error is its own log's, handed to that log's flush (which raises it), not swallowed."""
    for sync in syncs:
        sync.start()
    errors: list[Exception | None] = []
    for sync in syncs:
        try:
            sync.fsync()
        except Exception as exc:  # noqa: BLE001 - re-raised in the flush that owns it
            errors.append(exc)
        else:
            errors.append(None)
    return errors


_ROUNDS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SyncRounds] = weakref.WeakKeyDictionary()


def sync_rounds() -> SyncRounds:
    """The running event loop's rounds (tests run several loops, one after another)."""
    loop = asyncio.get_running_loop()
    rounds = _ROUNDS.get(loop)
    if rounds is None:
        rounds = _ROUNDS[loop] = SyncRounds()
    return rounds
