"""Which leading segments of a log retention removes: whole segments, oldest first."""

from __future__ import annotations

from typing import Sequence

from .segment import LogSegment


def expired_segment_count(
    segments: Sequence[LogSegment], *, retention_ms: int, retention_bytes: int, now_ms: int
) -> int:
    """How many of the oldest segments are past `retention_ms` or beyond `retention_bytes`.

    Only sealed segments count (the active one takes appends); -1 disables either limit.
    A segment expires by time when its largest timestamp is older than `retention_ms`."""
    candidates = 0
    for segment in segments:
        if not segment.sealed:
            break
        candidates += 1
    by_time = 0
    if retention_ms >= 0:
        while by_time < candidates and now_ms - segments[by_time].max_timestamp > retention_ms:
            by_time += 1
    by_size = 0
    if retention_bytes >= 0:
        excess = sum(s.size for s in segments) - retention_bytes
        while by_size < candidates and excess - segments[by_size].size >= 0:
            excess -= segments[by_size].size
            by_size += 1
    return max(by_time, by_size)
