"""The log cleaner: compaction of a partition log whose cleanup.policy includes `compact`
(Kafka's LogCleaner, Cleaner and LogCleanerManager, for the local tier).

A clean looks at the dirty section, from the first dirty offset (where the last clean
stopped) to the first uncleanable offset: the active segment, the last stable offset
and segments younger than min.compaction.lag.ms are never cleaned, and only sealed
(fsynced) segments are. It runs when the dirty share of the log passes
min.cleanable.dirty.ratio, or when a dirty segment is older than max.compaction.lag.ms.

Each pass builds the offset map (key -> last offset) over as much of the dirty section
as `log.cleaner.dedupe.buffer.size` holds, then rewrites every segment up to there,
grouped so that the log does not become many small files, each group swapped in as one
(hotlog/swap.py). A log with more keys than the map holds takes several passes. The
map's scans of its batches are kept for their rewrite while they fit in the buffer
beside the map (hotlog/cleaner_scans.py), so each dirty record is scanned once.

Everything here blocks on the disk: run it in a worker thread. The caller takes what
must be read on the event loop (the producers' state, the last stable offset) and
passes a `replace` that swaps the segments in memory there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .batch import BatchPosition
from .clean_segment import CleanContext, CleanStats, batch_columns, clean_group, columns, marker_commit, read_chunks
from .cleaner_scans import ScanCache
from .cleaner_txns import CleanedTxns
from .config import LogConfig
from .log import PartitionLog
from .offset_map import OffsetMap
from .open_files import OpenFiles
from .producer_state import LastRecord
from .segment import LogSegment
from .swap import commit_swap
from .txn_index import AbortedTxn

log = logging.getLogger(__name__)

INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class CleanerConfig:
    """The broker's log.cleaner.* properties (Kafka's defaults)."""

    enable: bool = True  # log.cleaner.enable
    threads: int = 1  # log.cleaner.threads: one background task cleans one log at a time
    dedupe_buffer_size: int = 128 * 1024 * 1024  # log.cleaner.dedupe.buffer.size
    io_buffer_size: int = 512 * 1024  # log.cleaner.io.buffer.size: bytes read at once
    io_buffer_load_factor: float = 0.9  # log.cleaner.io.buffer.load.factor: how full the map may get
    backoff_ms: int = 15_000  # log.cleaner.backoff.ms: the wait when no log needs cleaning
    io_max_bytes_per_second: float = float("inf")  # log.cleaner.io.max.bytes.per.second: read and written


class CleaningAbortedError(Exception):
    """The log closed (or the broker stops) while it was being cleaned; nothing was swapped
    in that had not been committed."""


class CleanRange(NamedTuple):
    first_dirty: int
    first_uncleanable: int  # a segment's base offset: cleaning takes whole segments
    clean_bytes: int
    cleanable_bytes: int
    overdue: bool  # a dirty segment passed max.compaction.lag.ms

    @property
    def dirty_ratio(self) -> float:
        total = self.clean_bytes + self.cleanable_bytes
        return self.cleanable_bytes / total if total else 0.0


class CleanResult(NamedTuple):
    first_dirty_offset: int  # where the next clean starts
    stats: CleanStats


class Pace:
    """Keeps a clean within log.cleaner.io.max.bytes.per.second and stops it when asked."""

    def __init__(self, bytes_per_second: float, stopped: Callable[[], bool]) -> None:
        self.rate = bytes_per_second
        self.stopped = stopped
        self.started = time.monotonic()
        self.bytes = 0

    def __call__(self, size: int) -> None:
        if self.stopped():
            raise CleaningAbortedError("cleaning stopped")
        if self.rate == float("inf") or not size:
            return
        self.bytes += size
        ahead = self.bytes / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            time.sleep(ahead)


def _first_batch_timestamp(segment: LogSegment) -> int:
    for _, header in segment.headers_from(0):
        return header.max_timestamp
    return -1


def cleanable_range(plog: PartitionLog, segments: Sequence[LogSegment], last_stable_offset: int,
                    now_ms: int) -> CleanRange:
    """Kafka's LogCleanerManager.cleanableOffsets and calculateCleanableBytes."""
    config = plog.config
    first_dirty = plog.first_dirty_offset
    if not segments[0].base_offset <= first_dirty <= segments[-1].next_offset:
        first_dirty = segments[0].base_offset  # retention or a restore moved the log
    uncleanable = min(last_stable_offset, segments[-1].base_offset)
    dirty = [s for s in segments[:-1] if s.next_offset > first_dirty]
    for segment in dirty:
        too_young = config.min_compaction_lag_ms > 0 and segment.max_timestamp > now_ms - config.min_compaction_lag_ms
        if not segment.sealed or too_young:
            uncleanable = min(uncleanable, segment.base_offset)
            break
    first_uncleanable = next(s.base_offset for s in segments if s.next_offset > uncleanable or s is segments[-1])
    first_uncleanable = max(first_uncleanable, segments[0].base_offset)
    clean_bytes = sum(s.size for s in segments if s.base_offset < first_dirty and s.next_offset <= first_dirty)
    cleanable = [s for s in segments if s.next_offset > first_dirty and s.base_offset < first_uncleanable]
    overdue = False
    if config.max_compaction_lag_ms < now_ms:
        clean_until = now_ms - config.max_compaction_lag_ms
        firsts = [t for t in map(_first_batch_timestamp, dirty) if t > 0]
        overdue = bool(firsts) and min(firsts) < clean_until
    return CleanRange(first_dirty, max(first_dirty, first_uncleanable), clean_bytes,
                      sum(s.size for s in cleanable), overdue)


def group_by_size(segments: Sequence[LogSegment], max_size: int, max_index_size: int,
                  first_uncleanable: int) -> list[list[LogSegment]]:
    """Consecutive segments whose logs and indexes together fit one segment (Kafka's
    groupSegmentsBySize), so a cleaned log does not stay as many small files."""
    groups: list[list[LogSegment]] = []
    i = 0
    while i < len(segments):
        group = [segments[i]]
        size, index_size, time_size = segments[i].size, segments[i].offset_index.size_bytes, \
            segments[i].time_index.size_bytes
        i += 1
        while i < len(segments):
            nxt = segments[i]
            last_offset = segments[i + 1].base_offset - 1 if i + 1 < len(segments) else first_uncleanable - 1
            if (size + nxt.size > max_size or index_size + nxt.offset_index.size_bytes > max_index_size
                    or time_size + nxt.time_index.size_bytes > max_index_size
                    or last_offset - group[0].base_offset > INT32_MAX):
                break
            group.append(nxt)
            size += nxt.size
            index_size += nxt.offset_index.size_bytes
            time_size += nxt.time_index.size_bytes
            i += 1
        groups.append(group)
    return groups


MAP_BATCH_RECORDS = 16_384  # keys put into the offset map at once: numpy's cost per call, paid less often


class _PendingKeys:
    """Keys of the map pass gathered over several read chunks, in offset order."""

    def __init__(self) -> None:
        self.hashes: list[np.ndarray] = []
        self.offsets: list[np.ndarray] = []
        self.records = 0

    def add(self, hashes: np.ndarray, offsets: np.ndarray) -> None:
        self.hashes.append(hashes)
        self.offsets.append(offsets)
        self.records += len(hashes)

    def put_into(self, offset_map: OffsetMap, ctx: CleanContext) -> int | None:
        """Put the keys in the map; when it fills, the last offset it covers (the one before
        the first key that did not fit), else None."""
        if not self.records:
            return None
        hashes, offsets = np.concatenate(self.hashes), np.concatenate(self.offsets)
        self.hashes, self.offsets, self.records = [], [], 0
        ctx.stats.map_records += len(hashes)
        room = offset_map.room(hashes)
        offset_map.put(hashes[:room], offsets[:room])
        ctx.scans.fit(offset_map.memory_bytes)
        if room < len(hashes):
            offset_map.latest_offset = int(offsets[room]) - 1
            return offset_map.latest_offset
        return None


@dataclass
class LogCleaner:
    """Cleans one log at a time with one offset map, allocated once (as each of Kafka's
    cleaner threads has its own)."""

    config: CleanerConfig = field(default_factory=CleanerConfig)
    stop: threading.Event = field(default_factory=threading.Event)  # set: running cleans abort

    _offset_map: OffsetMap | None = None

    @property
    def offset_map(self) -> OffsetMap:
        """Allocated at the first clean: a broker without compacted topics holds none."""
        if self._offset_map is None:
            self._offset_map = OffsetMap(self.config.dedupe_buffer_size, self.config.io_buffer_load_factor)
        return self._offset_map

    def due(self, plog: PartitionLog, now_ms: int, last_stable_offset: int) -> CleanRange | None:
        """The dirty section of a compacted log if it should be cleaned now, else None."""
        if not plog.config.compact or plog.closed or plog.storage_error is not None:
            return None
        found = cleanable_range(plog, list(plog.segments), last_stable_offset, now_ms)
        if found.cleanable_bytes and (found.overdue or found.dirty_ratio > plog.config.min_cleanable_ratio):
            return found
        return None

    def clean(self, plog: PartitionLog, now_ms: int | None = None, *, producers: dict[int, LastRecord] | None = None,
              last_stable_offset: int | None = None,
              replace: Callable[[list[LogSegment], LogSegment], None] | None = None) -> CleanResult | None:
        """Clean `plog` if it is due; None if it is not. Called from the event loop's
        thread's point of view, `producers` and `last_stable_offset` are taken there, and
        `replace` swaps segments there; by default (no event loop) all is done here."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        lso = plog.last_stable_offset if last_stable_offset is None else last_stable_offset
        found = self.due(plog, now, lso)
        if found is None:
            return None
        producers = plog.producers.last_records() if producers is None else producers
        ctx = self.context(plog.config, now, producers, plog.aborted_transactions, lambda: plog.closed)
        stats = ctx.stats
        first_dirty, end = found.first_dirty, found.first_uncleanable
        while first_dirty < end:
            covered = self.map_dirty(list(plog.segments), first_dirty, end, ctx)
            self._clean_up_to(plog, covered + 1, ctx, replace or plog.replace_segments)
            first_dirty = covered + 1
            plog.first_dirty_offset = first_dirty
            stats.passes += 1
        log.info("%s-%d: cleaned to offset %d in %d passes: %d of %d records kept, %d of %d bytes",
                 plog.topic, plog.partition, first_dirty, stats.passes, stats.records_kept, stats.records_read,
                 stats.bytes_written, stats.bytes_read)
        return CleanResult(first_dirty, stats)

    def context(self, config: LogConfig, now_ms: int, producers: dict[int, LastRecord],
                aborted_in: Callable[[int, int], list[AbortedTxn]], closed: Callable[[], bool]) -> CleanContext:
        """What the passes of one clean share; `closed` says when the log went away."""
        pace = Pace(self.config.io_max_bytes_per_second, lambda: self.stop.is_set() or closed())
        return CleanContext(
            self.offset_map, now_ms, config.delete_retention_ms, producers, self.config.io_buffer_size, pace,
            CleanStats(), aborted_in, config.index_interval_bytes, config.segment_index_bytes,
            ScanCache(self.config.dedupe_buffer_size),
        )

    def map_dirty(self, segments: list[LogSegment], start: int, end: int, ctx: CleanContext) -> int:
        """Map the keys of [start, end) until the map is full; returns the last offset mapped."""
        offset_map = ctx.offset_map
        offset_map.clear()
        ctx.scans.clear()
        txns = CleanedTxns()
        txns.add_aborted(ctx.aborted_in(start, end))
        dirty = [s for s in segments if s.base_offset < end and s.next_offset > start]
        latest = start - 1
        pending = _PendingKeys()
        for i, segment in enumerate(dirty):
            found = segment.position_of(max(start, segment.base_offset))
            for chunk in read_chunks(segment, 0 if found is None else found.position, ctx.chunk_bytes, ctx.pace):
                wanted_batches = []
                for at, header in chunk.batches:
                    if header.is_control:
                        txns.on_marker(header, marker_commit(chunk.data, at, header))
                    elif not txns.on_data(header) and header.record_count and header.last_offset >= start:
                        wanted_batches.append(BatchPosition(at, header))
                scanned = batch_columns(chunk.data, wanted_batches)
                for (_, header), batch in zip(wanted_batches, scanned):
                    ctx.scans.add(header, batch, offset_map.memory_bytes)
                cols = columns(scanned)
                wanted = cols.has_key & (cols.offsets >= start) & (cols.offsets < end)
                pending.add(cols.hashes[wanted], cols.offsets[wanted])
                if pending.records >= MAP_BATCH_RECORDS and (full := pending.put_into(offset_map, ctx)) is not None:
                    return full
                latest = max(latest, min(end - 1, chunk.batches[-1].header.last_offset))
            following = dirty[i + 1].base_offset if i + 1 < len(dirty) else end
            latest = max(latest, following - 1)  # past a gap at the end of the segment
        if (full := pending.put_into(offset_map, ctx)) is not None:
            return full
        offset_map.latest_offset = latest
        return latest

    def _clean_up_to(self, plog: PartitionLog, end: int, ctx: CleanContext,
                     replace: Callable[[list[LogSegment], LogSegment], None]) -> None:
        """Rewrite every segment holding offsets below `end`, group by group, oldest first
        (so a crash between groups never leaves a tombstone removed before what it deletes)."""
        segments = [s for s in list(plog.segments)[:-1] if s.base_offset < end]
        config = plog.config
        txns = CleanedTxns()
        for group in group_by_size(segments, config.segment_bytes, config.segment_index_bytes, end):
            cleaned = clean_group(group, ctx, txns)
            self._swap_in(plog, group, cleaned, ctx, replace)

    def _swap_in(self, plog: PartitionLog, group: list[LogSegment], cleaned: LogSegment, ctx: CleanContext,
                 replace: Callable[[list[LogSegment], LogSegment], None]) -> None:
        swap_in(plog.directory, plog.files, group, cleaned, ctx, replace)


def swap_in(directory: str, files: OpenFiles | None, group: list[LogSegment], cleaned: LogSegment,
            ctx: CleanContext, replace: Callable[[list[LogSegment], LogSegment], None]) -> LogSegment:
    """Commit `cleaned` (`.cleaned` files in `directory`, fsynced) in the place of `group`
    on disk, then `replace` them in memory with the segment it returns."""
    with contextlib.ExitStack() as pins:
        try:
            for segment in group:  # readers of the old segments go on reading their bytes
                pins.enter_context(segment.pinned_log())
            ctx.pace(0)  # last chance to stop: from here the swap is committed
        except BaseException:
            cleaned.delete()
            raise
        commit_swap(cleaned, group)
        cleaned.close()
        swapped = LogSegment(directory, cleaned.base_offset, index_interval_bytes=ctx.index_interval_bytes,
                             index_max_bytes=ctx.index_max_bytes, files=files)
        if not swapped.load():
            swapped.recover()
        swapped.roll()
        swapped.sealed = True
        replace(group, swapped)
        return swapped


def replace_on_loop(loop: asyncio.AbstractEventLoop,
                    replace: Callable[[list[LogSegment], LogSegment], None]) -> Callable[[list[LogSegment], LogSegment], None]:
    """`replace` made callable from a worker thread: it runs on `loop`, the worker waits."""
    def call(old: list[LogSegment], new: LogSegment) -> None:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def swap() -> None:
            try:
                replace(old, new)
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(swap)
        done.result()

    return call
