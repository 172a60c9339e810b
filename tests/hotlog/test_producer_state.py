"""Idempotent producers and transactions as the partition log sees them."""

import asyncio
import os
import threading

import pytest

from hotlog.config import LogConfig
from hotlog.errors import CorruptRecordError, InvalidProducerEpochError, OutOfOrderSequenceError, UnknownProducerIdError
from hotlog.log import PartitionLog
from hotlog.records import Record, build_batch, decode_batches


def open_log(path, clean=True, **configs):
    return PartitionLog.open(str(path), "t", 0, LogConfig.build({}, configs), clean=clean)


def batch(pid, epoch, seq, n=1, transactional=False, tag=b"v"):
    return build_batch(
        [Record(None, tag + b"%d" % i) for i in range(n)],
        producer_id=pid, producer_epoch=epoch, base_sequence=seq, transactional=transactional,
    )


def read_all(plog, start=0, max_offset=None):
    out, offset = [], start
    while True:
        found = plog.read(offset, 1 << 20, max_offset=max_offset)
        if found is None:
            return out
        for b in decode_batches(found.read()):
            out.append(b)
        offset = out[-1].header.next_offset


def test_a_retried_batch_is_answered_with_its_first_offsets_and_not_written_again(tmp_path):
    plog = open_log(tmp_path)
    first = plog.append(batch(7, 0, 0, n=3))
    plog.append(batch(7, 0, 3, n=2))
    retry = plog.append(batch(7, 0, 0, n=3))
    assert retry.duplicate and (retry.base_offset, retry.last_offset) == (first.base_offset, first.last_offset)
    assert plog.log_end_offset == 5


def test_a_sequence_gap_and_a_fenced_epoch_are_rejected_and_change_nothing(tmp_path):
    plog = open_log(tmp_path)
    plog.append(batch(7, 1, 0, n=2))
    size = plog.active_segment.size
    with pytest.raises(OutOfOrderSequenceError):
        plog.append(batch(7, 1, 5))
    with pytest.raises(InvalidProducerEpochError):
        plog.append(batch(7, 0, 2))
    with pytest.raises(OutOfOrderSequenceError):
        plog.append(batch(7, 2, 4))  # a new epoch starts at sequence 0
    assert plog.log_end_offset == 2 and plog.active_segment.size == size
    plog.append(batch(7, 2, 0))  # the bumped epoch is accepted from 0
    assert plog.log_end_offset == 3


def test_clients_cannot_write_control_batches(tmp_path):
    plog = open_log(tmp_path)
    marker = build_batch([Record(b"\x00\x00\x00\x01", b"")], producer_id=1, producer_epoch=0,
                         transactional=True, control=True)
    with pytest.raises(CorruptRecordError):
        plog.append(marker)
    assert plog.log_end_offset == 0


def test_open_transactions_hold_back_the_last_stable_offset_and_aborts_are_indexed(tmp_path):
    plog = open_log(tmp_path)
    plog.append(batch(1, 0, 0, n=2, transactional=True, tag=b"a"))  # offsets 0-1, aborted later
    plog.append(batch(2, 0, 0, n=1, transactional=True, tag=b"c"))  # offset 2, committed later
    assert plog.last_stable_offset == 0
    plog.append_marker(1, 0, commit=False, coordinator_epoch=0)  # offset 3
    assert plog.last_stable_offset == 2  # producer 2 still open
    plog.append_marker(2, 0, commit=True, coordinator_epoch=0)  # offset 4
    assert plog.last_stable_offset == plog.log_end_offset == 5
    aborted = plog.aborted_transactions(0, 5)
    assert [(t.producer_id, t.first_offset, t.last_offset) for t in aborted] == [(1, 0, 3)]
    assert plog.aborted_transactions(4, 5) == []
    control = [b for b in read_all(plog) if b.header.is_control]
    assert [b.header.base_offset for b in control] == [3, 4]


def test_producer_state_and_aborted_index_survive_restarts_clean_and_unclean(tmp_path):
    plog = open_log(tmp_path, **{"segment.bytes": 300})
    plog.append(batch(1, 0, 0, n=2, transactional=True))
    plog.append_marker(1, 0, commit=False, coordinator_epoch=3)
    for seq in range(2, 8):
        plog.append(batch(1, 0, seq))  # rolls segments: snapshots at each roll
    plog.append(batch(9, 0, 0, transactional=True))  # left open
    end, lso = plog.log_end_offset, plog.last_stable_offset
    plog.flush()
    plog.close()
    for clean in (True, False):
        again = open_log(tmp_path, clean=clean, **{"segment.bytes": 300})
        assert (again.log_end_offset, again.last_stable_offset) == (end, lso)
        assert [(t.producer_id, t.first_offset) for t in again.aborted_transactions(0, end)] == [(1, 0)]
        assert again.append(batch(1, 0, 7)).duplicate  # the last batch is still known
        with pytest.raises(OutOfOrderSequenceError):
            again.append(batch(1, 0, 10))
        again.close()
    assert list(tmp_path.glob("*.snapshot"))


def test_without_snapshots_the_state_is_rebuilt_from_the_log(tmp_path):
    plog = open_log(tmp_path, **{"segment.bytes": 300})
    plog.append(batch(1, 0, 0, n=2, transactional=True))
    plog.append_marker(1, 0, commit=False, coordinator_epoch=0)
    for seq in range(2, 6):
        plog.append(batch(1, 0, seq))
    plog.append(batch(4, 0, 0, transactional=True))
    lso, end = plog.last_stable_offset, plog.log_end_offset
    plog.flush()
    plog.close()
    for snapshot in tmp_path.glob("*.snapshot"):
        snapshot.unlink()
    for index in tmp_path.glob("*.txnindex"):
        index.unlink()
    again = open_log(tmp_path, clean=False, **{"segment.bytes": 300})
    assert again.last_stable_offset == lso < end
    assert [(t.producer_id, t.first_offset, t.last_offset) for t in again.aborted_transactions(0, end)] == [(1, 0, 2)]
    assert again.append(batch(1, 0, 5)).duplicate


def test_read_committed_reads_stop_at_the_last_stable_offset(tmp_path):
    import asyncio

    from fetch.reader import Reader
    from hotlog.manager import LogManager

    logs = LogManager(str(tmp_path / "data")).open()
    logs.create_topic("t", 1)
    plog = logs.log("t", 0)
    plog.append(batch(1, 0, 0, n=2, transactional=True))  # 0-1, aborted
    plog.append_marker(1, 0, commit=False, coordinator_epoch=0)  # 2
    plog.append(batch(5, 0, 0, n=1))  # 3, plain
    plog.append(batch(2, 0, 0, n=1, transactional=True))  # 4, open
    reader = Reader(logs)
    committed = asyncio.run(reader.read("t", 0, 0, 1 << 20, read_committed=True))
    uncommitted = asyncio.run(reader.read("t", 0, 0, 1 << 20))
    assert committed.last_stable_offset == 4
    assert [b.header.base_offset for b in decode_batches(committed.records)] == [0, 2, 3]
    assert [(t.producer_id, t.first_offset) for t in committed.aborted] == [(1, 0)]
    assert [b.header.base_offset for b in decode_batches(uncommitted.records)] == [0, 2, 3, 4]
    assert uncommitted.aborted == ()
    logs.close()


def test_a_replay_after_a_crash_does_not_index_an_abort_twice(tmp_path):
    plog = open_log(tmp_path)
    plog.append(batch(1, 0, 0, n=2, transactional=True))
    plog.append_marker(1, 0, commit=False, coordinator_epoch=0)
    plog.append(batch(2, 0, 0, transactional=True))  # open: the replay's last stable offset differs
    plog.flush()
    for snapshot in tmp_path.glob("*.snapshot"):  # the crash came before any snapshot
        snapshot.unlink()
    again = open_log(tmp_path, clean=False)
    assert [(t.producer_id, t.first_offset) for t in again.aborted_transactions(0, 10)] == [(1, 0)]


def test_batches_without_a_sequence_follow_the_epoch_only(tmp_path):
    # The broker writes transactional offset commits without sequence numbers.
    plog = open_log(tmp_path)
    plog.append(batch(5, 0, -1, transactional=True))
    plog.append_marker(5, 1, commit=False, coordinator_epoch=0)  # a fencing abort bumps the epoch
    assert plog.append(batch(5, 2, -1, transactional=True)).base_offset == 2
    assert plog.append(batch(5, 2, -1, transactional=True)).base_offset == 3  # not taken for a retry
    with pytest.raises(InvalidProducerEpochError):
        plog.append(batch(5, 1, -1, transactional=True))


def test_idle_producers_expire_but_open_transactions_keep_theirs(tmp_path):
    plog = open_log(tmp_path)
    plog.append(batch(1, 0, 0))
    plog.append(batch(2, 0, 0, transactional=True))
    now = 10**13  # far after the batches' timestamps
    assert plog.expire_producers(now, 1000) == [1]
    assert plog.last_stable_offset == 1  # producer 2's transaction still holds it
    with pytest.raises(UnknownProducerIdError):
        plog.append(batch(1, 0, 5))  # its state is gone: it cannot continue where it was
    assert plog.append(batch(1, 0, 0)).base_offset == 2  # starting over is fine


def test_a_roll_leaves_the_snapshot_fsync_to_the_flush_that_seals_the_segment(tmp_path, monkeypatch):
    plog = open_log(tmp_path)
    plog.append(batch(7, 0, 0, n=3))
    rolled = plog.active_segment
    snapshot = os.path.realpath(plog.snapshot_path(rolled.next_offset))
    syncs: list[tuple[str, threading.Thread, bool]] = []  # (path, thread, sealed yet?) per fsync
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def recording(real):
        def sync(fd):
            syncs.append((os.readlink(f"/proc/self/fd/{fd}"), threading.current_thread(), rolled.sealed))
            real(fd)
        return sync

    monkeypatch.setattr(os, "fsync", recording(real_fsync))
    monkeypatch.setattr(os, "fdatasync", recording(real_fdatasync))

    async def roll_then_flush() -> threading.Thread:
        plog.roll()
        assert syncs == [] and os.path.getsize(snapshot) > 0  # written, not fsynced, by the loop
        assert rolled.rolled and not rolled.sealed
        plog.append(batch(7, 0, 3))
        await plog.flush_async()
        return threading.current_thread()

    loop_thread = asyncio.run(roll_then_flush())
    assert rolled.sealed
    snapshot_syncs = [(thread, sealed) for path, thread, sealed in syncs if path == snapshot]
    assert snapshot_syncs and all(thread is not loop_thread and not sealed for thread, sealed in snapshot_syncs)
    folder_syncs = [thread for path, thread, _ in syncs if path == os.path.realpath(tmp_path)]
    assert folder_syncs and loop_thread not in folder_syncs  # the rename is durable too
    syncs.clear()
    plog.flush()  # sealed: its snapshot is not synced again
    assert snapshot not in [path for path, _, _ in syncs]


@pytest.mark.parametrize("damage", ["empty", "cut mid-entry", "cut at an entry"])
@pytest.mark.parametrize("which", ["newest", "all"])
def test_a_snapshot_a_crash_left_empty_or_torn_is_dropped_and_the_state_replayed(tmp_path, damage, which):
    plog = open_log(tmp_path, **{"segment.bytes": 300})
    for seq in range(6):
        plog.append(batch(1, 0, 2 * seq, n=2))  # rolls: a snapshot (not fsynced) at each
        plog.append(batch(2, 0, seq))
    offsets = plog._snapshot_offsets()
    assert len(offsets) >= 2
    damaged = offsets[-1:] if which == "newest" else offsets
    for offset in damaged:  # what a crash before the sealing flush may leave
        path = plog.snapshot_path(offset)
        with open(path, "rb") as f:
            data = f.read()
        cut = {"empty": 0, "cut mid-entry": len(data) - 5, "cut at an entry": len(data) - 46}[damage]
        with open(path, "wb") as f:
            f.write(data[:cut])
    end = plog.log_end_offset
    again = open_log(tmp_path, clean=False, **{"segment.bytes": 300})
    assert again.log_end_offset == end
    assert not any(os.path.exists(again.snapshot_path(offset)) for offset in damaged)  # never uploaded
    retry = again.append(batch(1, 0, 10, n=2))
    assert retry.duplicate and again.log_end_offset == end
    assert again.append(batch(2, 0, 5)).duplicate
    with pytest.raises(OutOfOrderSequenceError):
        again.append(batch(1, 0, 13))
    assert again.append(batch(1, 0, 12)).base_offset == end
