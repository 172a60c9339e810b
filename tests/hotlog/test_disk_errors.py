"""A disk that refuses writes (full: ENOSPC or a short write; failing: EIO) while the log
appends, rolls or writes its indexes: the write is undone and raised as DiskWriteError, the
log holds what it held and takes appends again once the disk does; a write that cannot be
undone takes the log offline until a restart has checked the disk."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from typing import Any

import pytest

from hotlog.errors import DiskWriteError, LogStorageError
from hotlog.manager import LogManager
from hotlog.producer_state import ProducerStateManager

from .support import check_index_files, dir_state, make_batch, open_log, read_all


def refusing(error: int, *, write_half: bool = True) -> Callable[..., Any]:
    """A writev that writes the first half of what it is given, then fails with `error`."""

    def writev(fd: int, buffers: Any) -> int:
        data = b"".join(bytes(b) for b in buffers)
        if write_half:
            os.write(fd, data[: len(data) // 2])
        raise OSError(error, os.strerror(error))

    return writev


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO])
def test_a_refused_append_is_undone_and_the_next_one_continues_the_log(tmp_path, monkeypatch, error) -> None:
    plog = open_log(tmp_path)
    plog.append(make_batch(2))
    before = (plog.log_end_offset, dir_state(tmp_path), read_all(plog))
    monkeypatch.setattr(os, "writev", refusing(error))
    with pytest.raises(DiskWriteError) as refused:
        plog.append(make_batch(3, tag=b"lost"))
    monkeypatch.undo()
    assert isinstance(refused.value.__cause__, OSError) and refused.value.__cause__.errno == error
    assert (plog.log_end_offset, dir_state(tmp_path), read_all(plog)) == before
    assert plog.storage_error is None  # not offline: the disk took the undo
    assert plog.append(make_batch(1)).base_offset == 2
    plog.flush()
    assert plog.recovery_point == 3 and len(read_all(plog)) == 2


def test_a_short_write_without_an_error_is_a_full_disk_and_is_undone(tmp_path, monkeypatch) -> None:
    plog = open_log(tmp_path)
    plog.append(make_batch(2))
    size = os.path.getsize(plog.active_segment.log_path)

    def short(fd: int, buffers: Any) -> int:
        data = b"".join(bytes(b) for b in buffers)
        return os.write(fd, data[: len(data) - 1])

    monkeypatch.setattr(os, "writev", short)
    with pytest.raises(DiskWriteError, match="short write"):
        plog.append(make_batch(3))
    monkeypatch.undo()
    assert os.path.getsize(plog.active_segment.log_path) == size and plog.log_end_offset == 2
    plog.close()
    again = open_log(tmp_path, clean=False)  # recovery finds whole batches only, nothing to cut
    assert again.log_end_offset == 2 and os.path.getsize(again.active_segment.log_path) == size


def test_an_append_whose_undo_fails_takes_the_log_offline_until_recovery_cuts_the_torn_batch(
        tmp_path, monkeypatch) -> None:
    plog = open_log(tmp_path)
    plog.append(make_batch(2))
    plog.flush()

    def ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "writev", refusing(errno.EIO))
    monkeypatch.setattr(os, "ftruncate", ftruncate)
    with pytest.raises(LogStorageError) as offline:
        plog.append(make_batch(3, tag=b"torn"))
    monkeypatch.undo()
    assert not isinstance(offline.value, DiskWriteError) and "could not be undone" in str(offline.value)
    assert plog.storage_error is not None
    with pytest.raises(LogStorageError, match="offline"):  # the file ends in part of a batch
        plog.append(make_batch(1))
    plog.close()
    again = open_log(tmp_path, clean=False)
    assert again.log_end_offset == 2 and len(read_all(again)) == 1
    assert again.append(make_batch(1)).base_offset == 2


def test_a_roll_the_disk_refuses_leaves_the_old_segment_taking_appends(tmp_path, monkeypatch) -> None:
    plog = open_log(tmp_path, {"segment.bytes": 400})
    plog.append(make_batch(3, value_size=100))

    def no_room(self: ProducerStateManager, path: str, *, sync: bool = True) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ProducerStateManager, "write_snapshot", no_room)
    with pytest.raises(DiskWriteError, match="rolling segment 0"):
        plog.append(make_batch(3, value_size=100))
    monkeypatch.undo()
    assert len(plog.segments) == 1 and not plog.active_segment.rolled and plog.log_end_offset == 3
    assert plog.append(make_batch(3, value_size=100)).base_offset == 3  # the roll, tried again
    assert [s.base_offset for s in plog.segments] == [0, 3]
    plog.flush()
    check_index_files(plog.segments[0].log_path, 0)
    assert len(read_all(plog)) == 2


def test_an_index_write_the_disk_refuses_fails_the_flush_and_leaves_whole_entries(tmp_path, monkeypatch) -> None:
    plog = open_log(tmp_path, {"index.interval.bytes": 0})
    for _ in range(4):
        plog.append(make_batch(1, value_size=50))
    index_path = plog.active_segment.offset_index.path
    real_write = os.write

    def half_then_enospc(fd: int, data: Any) -> int:
        real_write(fd, bytes(data)[: len(data) // 2 + 1])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_enospc)
    with pytest.raises(DiskWriteError):
        asyncio.run(plog.flush_async())
    monkeypatch.undo()
    assert os.path.getsize(index_path) == 0 and plog.recovery_point == 0 and plog.storage_error is None
    asyncio.run(plog.flush_async())  # room again: the same entries go in once
    assert plog.recovery_point == 4
    assert check_index_files(plog.active_segment.log_path, 0)[0] == 3


def test_the_managers_background_flushes_go_on_after_one_the_disk_refuses(tmp_path, monkeypatch) -> None:
    async def scenario() -> None:
        logs = LogManager(str(tmp_path), {"index.interval.bytes": 0, "flush.ms": 1}).open()
        logs.create_topic("t", 1)
        plog = logs.log("t", 0)
        for _ in range(3):
            plog.append(make_batch(1, value_size=50))

        def enospc(fd: int, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", enospc)  # the index entries cannot go in
        runner = asyncio.create_task(logs.run(flush_check_ms=10))
        try:
            await asyncio.sleep(0.2)
            assert not runner.done() and plog.recovery_point == 0
            monkeypatch.undo()  # room again: the next check flushes
            await asyncio.sleep(0.2)
            assert not runner.done() and plog.recovery_point == 3
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        logs.close()

    asyncio.run(scenario())
