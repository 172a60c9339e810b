"""The log cleaner's rules, one at a time: dirty ratio, compaction lags, tombstones,
transactions, producer state, passes of a small offset map, grouping, null keys, readers
of replaced segments, retention and the background task."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest

from hotlog.cleaner import CleanerConfig, LogCleaner, cleanable_range
from hotlog.errors import InvalidRecordError
from hotlog.manager import LogManager
from hotlog.records import GZIP, Record, build_batch, decode_batches

from .cleaner_support import COMPACT, Entry, log_records
from .support import BASE_TS, dir_state, open_log, read_all, split_batches

NOW = BASE_TS + 10_000


def fill(plog, rounds: int, keys: int = 5, *, ts: int = BASE_TS, tag: bytes = b"v") -> None:
    """`rounds` batches, each writing every key once; segments sealed as they roll."""
    for r in range(rounds):
        plog.append(build_batch([Record(b"k%d" % k, b"%s%d-%d" % (tag, r, k), timestamp=ts + r) for k in range(keys)]))
    plog.seal_active_segment()


def latest(plog) -> dict[bytes | None, bytes | None]:
    return {e.key: e.value for e in log_records(plog)}


def test_the_dirty_ratio_decides_when_a_log_is_cleaned(tmp_path):
    plog = open_log(tmp_path, {**COMPACT, "min.cleanable.dirty.ratio": 0.6})
    cleaner = LogCleaner()
    fill(plog, 12)
    assert cleaner.clean(plog, NOW) is not None  # all dirty: ratio 1
    fill(plog, 1)  # a little dirty data against the cleaned part
    before = dir_state(tmp_path)
    assert 0 < cleanable_range(plog, plog.segments, plog.last_stable_offset, NOW).dirty_ratio < 0.6
    assert cleaner.clean(plog, NOW) is None
    assert {k: v for k, v in dir_state(tmp_path).items() if k in before} == before
    fill(plog, 12, tag=b"w")
    assert cleaner.clean(plog, NOW) is not None
    assert latest(plog) == {b"k%d" % k: b"w11-%d" % k for k in range(5)}
    assert len(log_records(plog)) == 5


def test_min_compaction_lag_keeps_young_segments_dirty_and_max_lag_forces_a_clean(tmp_path):
    plog = open_log(tmp_path, {**COMPACT, "min.compaction.lag.ms": 5000})
    fill(plog, 6, ts=BASE_TS)
    fill(plog, 6, ts=NOW - 1000)  # younger than the lag at NOW
    young = 30  # the first offset of the second fill: six batches of five records before it
    result = LogCleaner().clean(plog, NOW)
    assert result is not None and result.first_dirty_offset == young
    assert [e.offset for e in log_records(plog) if e.offset >= young] == list(range(young, plog.log_end_offset))

    lagged = open_log(tmp_path / "b", {**COMPACT, "min.cleanable.dirty.ratio": 0.99, "max.compaction.lag.ms": 1000})
    fill(lagged, 6, ts=BASE_TS)
    LogCleaner().clean(lagged, NOW)
    fill(lagged, 1, ts=NOW - 500)  # dirty share far below 0.99, and not yet overdue
    assert LogCleaner().clean(lagged, NOW) is None
    assert LogCleaner().clean(lagged, NOW + 1000) is not None  # overdue now


def test_tombstones_go_once_their_segment_is_older_than_delete_retention_ms(tmp_path):
    plog = open_log(tmp_path, {**COMPACT, "delete.retention.ms": 60_000})
    fill(plog, 3)
    plog.append(build_batch([Record(b"k1", None), Record(b"k2", None)]))
    plog.seal_active_segment()
    cleaner = LogCleaner()
    wall = int(os.stat(plog.segments[0].log_path).st_mtime * 1000)
    cleaner.clean(plog, wall + 1000)
    assert latest(plog) == {b"k0": b"v2-0", b"k1": None, b"k2": None, b"k3": b"v2-3", b"k4": b"v2-4"}
    fill(plog, 1, keys=1)  # dirty again: the next clean rewrites the tombstones' segment
    cleaner.clean(plog, wall + 120_000)
    assert latest(plog) == {b"k0": b"v0-0", b"k3": b"v2-3", b"k4": b"v2-4"}


def test_aborted_transactions_go_committed_ones_stay_and_markers_wait_until_safe(tmp_path):
    plog = open_log(tmp_path, {**COMPACT, "delete.retention.ms": 0})
    txn = {"producer_epoch": 0, "transactional": True}
    plog.append(build_batch([Record(b"a", b"committed")], producer_id=7, base_sequence=0, **txn))
    plog.append_marker(7, 0, commit=True, coordinator_epoch=1)
    plog.append(build_batch([Record(b"a", b"aborted"), Record(b"b", b"aborted")], producer_id=8,
                            base_sequence=0, **txn))
    plog.append_marker(8, 0, commit=False, coordinator_epoch=1)
    plog.append(build_batch([Record(b"c", b"plain")]))
    plog.seal_active_segment()
    assert [t.producer_id for t in plog.aborted_transactions(0, plog.log_end_offset)] == [8]
    LogCleaner().clean(plog, NOW)
    records = log_records(plog)
    assert [e for e in records if e.key in (b"a", b"b", b"c")] == [Entry(0, b"a", b"committed"), Entry(5, b"c", b"plain")]
    batches = [split_batches(b)[0][1] for b in read_all(plog)]
    # Producer 8's aborted batch is its last: kept as a header alone (its sequence), and so
    # its ABORT marker and index entry stay; the COMMIT marker stays while its data does.
    assert [(h.base_offset, h.record_count, h.is_control) for h in batches] == [
        (0, 1, False), (1, 1, True), (2, 0, False), (4, 1, True), (5, 1, False)]
    assert [t.producer_id for t in plog.aborted_transactions(0, plog.log_end_offset)] == [8]


def test_an_idempotent_producer_goes_on_after_its_records_are_cleaned_away_and_a_restart(tmp_path):
    plog = open_log(tmp_path, COMPACT)
    for seq in range(4):
        plog.append(build_batch([Record(b"k", b"p%d" % seq)], producer_id=3, producer_epoch=0, base_sequence=seq))
    plog.append(build_batch([Record(b"k", b"later")]))  # makes the producer's records all stale
    plog.seal_active_segment()
    LogCleaner().clean(plog, NOW)
    kept = [split_batches(b)[0][1] for b in read_all(plog)]
    assert [(h.producer_id, h.base_sequence, h.record_count) for h in kept] == [(3, 3, 0), (-1, -1, 1)]
    plog.close()
    plog = open_log(tmp_path, COMPACT)
    info = plog.append(build_batch([Record(b"k", b"p4")], producer_id=3, producer_epoch=0, base_sequence=4))
    assert not info.duplicate and latest(plog) == {b"k": b"p4"}


def test_a_small_offset_map_cleans_in_several_passes_to_the_same_log(tmp_path):
    small = open_log(tmp_path / "small", COMPACT)
    big = open_log(tmp_path / "big", COMPACT)
    for plog in (small, big):
        for r in range(8):
            plog.append(build_batch([Record(b"k%d" % k, b"%d-%d" % (r, k)) for k in range(20)], compression=GZIP))
        plog.seal_active_segment()
    result = LogCleaner(CleanerConfig(dedupe_buffer_size=16 * 8)).clean(small, NOW)  # 7 keys a pass
    assert result is not None and result.stats.passes >= 3
    assert LogCleaner().clean(big, NOW).stats.passes == 1
    assert log_records(small) == log_records(big)
    assert [e.value for e in log_records(small)] == [b"7-%d" % k for k in range(20)]


def test_cleaned_segments_are_grouped_into_few_files(tmp_path):
    plog = open_log(tmp_path, COMPACT)
    for r in range(40):
        plog.append(build_batch([Record(b"k%d" % (r % 4), b"x" * 100)]))
    plog.seal_active_segment()
    before = len(plog.segments)
    cleaner = LogCleaner()
    cleaner.clean(plog, NOW)  # groups are of what the segments held before: as many as before
    fill(plog, 1)
    cleaner.clean(plog, NOW)  # now small, they go together
    assert before >= 10 and len(plog.segments) <= before // 2
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".log")) == [
        f"{s.base_offset:020d}.log" for s in plog.segments]
    assert not [n for n in os.listdir(tmp_path) if n.endswith((".cleaned", ".swap"))]


def test_records_without_a_key_are_refused_by_compacted_topics_and_nothing_is_written(tmp_path):
    plog = open_log(tmp_path, COMPACT)
    plog.append(build_batch([Record(b"k", b"v")]))
    for codec in (0, GZIP):
        with pytest.raises(InvalidRecordError, match="without a key"):
            plog.append(build_batch([Record(b"k", b"v"), Record(None, b"v")], compression=codec))
    assert plog.log_end_offset == 1
    open_log(tmp_path / "plain", {}).append(build_batch([Record(None, b"v")]))  # delete topics take them


def test_a_reader_holding_a_replaced_segment_reads_it_to_the_end(tmp_path):
    plog = open_log(tmp_path, COMPACT)
    fill(plog, 10)
    held = plog.read(0, 1 << 20)
    expected = [(r.offset, r.value) for b in decode_batches(held.read()) for r in b.records]
    LogCleaner().clean(plog, NOW)
    assert len(log_records(plog)) == 5
    assert [(r.offset, r.value) for b in decode_batches(held.read()) for r in b.records] == expected


def test_retention_leaves_compacted_only_topics_alone_and_applies_to_compact_delete(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    for name, policy in (("c", "compact"), ("cd", "compact,delete")):
        manager.create_topic(name, 1, {**COMPACT, "cleanup.policy": policy, "retention.ms": 1})
        fill(manager.log(name, 0), 10, ts=BASE_TS)
    manager.apply_retention(NOW)
    assert manager.log("c", 0).log_start_offset == 0
    assert manager.log("cd", 0).log_start_offset > 0


def test_the_background_cleaner_cleans_swaps_on_the_loop_and_checkpoints(tmp_path):
    async def scenario() -> None:
        manager = LogManager(str(tmp_path), cleaner=CleanerConfig(backoff_ms=10)).open()
        manager.create_topic("t", 1, COMPACT)
        plog = manager.log("t", 0)
        fill(plog, 20)
        seen: list[int] = []
        task = asyncio.create_task(manager.run_cleaner())
        while plog.first_dirty_offset == 0:  # a reader going on meanwhile never sees an offset twice
            found = plog.read(0, 1 << 20)
            seen = [r.offset for b in decode_batches(found.read()) for r in b.records]
            assert seen == sorted(set(seen))
            await asyncio.sleep(0.001)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert len(log_records(plog)) == 5
        manager.close()
        again = LogManager(str(tmp_path)).open()
        assert again.log("t", 0).first_dirty_offset == plog.first_dirty_offset
        again.close()

    asyncio.run(scenario())


def test_header_only_batches_do_not_pile_up_clean_after_clean(tmp_path):
    """A clean keeps a group's last batch header-only; the next clean drops it once it no
    longer ends a group, so the log does not grow by a header per clean."""
    plog = open_log(tmp_path, COMPACT)
    cleaner = LogCleaner()
    empties = []
    for round_ in range(30):
        fill(plog, 6, tag=b"r%d-" % round_)
        assert cleaner.clean(plog, NOW) is not None
        batches = [b for segment in plog.segments for b in decode_batches(segment.pread(0, segment.size))]
        empties.append(sum(1 for b in batches if not b.records))
        assert empties[-1] <= len(plog.segments), "more header-only batches than group ends"
    assert latest(plog) == {b"k%d" % k: b"r29-5-%d" % k for k in range(5)}
    assert max(empties[10:]) <= max(empties[:10]) + 1, f"header-only batches grow: {empties}"
