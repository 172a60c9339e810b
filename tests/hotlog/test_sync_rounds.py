"""Group commit across logs (hotlog/sync_rounds.py): logs flushing together share one
worker-thread round; a round's fsync error is its own log's alone."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time

import pytest

from hotlog import sync_rounds
from hotlog.errors import LogStorageError
from hotlog.log import PartitionLog

from .support import make_batch, open_log


def open_logs(tmp_path, count: int) -> list[PartitionLog]:
    logs = []
    for i in range(count):
        folder = tmp_path / f"t-{i}"
        folder.mkdir()
        logs.append(open_log(folder))
    return logs


def count_rounds(monkeypatch) -> list[int]:
    """The number of fsyncs in each round, in order."""
    rounds: list[int] = []
    run_each = sync_rounds._run_each

    def counted(syncs: list[sync_rounds.Sync]) -> list[Exception | None]:
        rounds.append(len(syncs))
        return run_each(syncs)

    monkeypatch.setattr(sync_rounds, "_run_each", counted)
    return rounds


def test_the_partitions_of_one_produce_share_one_round(tmp_path, monkeypatch) -> None:
    logs = open_logs(tmp_path, 4)
    rounds = count_rounds(monkeypatch)

    async def produce() -> None:
        for plog in logs:
            plog.append(make_batch(3))
        await asyncio.gather(*(plog.flush_async() for plog in logs))

    asyncio.run(produce())
    assert rounds == [4]
    assert [plog.recovery_point for plog in logs] == [3, 3, 3, 3]


def test_flushes_started_while_a_round_runs_share_the_next_round(tmp_path, monkeypatch) -> None:
    logs = open_logs(tmp_path, 4)
    rounds = count_rounds(monkeypatch)
    entered, release = threading.Event(), threading.Event()
    fdatasync = os.fdatasync

    def held_once(fd: int) -> None:
        if not entered.is_set():
            entered.set()
            release.wait(10)
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", held_once)

    async def produce() -> None:
        logs[0].append(make_batch(1))
        first = asyncio.ensure_future(logs[0].flush_async())
        deadline = time.monotonic() + 10
        while not entered.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        for plog in logs[1:]:
            plog.append(make_batch(2))
        later = asyncio.gather(*(plog.flush_async() for plog in logs[1:]))
        await asyncio.sleep(0.01)
        assert not later.done()  # each waits for the round that covers it
        release.set()
        await first
        await later

    asyncio.run(produce())
    assert rounds == [1, 3]
    assert [plog.recovery_point for plog in logs] == [1, 2, 2, 2]


def test_a_failed_fsync_takes_only_its_own_log_offline(tmp_path, monkeypatch) -> None:
    broken, healthy = open_logs(tmp_path, 2)
    rounds = count_rounds(monkeypatch)
    fdatasync = os.fdatasync

    def eio_in_broken(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(broken.directory):
            raise OSError(errno.EIO, "Input/output error")
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", eio_in_broken)

    async def produce() -> list[BaseException | None]:
        broken.append(make_batch(1))
        healthy.append(make_batch(1))
        return await asyncio.gather(broken.flush_async(), healthy.flush_async(), return_exceptions=True)

    broken_result, healthy_result = asyncio.run(produce())
    assert rounds == [2]
    assert isinstance(broken_result, LogStorageError) and broken.storage_error is not None
    assert broken.recovery_point == 0
    assert healthy_result is None and healthy.storage_error is None and healthy.recovery_point == 1
    monkeypatch.undo()  # the disk works again, but what it dropped is not known: offline stays
    with pytest.raises(LogStorageError, match="offline"):
        asyncio.run(broken.flush_async())


def test_a_background_flush_holds_back_no_round(tmp_path, monkeypatch) -> None:
    """A rolled segment's seal (request_flush) may fsync a lot: it takes a thread of its own,
    and an acks=all produce to another partition is not held behind it."""
    sealing, producing = open_logs(tmp_path, 2)
    rounds = count_rounds(monkeypatch)
    entered, release = threading.Event(), threading.Event()
    fdatasync = os.fdatasync

    def slow_in_sealing(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(sealing.directory):
            entered.set()
            release.wait(10)
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_in_sealing)

    async def produce() -> None:
        sealing.append(make_batch(1))
        sealing.request_flush()
        deadline = time.monotonic() + 10
        while not entered.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        producing.append(make_batch(1))
        await asyncio.wait_for(producing.flush_async(), 5)
        assert (producing.recovery_point, sealing.recovery_point) == (1, 0)
        release.set()
        await sealing.flush_async()  # waits for the background flush, which covers it

    asyncio.run(produce())
    assert rounds == [1]
    assert sealing.recovery_point == 1
