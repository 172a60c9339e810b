"""Futures waiting for a position to be reached: a log's fsynced recovery point, or the end
a WAL object committed to the bucket covers."""

from __future__ import annotations

import asyncio


class EndWaiters:
    """Event loop only. Each waiter wants the position to reach its `end`."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def add(self, end: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((end, future))
        return future

    def release(self, reached: int) -> None:
        """Answer every waiter whose end `reached` covers; drop those whose callers gave up
        (a produce request's timeout)."""
        still = []
        for end, future in self._waiting:
            if future.done():
                continue
            if end <= reached:
                future.set_result(None)
            else:
                still.append((end, future))
        self._waiting = still

    def fail(self, exc: BaseException) -> bool:
        """Fail every waiter with `exc`; False if there was none."""
        waiting, self._waiting = self._waiting, []
        for _, future in waiting:
            if not future.done():
                future.set_exception(exc)
        return bool(waiting)
