"""message.timestamp.before.max.ms / after.max.ms (and difference.max.ms): a CreateTime
batch too far from the broker's clock is refused with nothing written; LogAppendTime
topics and broker-written markers are not checked."""

from __future__ import annotations

import pytest

from hotlog.errors import InvalidTimestampError
from hotlog.records import Record, build_batch

from .support import open_log

NOW = 1_800_000_000_000
HOUR = 3_600_000


def batch(timestamp: int) -> bytes:
    return build_batch([Record(b"k", b"v", (), timestamp)])


def test_timestamps_outside_the_bounds_are_refused_and_nothing_is_written(tmp_path):
    plog = open_log(tmp_path, {"message.timestamp.before.max.ms": HOUR, "message.timestamp.after.max.ms": 60_000})
    plog.append(batch(NOW - HOUR + 1), now_ms=NOW)
    plog.append(batch(NOW + 60_000), now_ms=NOW)
    for late_or_early in (NOW - HOUR - 1, NOW + 60_001):
        with pytest.raises(InvalidTimestampError):
            plog.append(batch(late_or_early), now_ms=NOW)
    assert plog.log_end_offset == 2


def test_difference_max_ms_bounds_both_sides_and_log_append_time_is_not_checked(tmp_path):
    plog = open_log(tmp_path / "a", {"message.timestamp.difference.max.ms": 1000})
    with pytest.raises(InvalidTimestampError):
        plog.append(batch(NOW - 1001), now_ms=NOW)
    with pytest.raises(InvalidTimestampError):
        plog.append(batch(NOW + 1001), now_ms=NOW)
    stamped = open_log(tmp_path / "b", {"message.timestamp.difference.max.ms": 1000,
                                        "message.timestamp.type": "LogAppendTime"})
    assert stamped.append(batch(0), now_ms=NOW).log_append_time == NOW
