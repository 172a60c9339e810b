"""A partition's log: its segments in offset order, appends, reads and durability."""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from .batch import (
    LOG_OVERHEAD,
    BatchHeader,
    BatchPosition,
    encode_base_offset,
    parse_header,
    set_log_append_time,
    validate_batches,
)
from .config import LogConfig
from .durable import sync_written
from .end_waiters import EndWaiters
from .errors import (
    CorruptRecordError,
    DiskWriteError,
    InvalidTimestampError,
    LogClosedError,
    LogStorageError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    RecordTooLargeError,
)
from .markers import TxnMarker, read_marker
from .open_files import DEFAULT_FILES, OpenFiles
from .producer_state import SNAPSHOT_SUFFIX, ProducerStateManager, snapshot_file_name
from .record_scan import refuse_null_keys
from .records import Record, build_batch, decode_batch, recompress_batches
from .segment import LOG_SUFFIX, MAX_SEGMENT_BYTES, FileSlice, LogSegment, PlacedBatch
from .swap import recover_swaps
from .sync_threads import SYNC_THREADS
from .txn_index import AbortedTxn

log = logging.getLogger(__name__)


class AppendInfo(NamedTuple):
    base_offset: int
    last_offset: int
    log_append_time: int  # -1 unless the topic stamps LogAppendTime
    batches: list[BatchHeader]  # as written, offsets assigned
    duplicate: bool = False  # a producer's retry: nothing written, offsets of the first write

    @property
    def record_count(self) -> int:
        return sum(b.record_count for b in self.batches)


class OffsetAndTimestamp(NamedTuple):
    """A record found by timestamp (ListOffsets)."""

    offset: int
    timestamp: int


def first_at_or_after(records: Iterable[Record], timestamp: int, min_offset: int) -> OffsetAndTimestamp | None:
    """The first of a batch's records at or past `min_offset` stamped at or after `timestamp`."""
    for record in records:
        if record.timestamp >= timestamp and record.offset >= min_offset:
            return OffsetAndTimestamp(record.offset, record.timestamp)
    return None


class PartitionLog:
    """Segments of one topic partition. Appends go to the page cache; `flush` and
    `flush_async` make them durable, the latter sharing one fsync among all waiters."""

    def __init__(self, directory: str, topic: str, partition: int, config: LogConfig,
                 files: OpenFiles | None = None) -> None:
        self.directory = directory
        self.files = DEFAULT_FILES if files is None else files  # the LRU of open segment files
        self.topic = topic
        self.partition = partition
        self.config = config  # the setter caches what the append path reads
        self.segments: list[LogSegment] = []
        self._bases: list[int] = []
        self.recovery_point = 0  # every offset below it is fsynced
        self.storage_error: OSError | None = None  # a failed fsync takes the log offline
        self.unflushed_messages = 0
        self.last_flush_ms = int(time.time() * 1000)
        self._flushing = False  # an fsync round runs in a worker thread
        self._durable_waiters = EndWaiters()  # for the recovery point
        self._listeners: list[Callable[[PartitionLog], None]] = []
        self.producers = ProducerStateManager()
        self.first_dirty_offset = 0  # the log cleaner's: where its next clean starts (compacted topics)
        self.cleaning = False  # a clean runs: retention leaves the log alone meanwhile
        self.closed = False

    @property
    def config(self) -> LogConfig:
        return self._config

    @config.setter
    def config(self, config: LogConfig) -> None:
        self._config = config
        self._append_limits = (
            config.max_message_bytes, config.segment_bytes, config.segment_ms,
            config.log_append_time, config.flush_messages, config.compact,
        )
        self._recompression = config.recompression
        self._timestamp_bounds = config.timestamp_bounds

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(
        cls, directory: str, topic: str, partition: int, config: LogConfig, *, clean: bool, recovery_point: int = 0,
        files: OpenFiles | None = None,
    ) -> PartitionLog:
        """Open a partition folder. After an unclean stop, segments from the one holding the
        recovery point on are validated batch by batch and cut at the first bad batch."""
        os.makedirs(directory, exist_ok=True)
        self = cls(directory, topic, partition, config, files)
        recover_swaps(directory, config.index_interval_bytes, config.segment_index_bytes)
        bases = sorted(int(name[: -len(LOG_SUFFIX)]) for name in os.listdir(directory) if name.endswith(LOG_SUFFIX))
        self._remove_stray_indexes(set(bases))
        truncated = False
        for i, base in enumerate(bases):
            segment = self._new_segment(base)
            if truncated:  # nothing after a cut is continuous with what came before
                segment.delete()
                continue
            below_checkpoint = i + 1 < len(bases) and bases[i + 1] <= recovery_point
            expected = self.segments[-1].next_offset if self.segments else None
            if (clean or below_checkpoint) and segment.load() and (expected is None or base >= expected):
                segment.flushed_size = segment.size
            else:
                cut = segment.recover(expected)
                segment.flushed_size = 0  # fsync it all before trusting it
                if cut:
                    log.warning("%s-%d: cut %d bytes of torn or corrupt data from segment %d",
                                topic, partition, cut, base)
                    truncated = True
            self._add_segment(segment)
        for segment in self.segments[:-1]:
            segment.roll()  # a rebuilt time index gets its final (max timestamp) entry back
            segment.sealed = segment.flushed_size == segment.size
        if not self.segments:
            self._add_segment(self._new_segment(0))
        active = self.active_segment
        if not active.is_empty:  # segment.ms counts from the first batch, not from this restart
            first_timestamp = next(active.headers_from(0)).header.max_timestamp
            if first_timestamp >= 0:
                active.rolling_base_ms = min(active.rolling_base_ms, first_timestamp)
        self.recovery_point = self.log_end_offset if clean else min(recovery_point, self.log_end_offset)
        if not clean:
            self.flush()
        self._load_producer_state()
        return self

    # -- producer state ----------------------------------------------------------------

    def _snapshot_offsets(self) -> list[int]:
        return sorted(
            int(name[: -len(SNAPSHOT_SUFFIX)]) for name in os.listdir(self.directory)
            if name.endswith(SNAPSHOT_SUFFIX) and name[: -len(SNAPSHOT_SUFFIX)].isdigit()
        )

    def snapshot_path(self, offset: int) -> str:
        return os.path.join(self.directory, snapshot_file_name(offset))

    def _load_producer_state(self) -> None:
        """The newest readable snapshot at or below the log end, then the batches after it."""
        end = self.log_end_offset
        start = self.log_start_offset
        self.producers = ProducerStateManager()
        for offset in reversed(self._snapshot_offsets()):
            if offset > end:  # state of offsets the log no longer holds
                os.unlink(self.snapshot_path(offset))
                continue
            try:
                with open(self.snapshot_path(offset), "rb") as f:
                    self.producers = ProducerStateManager.from_snapshot(f.read())
                start = max(offset, start)
                break
            except CorruptRecordError:  # empty or torn: a crash came before the flush that syncs it
                log.warning("%s-%d: deleting unreadable producer snapshot %d", self.topic, self.partition, offset)
                os.unlink(self.snapshot_path(offset))  # so tiering never uploads it as a sealed segment's
        self._replay_producer_state(start)

    def _replay_producer_state(self, start: int) -> None:
        i = max(0, bisect.bisect_right(self._bases, start) - 1)
        for segment in self.segments[i:]:
            found = segment.position_of(max(start, segment.base_offset))
            if found is None:
                continue
            for position, header in segment.headers_from(found.position):
                if header.producer_id < 0 or header.last_offset < start:
                    continue
                if header.is_control:
                    if not header.record_count:  # a marker the cleaner emptied: it ends nothing
                        continue
                    commit, coordinator_epoch = read_marker(decode_batch(segment.pread(position, header.size)))
                    self._complete_txn(segment, header, commit, coordinator_epoch)
                else:
                    self.producers.on_batch(header)

    def _complete_txn(self, segment: LogSegment, header: BatchHeader, commit: bool, coordinator_epoch: int) -> None:
        completed = self.producers.on_marker(header, commit, coordinator_epoch)
        if completed is not None and completed.aborted:
            txn = AbortedTxn(completed.producer_id, completed.first_offset, completed.last_offset,
                             self.last_stable_offset)
            # Replays after a crash meet markers again, with another last stable offset by then:
            # a second entry would make read_committed clients drop the producer's later batches.
            if not any(t[:3] == txn[:3] for t in segment.txn_index.entries):
                segment.txn_index.append(txn)

    def load_producer_snapshot(self, data: bytes) -> None:
        """Take producer state from a snapshot (a log restored from the object store)."""
        self.producers = ProducerStateManager.from_snapshot(data)
        self.producers_snapshot(self.log_end_offset)

    def producers_snapshot(self, offset: int, *, sync: bool = True) -> str:
        """Write the producer state as of `offset` to `<offset>.snapshot`; returns its path."""
        path = self.snapshot_path(offset)
        self.producers.write_snapshot(path, sync=sync)
        return path

    def expire_producers(self, now_ms: int, expiration_ms: int) -> list[int]:
        return self.producers.expire(now_ms, expiration_ms)

    @property
    def last_stable_offset(self) -> int:
        """Below it every transaction has ended; read_committed readers stop here."""
        first_open = self.producers.first_unstable_offset()
        return self.high_watermark if first_open is None else min(first_open, self.high_watermark)

    def aborted_transactions(self, start: int, end: int) -> list[AbortedTxn]:
        """Aborted transactions with records in [start, end), for read_committed fetches."""
        i = max(0, bisect.bisect_right(self._bases, start) - 1)
        found: list[AbortedTxn] = []
        for segment in self.segments[i:]:  # markers may lie in later segments than the data
            found.extend(segment.txn_index.overlapping(start, end))
        return found

    def _remove_stray_indexes(self, bases: set[int]) -> None:
        for name in os.listdir(self.directory):
            stem, dot, suffix = name.partition(".")
            stray_index = suffix in ("index", "timeindex", "txnindex") and stem.isdigit() and int(stem) not in bases
            if dot and (stray_index or name.endswith(".tmp")):  # .tmp: a snapshot write a crash cut short
                os.unlink(os.path.join(self.directory, name))

    def _new_segment(self, base_offset: int) -> LogSegment:
        return LogSegment(
            self.directory,
            base_offset,
            index_interval_bytes=self.config.index_interval_bytes,
            index_max_bytes=self.config.segment_index_bytes,
            files=self.files,
        )

    def _add_segment(self, segment: LogSegment) -> None:
        self.segments.append(segment)
        self._bases.append(segment.base_offset)

    # -- offsets -----------------------------------------------------------------------

    @property
    def recompresses(self) -> bool:
        """Whether appends may store batches other than as given (compression.type)."""
        return self._recompression is not None

    @property
    def active_segment(self) -> LogSegment:
        return self.segments[-1]

    @property
    def log_start_offset(self) -> int:
        return self.segments[0].base_offset

    @property
    def log_end_offset(self) -> int:
        return self.active_segment.next_offset

    @property
    def high_watermark(self) -> int:
        # One replica: everything appended is committed.
        return self.log_end_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def segment_for(self, offset: int) -> LogSegment | None:
        i = bisect.bisect_right(self._bases, offset) - 1
        return self.segments[i] if i >= 0 else None

    # -- appends -----------------------------------------------------------------------

    def append_restored(self, data: bytes | bytearray | memoryview) -> AppendInfo:
        """Append batches that already have their offsets and timestamps (from the bucket's
        write-ahead log; next, from a partition moving here): the first must start at the
        log end and each continue the one before; control batches are taken as they are."""
        expected = self.log_end_offset
        for _, header in validate_batches(data):
            if header.base_offset != expected:
                raise CorruptRecordError(f"{self.topic}-{self.partition}: a restored batch at offset "
                                         f"{header.base_offset} does not continue the log at {expected}")
            expected = header.next_offset
        return self.append(data, _markers=True, _stamp=False)

    def append(
        self, data: bytes | bytearray | memoryview, *, now_ms: int | None = None, _markers: bool = False,
        _stamp: bool = True,
    ) -> AppendInfo:
        """Validate and append the batches in `data` (a produce request's records for this
        partition). Offsets are assigned by rewriting each batch's baseOffset; nothing else
        changes unless the topic stamps LogAppendTime or recompresses (compression.type; `_stamp`
        False: batches as a log once wrote them, neither). Bad input raises and appends nothing;
        so does a disk that refuses the write (DiskWriteError: full, or failing). A write
        that cannot be undone takes the log offline (LogStorageError)."""
        if self.closed:
            raise LogClosedError(f"{self.topic}-{self.partition} is closed")
        if self.storage_error is not None:
            raise LogStorageError(f"{self.topic}-{self.partition} is offline: {self.storage_error}")
        batches = validate_batches(data)
        max_bytes, segment_bytes, segment_ms, log_append_time, flush_messages, compact = self._append_limits
        if compact:
            refuse_null_keys(data, batches, f"{self.topic}-{self.partition}")
        total = offsets = records = 0
        has_producer = False
        for _, header in batches:  # tuple indexes, not properties: once per batch on the hot path
            size = header[1] + LOG_OVERHEAD
            if size > max_bytes:  # above segment.bytes is fine: such a batch gets a segment of its own
                raise RecordTooLargeError(f"batch of {size} bytes exceeds max.message.bytes={max_bytes}")
            total += size
            offsets += header[6] + 1  # last_offset_delta
            records += header[12]  # record_count
            has_producer = has_producer or header[9] >= 0  # producer_id
        if total > MAX_SEGMENT_BYTES:  # one append goes into one segment
            raise RecordTooLargeError(f"an append of {total} bytes exceeds a segment's limit of {MAX_SEGMENT_BYTES}")
        if has_producer:
            for _, header in batches:
                if header.producer_id < 0:
                    continue
                if header.is_control and not _markers:
                    raise CorruptRecordError("control batches are written by the broker, not by clients")
                duplicate = self.producers.find_duplicate(header)
                if duplicate is not None:
                    if len(batches) > 1:
                        raise OutOfOrderSequenceError("a retried batch must come alone in its request")
                    return AppendInfo(duplicate.first_offset, duplicate.last_offset, -1, [], duplicate=True)
                self.producers.check(header)
        if self._timestamp_bounds is not None and _stamp:
            self._check_timestamps(batches, int(time.time() * 1000) if now_ms is None else now_ms)
        recompression = self._recompression
        if recompression is not None and _stamp:
            data, recompressed = recompress_batches(data, batches, *recompression)
            if recompressed is not batches:
                total = self._recompressed_size(recompressed, max_bytes)
                batches = recompressed
        now = int(time.time() * 1000) if now_ms is None else now_ms
        append_time = -1
        if log_append_time and _stamp:
            data = bytearray(data)
            for pos, _ in batches:
                set_log_append_time(data, pos, now)
            batches = [BatchPosition(pos, parse_header(data, pos)) for pos, _ in batches]  # new CRC and attributes
            append_time = now
        active = self.segments[-1]
        next_offset = active.next_offset
        if active.should_roll(total, next_offset + offsets - 1, segment_bytes, segment_ms, now):
            active = self.roll()
        view = memoryview(data)
        iov: list[bytes | memoryview] = []
        written: list[BatchHeader] = []
        placed: list[PlacedBatch] = []
        for pos, header in batches:
            size = header[1] + LOG_OVERHEAD
            iov.append(encode_base_offset(next_offset))
            iov.append(view[pos + 8 : pos + size])
            max_ts = append_time if append_time >= 0 else header.max_timestamp
            header = BatchHeader._make((next_offset, *header[1:8], max_ts, *header[9:]))
            written.append(header)
            next_offset += header.last_offset_delta + 1
            placed.append(PlacedBatch(next_offset - 1, max_ts, size))
        try:
            active.append(iov, total, placed)
            if has_producer:
                self._on_appended(active, written, view[batches[0].position :])
        except DiskWriteError:
            raise
        except OSError as exc:  # the file holds part of a batch, or a marker lacks its txn index entry
            raise self._go_offline(exc, "a failed write could not be undone") from exc
        self.unflushed_messages += records
        info = AppendInfo(written[0].base_offset, next_offset - 1, append_time, written)
        if self.unflushed_messages >= flush_messages:
            self.request_flush()
        for listener in self._listeners:
            listener(self)
        return info

    def _check_timestamps(self, batches: list[BatchPosition], now_ms: int) -> None:
        """message.timestamp.before.max.ms / after.max.ms (and the older difference.max.ms)
        against each batch's first and largest timestamps: the header's, no record decoded
        (a record earlier than its batch's first one is not checked)."""
        assert self._timestamp_bounds is not None
        before, after = self._timestamp_bounds
        for _, header in batches:
            if header.is_control:
                continue
            if header.base_timestamp < now_ms - before or header.max_timestamp > now_ms + after:
                raise InvalidTimestampError(
                    f"{self.topic}-{self.partition}: timestamps {header.base_timestamp}..{header.max_timestamp} "
                    f"lie outside [now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms]")

    @staticmethod
    def _recompressed_size(batches: list[BatchPosition], max_bytes: int) -> int:
        """Bytes of the recompressed batches; each must still fit max.message.bytes (as in Kafka),
        and all of them one segment."""
        for _, header in batches:
            if header.size > max_bytes:
                raise RecordTooLargeError(f"batch of {header.size} bytes after recompression exceeds "
                                          f"max.message.bytes={max_bytes}")
        total = sum(header.size for _, header in batches)
        if total > MAX_SEGMENT_BYTES:
            raise RecordTooLargeError(f"an append of {total} bytes after recompression exceeds a segment's "
                                      f"limit of {MAX_SEGMENT_BYTES}")
        return total

    def _on_appended(self, segment: LogSegment, written: list[BatchHeader], first: memoryview) -> None:
        """Producer state after the batches are in `segment` (`first`: a marker's bytes)."""
        for header in written:
            if header.producer_id < 0:
                continue
            if header.is_control:
                commit, coordinator_epoch = read_marker(decode_batch(first[: header.size]))
                self._complete_txn(segment, header, commit, coordinator_epoch)
            else:
                self.producers.on_batch(header)

    def append_marker(self, producer_id: int, producer_epoch: int, *, commit: bool, coordinator_epoch: int,
                      now_ms: int | None = None) -> AppendInfo:
        """Write a transaction's COMMIT or ABORT marker (a control batch) for `producer_id`."""
        marker = build_batch(
            [TxnMarker(commit, coordinator_epoch).record()],
            now_ms=now_ms, producer_id=producer_id, producer_epoch=producer_epoch,
            transactional=True, control=True,
        )
        return self.append(marker, now_ms=now_ms, _markers=True)

    def seal_active_segment(self) -> None:
        """Roll a non-empty active segment and start the flush that seals it, so tiering may
        upload what it holds without waiting for segment.bytes or segment.ms."""
        if not self.active_segment.is_empty:
            self.roll()
            self.request_flush()

    def roll(self) -> LogSegment:
        """Close the active segment to appends and start a new one at the log end. The
        producer state as of the new base offset is snapshotted (`<base>.snapshot`); the
        flush that seals the rolled segment fsyncs it, off the event loop. On a disk that
        refuses a step, DiskWriteError, and the log is as it was: the old segment still takes
        appends, and the next append tries the roll again."""
        active = self.active_segment
        if active.is_empty:
            return active
        try:
            self.producers_snapshot(self.log_end_offset, sync=False)
            segment = self._new_segment(self.log_end_offset)
            active.roll()  # last: once rolled, the segment takes no more appends
        except OSError as exc:
            raise DiskWriteError(f"{self.topic}-{self.partition}: rolling segment {active.base_offset}: {exc}") from exc
        self._add_segment(segment)
        return segment

    def add_listener(self, listener: Callable[[PartitionLog], None]) -> None:
        """Called after every append (long-polling readers wake on it)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[PartitionLog], None]) -> None:
        self._listeners.remove(listener)

    # -- durability --------------------------------------------------------------------

    def _dirty_segments(self) -> list[tuple[LogSegment, int, bool]]:
        dirty = []
        for segment in self.segments:
            if segment.flushed_size != segment.size or (segment.rolled and not segment.sealed):
                segment.write_pending_indexes()
                dirty.append((segment, segment.size, segment.rolled))
        return dirty

    def _flushed(self, target: int, dirty: Iterable[tuple[LogSegment, int, bool]], messages: int) -> None:
        for segment, size, rolled in dirty:
            segment.flushed_size = max(segment.flushed_size, size)
            if rolled and segment.flushed_size == segment.size:
                segment.sealed = True
        self.recovery_point = max(self.recovery_point, target)
        self.unflushed_messages = max(0, self.unflushed_messages - messages)
        self.last_flush_ms = int(time.time() * 1000)

    def flush(self) -> None:
        """fsync everything appended so far, on the calling thread."""
        target, messages = self.log_end_offset, self.unflushed_messages
        dirty = self._dirty_segments()
        self._sync_or_go_offline(dirty)
        self._flushed(target, dirty, messages)

    async def flush_async(self, offset: int | None = None) -> None:
        """Wait until every offset below `offset` (default: the log end) is fsynced."""
        waiter = self.durable_waiter(offset)
        if waiter is not None:
            await waiter

    def durable_waiter(self, end: int | None = None) -> asyncio.Future[None] | None:
        """A future done once every offset below `end` (default: the log end) is fsynced,
        or None if they already are. Event loop only.

        One fsync round runs at a time, in a worker thread (sync_threads.py); whoever
        arrives while it runs waits for the next, which covers all of them (group commit).
        A round is a hand-off to the thread and a callback back, with no task: a produce
        request waits on its partitions' futures at once."""
        target = self.log_end_offset if end is None else end
        if self.recovery_point >= target:
            return None
        future = self._durable_waiters.add(target)
        if not self._flushing:
            self._start_flush(asyncio.get_running_loop())
        return future

    def _start_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        target, messages = self.log_end_offset, self.unflushed_messages
        try:
            dirty = self._dirty_segments()
        except OSError as exc:  # an index write failed; nothing was handed to the thread
            self._fail_waiters(exc)
            return
        self._flushing = True
        SYNC_THREADS.run(loop, functools.partial(self._sync_or_go_offline, dirty),
                         functools.partial(self._flush_done, loop, target, dirty, messages))

    def _flush_done(self, loop: asyncio.AbstractEventLoop, target: int, dirty: list[tuple[LogSegment, int, bool]],
                    messages: int, error: BaseException | None) -> None:
        self._flushing = False
        if error is not None:
            self._fail_waiters(error)
            return
        self._flushed(target, dirty, messages)
        self._durable_waiters.release(self.recovery_point)
        # Appends made while this round ran: waited for, or past flush.messages again.
        if self._durable_waiters or (self.unflushed_messages >= self.config.flush_messages and not self.closed):
            self._start_flush(loop)

    def _fail_waiters(self, exc: BaseException) -> None:
        """A round failed: its waiters' appends are not durable (the log went offline, or an
        index write failed). With no waiter it was a background flush: logged."""
        if not self._durable_waiters.fail(exc):
            log.error("%s-%d: background flush failed", self.topic, self.partition, exc_info=exc)

    def _sync_or_go_offline(self, dirty: list[tuple[LogSegment, int, bool]]) -> None:
        """fsync the segments, and the producer snapshot each rolled one ended with (sealed
        segments are uploaded with it). After a failed fsync the kernel may have dropped the dirty
        pages, so a later fsync that succeeds proves nothing: the log goes offline (as a
        Kafka log directory does) and every flush from then on fails."""
        if self.storage_error is not None:
            raise LogStorageError(f"{self.topic}-{self.partition} is offline: {self.storage_error}")
        try:
            for segment, _, rolled in dirty:
                segment.sync()
                if rolled:
                    sync_written(self.snapshot_path(segment.next_offset))
        except OSError as exc:
            raise self._go_offline(exc, "fsync failed") from exc

    def _go_offline(self, exc: OSError, what: str) -> LogStorageError:
        """Take the log offline (as a Kafka log directory goes): no more writes until restart."""
        self.storage_error = exc
        log.error("%s-%d: %s, the log is offline until restart: %s", self.topic, self.partition, what, exc)
        return LogStorageError(f"{self.topic}-{self.partition}: {what}: {exc}")

    def request_flush(self) -> None:
        """Start a background flush if an event loop runs here; otherwise flush now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if not self._flushing:
            self._start_flush(loop)

    # -- reads -------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, *, max_offset: int | None = None, min_one: bool = True) -> FileSlice | None:
        """Whole batches from the one holding `offset`, within one segment; None at the end.
        Raises OffsetOutOfRangeError below the log start or past the log end."""
        if self.closed:
            raise LogClosedError(f"{self.topic}-{self.partition} is closed")
        end = self.log_end_offset
        if offset < self.log_start_offset or offset > end:
            raise OffsetOutOfRangeError(offset, self.log_start_offset, end)
        limit = self.high_watermark if max_offset is None else min(max_offset, self.high_watermark)
        i = bisect.bisect_right(self._bases, offset) - 1
        while offset < limit and i < len(self.segments):
            segment = self.segments[i]
            found = segment.read(offset, max_bytes, max_offset=limit, min_one=min_one)
            if found is not None:
                return found
            i += 1  # offset past this segment (an empty active one, or a gap)
            if i < len(self.segments):
                offset = max(offset, self.segments[i].base_offset)
        return None

    def offset_for_timestamp(self, timestamp: int, min_offset: int = 0) -> OffsetAndTimestamp | None:
        """The first record at or past `min_offset` whose timestamp is >= `timestamp`, or
        None. `min_offset` is where DeleteRecords left the log: as Kafka, the search never
        names a deleted record."""
        for segment in self.segments:
            if segment.next_offset <= min_offset:
                continue
            found = segment.batch_at_or_after_timestamp(timestamp, min_offset)
            if found is None:
                continue
            position, header = found
            batch = decode_batch(segment.pread(position, header.size))
            return first_at_or_after(batch.records, timestamp, min_offset) or \
                OffsetAndTimestamp(header.last_offset, header.max_timestamp)
        return None

    # -- removal -----------------------------------------------------------------------

    def replace_segments(self, old: list[LogSegment], new: LogSegment) -> None:
        """Put `new` (the log cleaner's, already in place on disk) where the consecutive
        segments `old` were. Readers holding an old segment's file finish on it."""
        i = next((i for i, s in enumerate(self.segments) if s is old[0]), -1)
        if i < 0 or self.segments[i : i + len(old)] != old:
            raise LogStorageError(f"{self.topic}-{self.partition}: cleaned segments replace ones no longer in the log")
        self.segments[i : i + len(old)] = [new]
        self._bases[i : i + len(old)] = [new.base_offset]
        for segment in old:
            segment.deleted = True  # no upload or scrub starts on it
            segment.close()

    def delete_oldest_segments(self, count: int) -> list[LogSegment]:
        """Delete the `count` oldest segments (never the active one); the log start moves up."""
        count = min(count, len(self.segments) - 1)
        removed = self.segments[:count]
        for segment in removed:
            segment.delete()
        del self.segments[:count]
        del self._bases[:count]
        for offset in self._snapshot_offsets():
            if offset < self.log_start_offset:
                os.unlink(self.snapshot_path(offset))
        return removed

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Drop every segment and continue at `offset` (a log restored from the object store)."""
        for segment in self.segments:
            segment.delete()
        for snapshot in self._snapshot_offsets():
            os.unlink(self.snapshot_path(snapshot))
        self.segments.clear()
        self._bases.clear()
        self.producers = ProducerStateManager()
        self._add_segment(self._new_segment(offset))
        self.recovery_point = offset

    def close(self) -> None:
        """Snapshot producer state at the log end (a clean restart replays nothing) and close."""
        if not self.closed and self.storage_error is None and os.path.isdir(self.directory):
            try:
                self.producers_snapshot(self.log_end_offset)
            except OSError as exc:  # a full disk: the next start replays the log from an older one
                log.warning("%s-%d: no producer snapshot at close: %s", self.topic, self.partition, exc)
        self.closed = True
        for segment in self.segments:  # a reader's pinned descriptor stays open until it lets go
            segment.close()
