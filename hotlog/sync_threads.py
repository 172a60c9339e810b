"""The threads that run logs' fsyncs for the event loop.

An fsync blocks, so it leaves the loop; how it leaves is a cost the loop pays per flush.
Through `loop.run_in_executor` a hand-off takes the executor's two locks, a work item, a
concurrent future, an asyncio future chained to it and a callback on that: tens of
microseconds of the loop's Python each, paid by every partition of an acks=all produce.
Here it is a put on a queue and, once the work is done, one callback scheduled on the
loop that asked.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import NamedTuple

THREADS = 8  # fsyncs of that many logs overlap; more wait their turn


class _Job(NamedTuple):
    loop: asyncio.AbstractEventLoop
    work: Callable[[], None]
    done: Callable[[BaseException | None], None]  # on `loop`, with what `work` raised


class SyncThreads:
    """Started on first use; the threads are daemons that serve every event loop."""

    def __init__(self, threads: int = THREADS) -> None:
        self._size = threads
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    def run(self, loop: asyncio.AbstractEventLoop, work: Callable[[], None],
            done: Callable[[BaseException | None], None]) -> None:
        """Run `work` in a thread, then `done(error)` on `loop`: None if it returned, else
        what it raised."""
        if not self._started:
            self._start()
        self._jobs.put(_Job(loop, work, done))

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for i in range(self._size):
                threading.Thread(target=self._serve, name=f"tierlog-fsync-{i}", daemon=True).start()
            self._started = True

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            error: BaseException | None = None
            try:
                job.work()
            except BaseException as exc:  # handed to `done`, whose caller decides
                error = exc
            try:
                job.loop.call_soon_threadsafe(job.done, error)
            except RuntimeError:  # that loop is closed: nobody is left waiting
                pass
            del job, error  # hold no log or exception while waiting for the next


SYNC_THREADS = SyncThreads()
