"""Which leading segments of a log retention removes: whole segments, oldest first.

One rule for both tiers: local segments here, remote segments in tiering."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .segment import LogSegment


class RetainedSegment(Protocol):
    """What retention reads of a segment, local (LogSegment) or remote (RemoteSegment)."""

    @property
    def size_bytes(self) -> int: ...

    @property
    def max_timestamp(self) -> int: ...

    @property
    def next_offset(self) -> int: ...


def count_expired(
    oldest_first: Sequence[RetainedSegment], *, total_bytes: int, retention_ms: int, retention_bytes: int, now_ms: int
) -> int:
    """How many of the oldest segments that may go are past `retention_ms`, or must go to
    bring the log's `total_bytes` within `retention_bytes`; -1 disables either limit.

    A segment expires by time when its largest timestamp is older than `retention_ms`; by
    size while what would remain without it is still at least `retention_bytes` (Kafka's rule)."""
    by_time = 0
    if retention_ms >= 0:
        while by_time < len(oldest_first) and now_ms - oldest_first[by_time].max_timestamp > retention_ms:
            by_time += 1
    by_size = 0
    if retention_bytes >= 0:
        excess = total_bytes - retention_bytes
        while by_size < len(oldest_first) and excess >= oldest_first[by_size].size_bytes:
            excess -= oldest_first[by_size].size_bytes
            by_size += 1
    return max(by_time, by_size)


def count_below(oldest_first: Sequence[RetainedSegment], start: int) -> int:
    """How many of the oldest segments hold only offsets below `start` (records that
    DeleteRecords deleted)."""
    count = 0
    while count < len(oldest_first) and oldest_first[count].next_offset <= start:
        count += 1
    return count


def expired_segment_count(
    segments: Sequence[LogSegment], *, retention_ms: int, retention_bytes: int, now_ms: int
) -> int:
    """How many of the oldest segments of a local log are past `retention_ms` or beyond
    `retention_bytes`. Only sealed segments may go (the active one takes appends)."""
    sealed = 0
    for segment in segments:
        if not segment.sealed:
            break
        sealed += 1
    return count_expired(segments[:sealed], total_bytes=sum(s.size for s in segments), retention_ms=retention_ms,
                         retention_bytes=retention_bytes, now_ms=now_ms)
