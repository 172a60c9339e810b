"""One segment: sparse indexes in Kafka's layout, bounded reads, loading and rebuilding."""

import os

from hotlog.segment import LogSegment

from .support import (
    BASE_TS,
    check_index_files,
    make_batch,
    offset_index_entries,
    open_log,
    split_batches,
    time_index_entries,
)


def filled_log(path, count=40, interval=300, **configs):
    plog = open_log(path, {"index.interval.bytes": interval, **configs})
    for i in range(count):
        plog.append(make_batch(1 + i % 4, value_size=50, timestamp=BASE_TS + 10 * i))
    return plog


def test_indexes_are_sparse_and_every_entry_points_at_a_batch_start(tmp_path):
    plog = filled_log(tmp_path, interval=300)
    plog.flush()
    segment = plog.active_segment
    offsets, times = check_index_files(segment.log_path, segment.base_offset)
    # An entry once more than index.interval.bytes were written since the previous one.
    assert segment.size // 600 <= offsets <= segment.size // 300 + 1
    assert times == offsets  # timestamps rise with every batch here


def test_index_interval_zero_indexes_every_batch_but_the_first(tmp_path):
    plog = filled_log(tmp_path, count=10, interval=0)
    plog.flush()
    assert check_index_files(plog.active_segment.log_path, 0) == (9, 9)


def test_recovery_rebuilds_the_indexes_appends_wrote(tmp_path):
    plog = filled_log(tmp_path, interval=200)
    plog.flush()
    segment = plog.active_segment
    written = (offset_index_entries(segment.offset_index.path), time_index_entries(segment.time_index.path))
    plog.close()
    fresh = LogSegment(str(tmp_path), 0, index_interval_bytes=200, index_max_bytes=1 << 20)
    assert fresh.recover() == 0
    assert (offset_index_entries(fresh.offset_index.path), time_index_entries(fresh.time_index.path)) == written
    assert (fresh.next_offset, fresh.size, fresh.max_timestamp) == (
        segment.next_offset, segment.size, segment.max_timestamp)


def test_load_refuses_an_index_with_a_torn_entry(tmp_path):
    plog = filled_log(tmp_path, interval=200)
    plog.close()
    index_path = os.path.join(tmp_path, "00000000000000000000.index")
    with open(index_path, "ab") as f:
        f.write(b"\x00\x01\x02")
    segment = LogSegment(str(tmp_path), 0, index_interval_bytes=200, index_max_bytes=1 << 20)
    assert not segment.load()
    assert segment.recover() == 0 and os.path.getsize(index_path) % 8 == 0
    check_index_files(segment.log_path, 0)


def test_reads_return_whole_batches_within_max_bytes_but_at_least_one(tmp_path):
    plog = filled_log(tmp_path)
    segment = plog.active_segment
    sizes = [h.size for _, h in split_batches(segment.pread(0, segment.size))]
    found = segment.read(0, sizes[0] + sizes[1] + sizes[2] - 1)
    assert found.size == sizes[0] + sizes[1] and found.end_offset == 3  # batches of 1 and 2 records
    assert segment.read(0, 1).size == sizes[0]  # KIP-74: one batch even when it is larger
    assert segment.read(0, 1, min_one=False) is None
    assert segment.read(1, 10**9).size == segment.size - sizes[0]  # from the batch holding offset 1
    assert segment.read(segment.next_offset, 100) is None


def test_reads_stop_before_batches_at_or_past_max_offset(tmp_path):
    plog = filled_log(tmp_path)
    segment = plog.active_segment
    found = segment.read(0, 10**9, max_offset=4)  # offsets 0 | 1-2 | 3-5: the batch holding 4 goes in
    assert [h.base_offset for _, h in split_batches(found.read())] == [0, 1, 3]
    found = segment.read(0, 10**9, max_offset=3)
    assert [h.base_offset for _, h in split_batches(found.read())] == [0, 1]
    assert segment.read(3, 10**9, max_offset=3) is None


def test_a_slice_stays_readable_after_its_segment_is_deleted(tmp_path):
    plog = filled_log(tmp_path, **{"segment.bytes": 2000})
    first = plog.segments[0]
    found = plog.read(0, 1 << 20)
    expected = found.read()
    plog.flush()
    assert len(plog.delete_oldest_segments(1)) == 1 and not os.path.exists(first.log_path)
    assert found.read() == expected and os.readlink(f"/proc/self/fd/{found.fd}") == first.log_path + " (deleted)"


def test_an_offset_index_maps_to_the_batch_holding_an_offset(tmp_path):
    plog = filled_log(tmp_path, count=200, interval=100)
    segment = plog.active_segment
    for offset in range(segment.next_offset):
        position, header = segment.position_of(offset)
        assert header.base_offset <= offset <= header.last_offset
        assert segment.pread(position, 8) == header.base_offset.to_bytes(8, "big")


def test_a_full_index_rolls_the_segment(tmp_path):
    plog = open_log(tmp_path, {"index.interval.bytes": 0, "segment.index.bytes": 4096})
    for _ in range(4096 // 8 + 5):
        plog.append(make_batch(1))  # one timestamp: the time index stays at one entry
    assert len(plog.segments) == 2 and len(plog.segments[0].offset_index) == 4096 // 8
    plog = open_log(tmp_path / "rising", {"index.interval.bytes": 0, "segment.index.bytes": 4096})
    for i in range(4096 // 8):
        plog.append(make_batch(1, timestamp=BASE_TS + i))
    assert len(plog.segments) == 2 and len(plog.segments[0].time_index) == 4096 // 12
