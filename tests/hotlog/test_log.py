"""A partition log: appends, rolls, sealing, reads, timestamps, bad input and durability."""

import asyncio
import os
import random
import struct
import time

import pytest

from hotlog.batch import MIN_BATCH_LENGTH, validate_batch, validate_batches
from hotlog.errors import CorruptRecordError, LogStorageError, OffsetOutOfRangeError, RecordTooLargeError
from hotlog.records import Record, build_batch, decode_batch, decode_batches
from hotlog.segment import LogSegment

from .support import (
    BASE_TS,
    check_index_files,
    dir_state,
    make_batch,
    open_log,
    payload_digest,
    read_all,
    split_batches,
)


def fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.fixture
def fsyncs(monkeypatch):
    """Paths fsynced or fdatasynced, in order."""
    synced: list[str] = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def fsync(fd):
        synced.append(fd_path(fd))
        real_fsync(fd)

    def fdatasync(fd):
        synced.append(fd_path(fd))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return synced


def test_appends_get_consecutive_offsets_and_read_back_byte_identical(tmp_path):
    plog = open_log(tmp_path)
    sent = [make_batch(n, tag=b"%d" % n) for n in (1, 5, 2, 7)]
    infos = [plog.append(b) for b in sent]
    assert [(i.base_offset, i.last_offset, i.record_count) for i in infos] == [
        (0, 0, 1), (1, 5, 5), (6, 7, 2), (8, 14, 7)]
    assert plog.log_end_offset == 15 and plog.log_start_offset == 0
    got = read_all(plog)
    assert [payload_digest(b) for b in got] == [payload_digest(b) for b in sent]
    assert [split_batches(b)[0][1].base_offset for b in got] == [0, 1, 6, 8]


def test_several_batches_in_one_append_are_written_together(tmp_path):
    plog = open_log(tmp_path)
    info = plog.append(make_batch(2) + make_batch(3, tag=b"x"))
    assert (info.base_offset, info.last_offset, len(info.batches)) == (0, 4, 2)
    assert [b.header.base_offset for b in decode_batches(plog.read(0, 1 << 20).read())] == [0, 2]


def test_segments_roll_at_segment_bytes_without_splitting_a_batch(tmp_path):
    plog = open_log(tmp_path, {"segment.bytes": 1000})
    sent = [make_batch(1 + i % 3, value_size=90) for i in range(40)]
    for batch in sent:
        plog.append(batch)
    assert len(plog.segments) > 5
    for segment in plog.segments:
        assert 0 < segment.size <= 1000
        assert os.path.getsize(segment.log_path) == segment.size
    for before, after in zip(plog.segments, plog.segments[1:]):
        assert after.base_offset == before.next_offset
        first_of_next = split_batches(after.pread(0, after.size))[0][1]
        assert before.size + first_of_next.size > 1000  # rolled only when the next batch would not fit
    assert [payload_digest(b) for b in read_all(plog)] == [payload_digest(b) for b in sent]


def test_segments_roll_when_segment_ms_has_passed(tmp_path):
    plog = open_log(tmp_path, {"segment.ms": 60_000})
    now = int(time.time() * 1000)
    plog.append(make_batch(1), now_ms=now)
    plog.append(make_batch(1), now_ms=now + 59_000)
    assert len(plog.segments) == 1
    plog.append(make_batch(1), now_ms=now + 61_000)
    assert [s.base_offset for s in plog.segments] == [0, 2]


def test_an_explicit_roll_starts_a_segment_at_the_log_end_and_an_empty_one_stays(tmp_path):
    plog = open_log(tmp_path)
    plog.append(make_batch(3))
    first = plog.active_segment
    assert plog.roll() is plog.active_segment and first.rolled
    assert plog.roll() is plog.active_segment  # rolling an empty segment does nothing
    assert [s.base_offset for s in plog.segments] == [0, 3]
    assert plog.append(make_batch(1)).base_offset == 3


def test_rolled_segments_are_sealed_by_the_next_flush_with_trimmed_fsynced_indexes(tmp_path, fsyncs):
    plog = open_log(tmp_path, {"segment.bytes": 2000, "index.interval.bytes": 100})
    for i in range(30):
        plog.append(make_batch(2, value_size=60, timestamp=BASE_TS + i))
    rolled = plog.segments[:-1]
    assert rolled and all(s.rolled and not s.sealed for s in rolled)
    assert not plog.active_segment.rolled
    plog.flush()
    assert all(s.sealed for s in rolled) and not plog.active_segment.sealed
    for segment in rolled:
        offsets, times = check_index_files(segment.log_path, segment.base_offset)
        assert os.path.getsize(segment.offset_index.path) == offsets * 8 == len(segment.offset_index) * 8
        assert os.path.getsize(segment.time_index.path) == times * 12 == len(segment.time_index) * 12
        # The final time index entry names the segment's largest timestamp.
        assert segment.time_index.keys[-1] == segment.max_timestamp
        assert {segment.log_path, segment.offset_index.path, segment.time_index.path} <= set(fsyncs)
    assert plog.active_segment.log_path in fsyncs
    assert plog.recovery_point == plog.log_end_offset
    fsyncs.clear()
    plog.flush()  # nothing new: nothing to fsync
    assert fsyncs == []


def test_offset_for_timestamp_finds_the_exact_record_across_segments(tmp_path):
    plog = open_log(tmp_path, {"segment.bytes": 1500, "index.interval.bytes": 200})
    written: list[tuple[int, int]] = []  # (offset, timestamp) of every record, in offset order
    for i in range(40):
        # Record j of batch i has timestamp BASE_TS + 100*i + 10*j, but record 3 is an early outlier.
        stamps = [BASE_TS + 100 * i + 10 * j for j in range(5)]
        stamps[3] = BASE_TS + 100 * i - 5000
        info = plog.append(build_batch([Record(None, b"x" * 40, (), ts) for ts in stamps]))
        written += [(info.base_offset + j, ts) for j, ts in enumerate(stamps)]
    assert len(plog.segments) > 3

    def first_at_or_after(target):
        return next(((o, ts) for o, ts in written if ts >= target), None)

    targets = [0, BASE_TS, BASE_TS + 100 * 39 + 40, BASE_TS + 100 * 39 + 41]
    targets += [BASE_TS + 100 * i + d for i in (0, 7, 21, 38) for d in (0, 1, 10, 11, 20, 21, 40, 41, -4999)]
    targets += random.Random(3).sample(range(BASE_TS - 6000, BASE_TS + 4100), 50)
    for target in targets:
        assert plog.offset_for_timestamp(target) == first_at_or_after(target), target
    assert plog.offset_for_timestamp(BASE_TS + 100 * 21 + 21) == (21 * 5 + 4, BASE_TS + 100 * 21 + 40)
    assert plog.offset_for_timestamp(BASE_TS + 100 * 39 + 41) is None


def test_log_append_time_topics_stamp_each_batch_with_a_valid_crc(tmp_path):
    plog = open_log(tmp_path, {"message.timestamp.type": "LogAppendTime"})
    info = plog.append(make_batch(3) + make_batch(2, tag=b"b"), now_ms=1_234_567)
    assert info.log_append_time == 1_234_567
    data = plog.read(0, 1 << 20).read()
    headers = [h for _, h in validate_batches(data)]  # CRCs hold after the rewrite
    assert [h.max_timestamp for h in headers] == [1_234_567, 1_234_567] and all(h.log_append_time for h in headers)
    assert [(h.crc, h.attributes, h.max_timestamp) for h in info.batches] == [
        (h.crc, h.attributes, h.max_timestamp) for h in headers]
    assert {r.timestamp for d in decode_batches(data) for r in d.records} == {1_234_567}
    assert plog.offset_for_timestamp(1_234_567) == (0, 1_234_567)


def test_flush_messages_triggers_a_flush(tmp_path, fsyncs):
    plog = open_log(tmp_path, {"flush.messages": 5})
    for _ in range(4):
        plog.append(make_batch(1))
    assert fsyncs == [] and plog.recovery_point == 0
    plog.append(make_batch(1))
    assert plog.active_segment.log_path in fsyncs and plog.recovery_point == 5
    plog.append(make_batch(3))
    assert plog.recovery_point == 5
    plog.append(make_batch(2))
    assert plog.recovery_point == 10


def test_concurrent_flush_async_callers_share_fsyncs(tmp_path, monkeypatch):
    plog = open_log(tmp_path)
    durable: list[int] = []  # file size covered by each finished fdatasync
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd):
        covered = os.fstat(fd).st_size  # written before the sync starts, so covered by it
        time.sleep(0.004)
        real_fdatasync(fd)
        durable.append(covered)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    rng = random.Random(7)

    async def appender(i):
        await asyncio.sleep(rng.random() * 0.05)
        plog.append(make_batch(1, tag=b"%d" % i))
        needed = plog.active_segment.size
        await plog.flush_async()
        assert durable and max(durable) >= needed, "flush_async returned before a sync covered the append"
        return needed

    async def scenario():
        return await asyncio.gather(*(appender(i) for i in range(50)))

    ends = asyncio.run(scenario())
    assert len(ends) == 50 and plog.recovery_point == 50
    assert 1 <= len(durable) <= 20, f"{len(durable)} syncs for 50 appends"


def test_flush_async_with_nothing_new_returns_without_syncing(tmp_path, fsyncs):
    plog = open_log(tmp_path)
    plog.append(make_batch(1))
    plog.flush()
    fsyncs.clear()
    asyncio.run(plog.flush_async())
    assert fsyncs == []


def corrupt(kind: str) -> bytes:
    batch = make_batch(3)
    if kind == "truncated":
        return batch[:-5]
    if kind == "magic":
        return batch[:16] + b"\x01" + batch[17:]
    if kind == "crc":
        return batch[:-1] + bytes([batch[-1] ^ 1])
    if kind == "length":
        return batch[:8] + struct.pack(">i", MIN_BATCH_LENGTH - 1) + batch[12:]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["truncated", "magic", "crc", "length"])
def test_a_corrupt_batch_is_refused_and_changes_nothing(tmp_path, kind):
    plog = open_log(tmp_path, {"segment.bytes": 600})
    for _ in range(5):
        plog.append(make_batch(2, value_size=50))
    plog.flush()
    before = (plog.log_end_offset, dir_state(tmp_path), read_all(plog))
    with pytest.raises(CorruptRecordError):
        plog.append(make_batch(1) + corrupt(kind))  # a good batch first: all or nothing
    assert (plog.log_end_offset, dir_state(tmp_path), read_all(plog)) == before
    assert plog.append(make_batch(1)).base_offset == before[0]


def test_a_batch_above_max_message_bytes_is_refused_and_changes_nothing(tmp_path):
    plog = open_log(tmp_path, {"max.message.bytes": 500})
    plog.append(make_batch(1, value_size=100))
    before = (plog.log_end_offset, dir_state(tmp_path))
    big = make_batch(1, value_size=500)
    with pytest.raises(RecordTooLargeError, match="max.message.bytes"):
        plog.append(big)
    with pytest.raises(RecordTooLargeError):
        plog.append(make_batch(1) + big)
    assert (plog.log_end_offset, dir_state(tmp_path)) == before
    assert validate_batch(memoryview(make_batch(1, value_size=400))).size <= 500
    plog.append(make_batch(1, value_size=400))  # just under the limit goes in
    assert plog.log_end_offset == 2


def test_reads_outside_the_log_raise_offset_out_of_range(tmp_path):
    plog = open_log(tmp_path, {"segment.bytes": 500})
    for _ in range(10):
        plog.append(make_batch(2, value_size=60))
    plog.flush()
    plog.delete_oldest_segments(2)
    start, end, files = plog.log_start_offset, plog.log_end_offset, dir_state(tmp_path)
    assert start > 0
    for offset in (start - 1, 0, end + 1, 10**12):
        with pytest.raises(OffsetOutOfRangeError) as raised:
            plog.read(offset, 1000)
        assert (raised.value.log_start_offset, raised.value.log_end_offset) == (start, end)
    assert (plog.log_start_offset, plog.log_end_offset, dir_state(tmp_path)) == (start, end, files)
    assert plog.read(end, 1000) is None  # the end itself: nothing yet, not an error
    assert decode_batch(plog.read(start, 1000).read()).header.base_offset == start


def test_reads_honour_max_offset(tmp_path):
    plog = open_log(tmp_path)
    for _ in range(10):
        plog.append(make_batch(2, value_size=60))
    found = plog.read(0, 1 << 20, max_offset=6)
    assert [h.base_offset for _, h in split_batches(found.read())] == [0, 2, 4]
    assert plog.read(6, 1 << 20, max_offset=6) is None


def test_sync_counts_per_segment(tmp_path, monkeypatch):
    calls: list[int] = []
    real_sync = LogSegment.sync

    def counting_sync(self):
        calls.append(self.base_offset)
        real_sync(self)

    monkeypatch.setattr(LogSegment, "sync", counting_sync)
    plog = open_log(tmp_path, {"segment.bytes": 400})
    for _ in range(6):
        plog.append(make_batch(2, value_size=60))
    plog.flush()
    assert sorted(calls) == [s.base_offset for s in plog.segments]  # every dirty segment, once
    calls.clear()
    plog.append(make_batch(1))
    plog.flush()
    assert calls == [plog.active_segment.base_offset]


def test_a_failed_fsync_reaches_every_waiter_and_takes_the_log_offline_until_restart(tmp_path, monkeypatch):
    plog = open_log(tmp_path)
    real_fdatasync = os.fdatasync
    failures = [OSError(5, "Input/output error")]

    def flaky(fd):
        if failures:
            raise failures.pop()
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", flaky)

    async def scenario():
        plog.append(make_batch(1))
        results = await asyncio.gather(*(plog.flush_async() for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, LogStorageError) for r in results) and plog.recovery_point == 0
        # a later fsync could succeed on pages the kernel already dropped: it must not count
        with pytest.raises(LogStorageError):
            await plog.flush_async()
        with pytest.raises(LogStorageError):
            plog.append(make_batch(1))
        assert plog.recovery_point == 0 and plog.log_end_offset == 1

    asyncio.run(scenario())
    plog.close()
    again = open_log(tmp_path, clean=False)  # recovery checks the disk and the log takes writes again
    assert again.log_end_offset == 1
    again.append(make_batch(1))
    again.flush()
    assert again.recovery_point == 2


def test_flush_async_up_to_an_offset_waits_only_for_that(tmp_path, fsyncs):
    plog = open_log(tmp_path)
    plog.append(make_batch(2))
    plog.flush()
    plog.append(make_batch(2))
    fsyncs.clear()
    asyncio.run(plog.flush_async(2))  # offsets below 2 are durable already
    assert fsyncs == [] and plog.recovery_point == 2
    asyncio.run(plog.flush_async(3))
    assert fsyncs and plog.recovery_point == 4


def test_truncate_fully_and_start_at_continues_an_empty_log_at_the_offset(tmp_path):
    plog = open_log(tmp_path, {"segment.bytes": 500})
    for _ in range(6):
        plog.append(make_batch(2, value_size=60))
    old_files = [s.log_path for s in plog.segments]
    plog.truncate_fully_and_start_at(1000)
    assert not any(os.path.exists(p) for p in old_files)
    assert (plog.log_start_offset, plog.log_end_offset) == (1000, 1000) and read_all(plog) == []
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(0, 100)
    assert plog.append(make_batch(3)).base_offset == 1000
    plog.close()
    again = open_log(tmp_path)
    assert (again.log_start_offset, again.log_end_offset) == (1000, 1003) and len(read_all(again)) == 1


def test_batches_larger_than_the_scan_window_read_and_recover(tmp_path):
    plog = open_log(tmp_path, {"index.interval.bytes": 100_000})
    sent = [build_batch([Record(None, os.urandom(70_000 + 1000 * i), (), BASE_TS)]) for i in range(6)]
    for batch in sent:
        plog.append(batch)
        plog.append(make_batch(1))
    plog.flush()
    expected = [payload_digest(b) for b in read_all(plog)]
    assert [payload_digest(b) for b in read_all(plog, max_bytes=100)] == expected
    assert [payload_digest(b) for b in read_all(plog, max_bytes=150_000)] == expected
    plog.close()
    again = open_log(tmp_path, {"index.interval.bytes": 100_000}, clean=False)
    assert [payload_digest(b) for b in read_all(again)] == expected
    check_index_files(again.active_segment.log_path, 0)


def test_flush_messages_counts_appends_made_while_a_flush_runs(tmp_path, monkeypatch):
    plog = open_log(tmp_path, {"flush.messages": 1})
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd):
        time.sleep(0.02)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)

    async def scenario():
        plog.append(make_batch(1))  # starts a background flush
        await asyncio.sleep(0.005)
        plog.append(make_batch(1))  # arrives while it runs
        for _ in range(100):
            await asyncio.sleep(0.01)
            if plog.recovery_point == 2:
                break

    asyncio.run(scenario())
    assert plog.recovery_point == 2 and plog.unflushed_messages == 0


def test_segment_ms_counts_from_the_first_batch_across_restarts(tmp_path, monkeypatch):
    clock = [time.time()]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    start_ms = int(clock[0] * 1000)
    plog = open_log(tmp_path, {"segment.ms": 60_000})
    plog.append(make_batch(1, timestamp=start_ms), now_ms=start_ms)
    plog.close()
    clock[0] += 40  # a restart 40 s later must not give the segment a fresh minute
    plog = open_log(tmp_path, {"segment.ms": 60_000})
    plog.append(make_batch(1, timestamp=start_ms + 50_000), now_ms=start_ms + 50_000)
    assert len(plog.segments) == 1
    plog.append(make_batch(1, timestamp=start_ms + 61_000), now_ms=start_ms + 61_000)
    assert [s.base_offset for s in plog.segments] == [0, 2]
