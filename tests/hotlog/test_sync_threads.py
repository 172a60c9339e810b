"""The fsync threads: work runs off the loop, several at once, and its outcome comes back
on the loop that asked."""

from __future__ import annotations

import asyncio
import threading

from hotlog.sync_threads import THREADS, SyncThreads


def test_work_overlaps_and_each_outcome_reaches_the_loop_that_asked() -> None:
    threads = SyncThreads()
    barrier = threading.Barrier(THREADS, timeout=5)  # broken unless THREADS jobs run at once

    async def scenario() -> list[tuple[int, BaseException | None, bool]]:
        loop = asyncio.get_running_loop()
        outcomes: list[tuple[int, BaseException | None, bool]] = []
        all_done = loop.create_future()

        def work(i: int) -> None:
            barrier.wait()
            if i == 3:
                raise OSError(5, "Input/output error")

        def done(i: int, error: BaseException | None) -> None:
            outcomes.append((i, error, threading.current_thread() is threading.main_thread()))
            if len(outcomes) == THREADS:
                all_done.set_result(None)

        for i in range(THREADS):
            threads.run(loop, lambda i=i: work(i), lambda error, i=i: done(i, error))
        await asyncio.wait_for(all_done, 10)
        return sorted(outcomes, key=lambda o: o[0])

    outcomes = asyncio.run(scenario())
    assert [i for i, _, _ in outcomes] == list(range(THREADS))
    assert all(on_loop for _, _, on_loop in outcomes)
    assert [type(error) for _, error, _ in outcomes] == [type(None)] * 3 + [OSError] + [type(None)] * (THREADS - 4)


def test_a_job_whose_loop_closed_does_not_stop_the_threads() -> None:
    threads = SyncThreads(threads=1)
    release = threading.Event()

    async def leave_one_behind() -> None:
        threads.run(asyncio.get_running_loop(), release.wait, lambda error: None)

    asyncio.run(leave_one_behind())  # the loop is closed before its job ends
    release.set()

    async def next_one() -> BaseException | None:
        answered: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        threads.run(asyncio.get_running_loop(), lambda: None, answered.set_result)
        return await asyncio.wait_for(answered, 5)

    assert asyncio.run(next_one()) is None
