"""Cleaning a group of sealed segments into one new segment (Kafka's Cleaner.cleanSegments):
each batch is kept whole, rebuilt with the records the offset map says are the last of
their key, kept as a header alone (a producer's last batch, for its sequence and epoch),
or dropped. Offsets never change: a rebuilt batch keeps its base offset, last offset
delta, base timestamp and producer fields, and its records keep their bytes.

Work is per chunk of whole batches (`log.cleaner.io.buffer.size`): the decisions about
records are taken on numpy columns for the whole chunk, and a batch the map cannot touch
(past the map's last offset, or all of whose records are kept) is copied as it is.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .batch import (
    COMPRESSION_MASK,
    HEADER_SIZE,
    BatchHeader,
    BatchPosition,
    pack_batch,
    parse_header,
)
from .checked import whole_batches
from .cleaner_scans import BatchColumns, ScanCache
from .cleaner_txns import CleanedTxns
from .errors import CorruptSegmentError
from .markers import read_marker
from .offset_map import OffsetMap, key_hashes
from .producer_state import LastRecord
from .record_scan import scan_batches
from .records import NONE, compress, decode_batch, decompress
from .segment import LogSegment, PlacedBatch
from .swap import CLEANED_SUFFIX, discard_cleaned_segment
from .txn_index import AbortedTxn


class Chunk(NamedTuple):
    """Whole batches read at once: `data` starts at file position `position`; the batches'
    positions are into `data`."""

    position: int
    data: bytes
    batches: list[BatchPosition]


@dataclass
class CleanStats:
    bytes_read: int = 0
    bytes_written: int = 0
    records_read: int = 0
    records_kept: int = 0
    map_records: int = 0
    passes: int = 0


@dataclass
class CleanContext:
    """What the cleaning of one pass shares across its groups."""

    offset_map: OffsetMap
    now_ms: int
    delete_retention_ms: int
    producers: dict[int, LastRecord]  # as they were when the clean started
    chunk_bytes: int
    pace: Callable[[int], None]  # throttles and stops an aborted clean (raises)
    stats: CleanStats
    aborted_in: Callable[[int, int], list[AbortedTxn]]  # the log's aborted transactions in [start, end)
    index_interval_bytes: int
    index_max_bytes: int
    scans: ScanCache  # the map pass's scans, for this pass's clean


def read_chunks(segment: LogSegment, position: int, chunk_bytes: int, pace: Callable[[int], None]) -> Iterator[Chunk]:
    """The segment's batches from `position` on, `chunk_bytes` of whole batches at a time."""
    end = segment.size
    index = segment.offset_index
    with segment.pinned_log() as fd:
        while position < end:
            # Up to an indexed batch start where there is one: whole batches without a cut.
            boundary = index.position_floor(position + chunk_bytes)
            size = boundary - position if boundary > position and end - position > chunk_bytes else chunk_bytes
            pace(min(size, end - position))
            data = whole_batches(fd, position, end, size)
            if not data:
                raise CorruptSegmentError(f"{segment.log_path}: no whole batch at position {position}")
            batches = []
            at = 0
            while at < len(data):
                header = parse_header(data, at)
                batches.append(BatchPosition(at, header))
                at += header.size
            yield Chunk(position, data, batches)
            position += len(data)


def batch_payload(data: bytes | memoryview, at: int, header: BatchHeader) -> bytes | memoryview:
    """A data batch's records, decompressed (of a memoryview, uncompressed ones are not copied)."""
    stored = data[at + HEADER_SIZE : at + header.size]
    return stored if header.compression == NONE else decompress(header.compression, stored)


def _records_of(data: bytes, batches: Sequence[BatchPosition]) -> tuple[bytes, list[int], list[int]]:
    """The data batches' records: a buffer, and where each batch's records begin in it and
    their sizes. Uncompressed ones are read where they are in `data`, not copied."""
    if all(header.compression == NONE for _, header in batches):
        return data, [at + HEADER_SIZE for at, _ in batches], [header.size - HEADER_SIZE for _, header in batches]
    payloads = [batch_payload(data, at, header) for at, header in batches]
    sizes = [len(payload) for payload in payloads]
    return b"".join(payloads), [0, *itertools.accumulate(sizes[:-1])], sizes


def batch_columns(data: bytes, batches: Sequence[BatchPosition]) -> list[BatchColumns]:
    """The records' fields of data batches of `data`, scanned together (one chunk's numpy
    calls, not one batch's), as each batch's columns."""
    counts = [header.record_count for _, header in batches]
    fields = scan_batches(*_records_of(data, batches), counts)
    offsets = fields.offset_deltas + np.repeat([header.base_offset for _, header in batches], counts)
    chunk = (offsets, key_hashes(fields.keys), fields.has_key, fields.tombstones, fields.ends, fields.timestamp_deltas)
    edges = [0, *itertools.accumulate(counts)]
    return [BatchColumns(*(column[a:b] for column in chunk)) for a, b in zip(edges, edges[1:])]


def marker_commit(data: bytes, at: int, header: BatchHeader) -> bool | None:
    """Whether a control batch commits; None for one left empty by an earlier clean."""
    if not header.record_count:
        return None
    return read_marker(decode_batch(data[at : at + header.size])).commit


class Columns(NamedTuple):
    """The fields of many batches' records as numpy columns, batch after batch."""

    offsets: np.ndarray
    hashes: np.ndarray
    has_key: np.ndarray
    tombstones: np.ndarray
    starts: list[int]  # where each batch's records start in the columns


def columns(batches: Sequence[BatchColumns]) -> Columns:
    if not batches:
        empty = np.empty(0, dtype=np.int64)
        return Columns(empty, empty, empty.astype(bool), empty.astype(bool), [])
    starts = np.cumsum([0] + [len(b.offsets) for b in batches[:-1]]).tolist()
    return Columns(
        np.concatenate([b.offsets for b in batches]), np.concatenate([b.hashes for b in batches]),
        np.concatenate([b.has_key for b in batches]), np.concatenate([b.tombstones for b in batches]), starts,
    )


def kept_records(cols: Columns, offset_map: OffsetMap, retain_deletes: bool) -> np.ndarray:
    """Which records stay: those after the map's last offset, and those with a key whose
    last offset they are (a tombstone only while deletes are retained). Records without
    a key cannot be compacted and go, as in Kafka."""
    latest = cols.offsets >= offset_map.get(cols.hashes)
    if not retain_deletes:
        latest &= ~cols.tombstones
    return (cols.offsets > offset_map.latest_offset) | (cols.has_key & latest)


def empty_batch(header: BatchHeader) -> bytes:
    """The batch's header alone (Kafka's writeEmptyHeader): its offsets, producer, epoch and
    sequence, no records."""
    return pack_batch(
        header._replace(attributes=header.attributes & ~COMPRESSION_MASK, base_timestamp=header.max_timestamp,
                        record_count=0),
        b"",
    )


def rebuilt_batch(header: BatchHeader, payload: bytes | memoryview, cols: BatchColumns, keep: np.ndarray) -> bytes:
    """The batch with only the records `keep` marks; their bytes are copied as they are."""
    kept = np.flatnonzero(keep)
    begins = np.where(kept > 0, cols.ends[kept - 1], 0)
    records = b"".join(payload[b:e] for b, e in zip(begins.tolist(), cols.ends[kept].tolist()))
    max_timestamp = header.max_timestamp
    if not header.log_append_time:
        max_timestamp = header.base_timestamp + int(cols.timestamp_deltas[kept].max())
    stored = records if header.compression == NONE else compress(header.compression, records)
    return pack_batch(header._replace(max_timestamp=max_timestamp, record_count=len(kept)), stored)


def _is_last_of_producer(header: BatchHeader, producers: dict[int, LastRecord]) -> bool:
    """A batch that holds what idempotence needs of its producer (Kafka's three cases)."""
    last = producers.get(header.producer_id)
    if last is None:
        return False
    if last.last_data_offset is not None:
        return header.last_offset == last.last_data_offset
    return header.is_control and header.producer_epoch == last.epoch


class _Output:
    """The cleaned segment being written: batches gathered per chunk, appended at once."""

    def __init__(self, segment: LogSegment) -> None:
        self.segment = segment
        self.iov: list[bytes | memoryview] = []
        self.placed: list[PlacedBatch] = []
        self.size = 0

    def add(self, batch: bytes | memoryview, header: BatchHeader, max_timestamp: int) -> None:
        self.iov.append(batch)
        self.placed.append(PlacedBatch(header.last_offset, max_timestamp, len(batch)))
        self.size += len(batch)

    def write(self) -> int:
        written = self.size
        if written:
            self.segment.append(self.iov, written, self.placed)
        self.iov, self.placed, self.size = [], [], 0
        return written


def _mtime_ms(segment: LogSegment) -> int:
    return int(os.stat(segment.log_path).st_mtime * 1000)


def clean_group(group: Sequence[LogSegment], ctx: CleanContext, txns: CleanedTxns) -> LogSegment:
    """Write the cleaned form of `group` as `<base>.*.cleaned`, fsynced, its last modified
    time the group's newest. The caller swaps it in (swap.commit_swap) or discards it."""
    first = group[0]
    discard_cleaned_segment(first.directory, first.base_offset)  # left by a clean that stopped before its swap
    cleaned = LogSegment(first.directory, first.base_offset, index_interval_bytes=ctx.index_interval_bytes,
                         index_max_bytes=ctx.index_max_bytes, suffix=CLEANED_SUFFIX)
    try:
        out = _Output(cleaned)
        group_end = group[-1].next_offset
        modified = 0
        for i, segment in enumerate(group):
            upper = group[i + 1].base_offset if i + 1 < len(group) else segment.next_offset
            txns.add_aborted(ctx.aborted_in(segment.base_offset, upper))
            modified = max(modified, _mtime_ms(segment))
            retain_deletes = _mtime_ms(segment) > ctx.now_ms - ctx.delete_retention_ms
            for chunk in read_chunks(segment, 0, ctx.chunk_bytes, ctx.pace):
                _clean_chunk(chunk, ctx, txns, retain_deletes, group_end, out)
                ctx.stats.bytes_read += len(chunk.data)
                ctx.stats.bytes_written += out.write()
                ctx.pace(0)
        for entry in txns.take_index_entries():
            cleaned.txn_index.append(entry)
        cleaned.roll()
        cleaned.sync()
        os.utime(cleaned.log_path, ns=(modified * 1_000_000, modified * 1_000_000))
    except BaseException:
        cleaned.delete()
        raise
    return cleaned


def _clean_chunk(chunk: Chunk, ctx: CleanContext, txns: CleanedTxns, retain_deletes: bool, group_end: int,
                 out: _Output) -> None:
    data, offset_map = chunk.data, ctx.offset_map
    view = memoryview(data)
    plan: list[tuple[int, BatchHeader, bool, int]] = []  # (at, header, retain empty, what to do)
    scanned: list[BatchColumns | None] = []  # None: not kept from the map pass, scanned below
    unscanned: list[BatchPosition] = []
    whole, empty, drop, filter_ = 0, 1, 2, 3
    for at, header in chunk.batches:
        ctx.stats.records_read += header.record_count
        if header.is_control:
            can_discard = txns.on_marker(header, marker_commit(data, at, header))
            discard_records = can_discard and not retain_deletes
        else:
            discard_records = txns.on_data(header)
        retain_empty = (header.producer_id >= 0 and _is_last_of_producer(header, ctx.producers)) or (
            header.next_offset == group_end)  # a cleaned segment ends where its last source did
        if discard_records or (not header.record_count and not header.is_control):
            # A batch an earlier clean left header-only stays only while it is still needed:
            # else every clean would add one, and a run of them outgrows a fetch.
            plan.append((at, header, retain_empty, empty if retain_empty else drop))
        elif header.is_control or header.base_offset > offset_map.latest_offset:
            plan.append((at, header, retain_empty, whole))
        else:
            scanned.append(ctx.scans.take(header))
            if scanned[-1] is None:
                unscanned.append(BatchPosition(at, header))
            plan.append((at, header, retain_empty, filter_))
    fresh = iter(batch_columns(data, unscanned) if unscanned else [])
    batches = [b if b is not None else next(fresh) for b in scanned]
    keep = np.empty(0, dtype=bool)
    cols = None
    if batches:
        cols = columns(batches)
        keep = kept_records(cols, offset_map, retain_deletes)
    n = 0
    for at, header, retain_empty, action in plan:
        if action == filter_:
            assert cols is not None
            start = cols.starts[n]
            mask = keep[start : start + header.record_count]
            kept = int(np.count_nonzero(mask))
            if kept == header.record_count:
                action = whole
            elif kept:
                batch = rebuilt_batch(header, batch_payload(view, at, header), batches[n], mask)
                ctx.stats.records_kept += kept
                out.add(batch, header, parse_header(batch).max_timestamp)
                n += 1
                continue
            else:
                action = empty if retain_empty else drop
            n += 1
        if action == whole:
            ctx.stats.records_kept += header.record_count
            out.add(view[at : at + header.size], header, header.max_timestamp)
        elif action == empty:
            out.add(empty_batch(header), header, header.max_timestamp)

