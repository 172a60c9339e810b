"""Retention by time and size, applied by the log manager to the logs hotlog owns."""

import os
from typing import NamedTuple

import pytest

from hotlog.errors import OffsetOutOfRangeError
from hotlog.manager import LogManager
from hotlog.retention import count_expired

from .support import BASE_TS, make_batch, payload_digest, read_all

DAY = 86_400_000


def manager_with(tmp_path, configs, batches=30, spacing_ms=60_000):
    """A topic of one partition whose batch i has timestamp BASE_TS + i*spacing_ms."""
    manager = LogManager(str(tmp_path)).open()
    manager.retention_delegate = lambda plog: plog.config.remote_storage_enable  # tiering's rule
    manager.create_topic("t", 1, {"remote.storage.enable": "false", "segment.bytes": 1000, **configs})
    plog = manager.log("t", 0)
    sent = [make_batch(2, value_size=60, tag=b"%d" % i, timestamp=BASE_TS + i * spacing_ms) for i in range(batches)]
    for batch in sent:
        plog.append(batch)
    plog.flush()
    return manager, plog, sent


def test_time_retention_deletes_whole_segments_older_than_retention_ms(tmp_path):
    manager, plog, sent = manager_with(tmp_path, {"retention.ms": 10 * 60_000})
    segments = list(plog.segments)
    assert len(segments) > 4
    now = BASE_TS + 29 * 60_000  # the newest batch's time
    expired = [s for s in segments[:-1] if now - s.max_timestamp > 10 * 60_000]
    assert 0 < len(expired) < len(segments) - 1
    assert manager.apply_retention(now_ms=now) == len(expired)
    assert plog.segments == segments[len(expired):]
    assert plog.log_start_offset == segments[len(expired)].base_offset
    for segment in expired:
        assert not any(os.path.exists(p) for p in segment.paths)
    first_kept = plog.log_start_offset // 2  # two records per batch
    assert [payload_digest(b) for b in read_all(plog)] == [payload_digest(b) for b in sent[first_kept:]]
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(plog.log_start_offset - 1, 1000)
    assert manager.apply_retention(now_ms=now) == 0  # nothing more is due


def test_the_active_segment_and_unsealed_segments_are_kept(tmp_path):
    manager, plog, _ = manager_with(tmp_path, {"retention.ms": 1000})
    plog.roll()  # rolled but not flushed: not sealed yet
    count = len(plog.segments)
    assert not plog.segments[-2].sealed
    deleted = manager.apply_retention(now_ms=BASE_TS + 100 * DAY)
    assert deleted == count - 2 and len(plog.segments) == 2
    plog.flush()
    assert manager.apply_retention(now_ms=BASE_TS + 100 * DAY) == 1
    assert len(plog.segments) == 1 and plog.active_segment.is_empty
    assert plog.log_start_offset == plog.log_end_offset == 60


def test_size_retention_keeps_the_newest_segments_within_retention_bytes(tmp_path):
    manager, plog, _ = manager_with(tmp_path, {"retention.bytes": 2500, "retention.ms": -1})
    assert plog.size_bytes > 5000
    manager.apply_retention(now_ms=BASE_TS)
    sizes = [s.size for s in plog.segments]
    # Kafka's rule: delete the oldest while what remains stays at or above retention.bytes.
    assert sum(sizes) >= 2500 and sum(sizes) - sizes[0] < 2500
    assert plog.log_start_offset == plog.segments[0].base_offset > 0


def test_retention_ms_minus_one_keeps_everything_forever(tmp_path):
    manager, plog, sent = manager_with(tmp_path, {"retention.ms": -1})
    assert manager.apply_retention(now_ms=BASE_TS + 10_000 * DAY) == 0
    assert plog.log_start_offset == 0 and len(read_all(plog)) == len(sent)


def test_logs_owned_by_tiering_are_left_to_it(tmp_path):
    manager, plog, _ = manager_with(tmp_path, {"retention.ms": 1000})
    manager.create_topic("tiered", 1, {"retention.ms": 1000, "segment.bytes": 500})
    tiered = manager.log("tiered", 0)
    for i in range(10):
        tiered.append(make_batch(2, value_size=60, timestamp=BASE_TS + i))
    tiered.flush()
    count = len(tiered.segments)
    assert manager.apply_retention(now_ms=BASE_TS + DAY) > 0
    assert len(plog.segments) == 1 and len(tiered.segments) == count > 1


def test_the_log_start_survives_a_restart_after_retention(tmp_path):
    manager, plog, sent = manager_with(tmp_path, {"retention.ms": 10 * 60_000})
    manager.apply_retention(now_ms=BASE_TS + 29 * 60_000)
    start, end, kept = plog.log_start_offset, plog.log_end_offset, read_all(plog)
    manager.close()
    again = LogManager(str(tmp_path)).open()
    plog = again.log("t", 0)
    assert (plog.log_start_offset, plog.log_end_offset, read_all(plog)) == (start, end, kept)
    assert not [n for n in os.listdir(tmp_path / "t-0") if n.endswith(".snapshot") and int(n[:20]) < start]


class Segment(NamedTuple):
    size_bytes: int
    max_timestamp: int


def test_the_oldest_segments_expire_by_time_or_by_size_whichever_takes_more():
    segments = [Segment(100, 10), Segment(100, 20), Segment(100, 40), Segment(100, 30)]

    # 500 bytes in all: 100 more are in segments that may not go (active, or not uploaded).
    def count(retention_ms: int, retention_bytes: int) -> int:
        return count_expired(segments, total_bytes=500, retention_ms=retention_ms, retention_bytes=retention_bytes,
                             now_ms=50)

    assert count(25, -1) == 2  # 40 and 30 ms old; the third is 10 ms old
    assert count(30, -1) == 1  # exactly retention_ms old is not past it
    assert count(15, -1) == 2  # oldest first: the fourth is past it too, but the newer third stops the count
    assert count(-1, 300) == 2  # while what remains stays at or above retention.bytes
    assert count(-1, 301) == 1
    assert count(-1, 0) == 4  # never more than the segments that may go
    assert (count(25, 400), count(45, 200)) == (2, 3)  # the larger of the two
    assert count(-1, -1) == 0
