"""Helpers of the log cleaner's tests: a compacted log read back as records, and the view
a model of its history says a cleaned log must give."""

from __future__ import annotations

from typing import NamedTuple

from hotlog.log import PartitionLog
from hotlog.records import decode_batches

from .support import read_all

COMPACT = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": 0.0, "segment.bytes": 700,
           "index.interval.bytes": 100, "remote.storage.enable": "false"}


class Entry(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None


def log_records(plog: PartitionLog) -> list[Entry]:
    """Every record of the log in order, checking that offsets only increase."""
    out = [Entry(r.offset, r.key, r.value) for batch in read_all(plog) for b in decode_batches(batch)
           for r in b.records]
    offsets = [e.offset for e in out]
    assert offsets == sorted(set(offsets)), "an offset repeats or goes back"
    return out


def compacted_view(history: list[Entry], first_dirty: int) -> list[Entry]:
    """The last record of each key below `first_dirty` (tombstones kept), then all after it."""
    last = {e.key: e.offset for e in history if e.offset < first_dirty}
    return [e for e in history if e.offset >= first_dirty or last[e.key] == e.offset]
