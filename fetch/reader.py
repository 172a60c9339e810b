"""One read path for every front end (Kafka protocol, gRPC, CLI).

An offset still on local disk is served from the local log; an older one from its
segment in the object store. Callers never learn which tier held an offset."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import NamedTuple

from hotlog.batch import HEADER_SIZE
from hotlog.errors import CorruptSegmentError, OffsetOutOfRangeError
from hotlog.log import OffsetAndTimestamp, PartitionLog
from hotlog.manager import LogManager
from hotlog.segment import FileSlice
from hotlog.txn_index import AbortedTxn
from tiering.manager import TieringManager
from tiering.metadata import RemoteSegment
from tiering.partition_state import RemotePartition
from tiering.store import NotFoundError

from . import metrics
from .index_cache import RemoteDataError
from .remote import RemoteReader


@dataclass(frozen=True)
class ReadResult:
    records: bytes  # whole record batches, back to back; empty at the end of the log
    high_watermark: int
    log_start_offset: int
    last_stable_offset: int
    aborted: tuple[AbortedTxn, ...] = ()  # with read_committed: aborted transactions in range
    # Asked for `in_file`: the batches where they lie in a local segment, checked, for a
    # socket to take straight from the page cache (sendfile); `records` is empty then.
    file: FileSlice | None = None

    @property
    def size(self) -> int:
        return len(self.records) if self.file is None else self.file.size


class _Ask(NamedTuple):
    """What one read may return: bytes, offsets, and whether one batch past `max_bytes`."""

    max_bytes: int
    max_offset: int | None
    min_one: bool


class Reader:
    def __init__(self, logs: LogManager, tiering: TieringManager | None = None,
                 remote: RemoteReader | None = None) -> None:
        self.logs = logs
        self.tiering = tiering
        self.remote = remote

    def _log(self, topic: str, partition: int) -> PartitionLog:
        return self.logs.log(topic, partition)

    def _remote_state(self, topic: str, partition: int) -> RemotePartition | None:
        if self.tiering is None or self.remote is None:
            return None
        state = self.tiering.remote_partition(topic, partition)
        return state if state is not None and state.segments else None

    def log_start_offset(self, topic: str, partition: int) -> int:
        """The earliest readable offset: the remote log start once segments are tiered,
        unless DeleteRecords deleted records past it."""
        local = self._log(topic, partition).log_start_offset
        state = self._remote_state(topic, partition)
        stored = local if state is None else min(local, state.log_start_offset)
        return max(stored, self.logs.records_start_offset(topic, partition))

    def local_log_start_offset(self, topic: str, partition: int) -> int:
        return self._log(topic, partition).log_start_offset

    def last_tiered_offset(self, topic: str, partition: int) -> int:
        """The highest offset in the object store, or -1 (KIP-1005)."""
        self._log(topic, partition)
        state = self._remote_state(topic, partition)
        return -1 if state is None else state.end_offset - 1

    def high_watermark(self, topic: str, partition: int) -> int:
        return self._log(topic, partition).high_watermark

    def last_stable_offset(self, topic: str, partition: int) -> int:
        return self._log(topic, partition).last_stable_offset

    async def read(self, topic: str, partition: int, offset: int, max_bytes: int,
                   *, max_offset: int | None = None, read_committed: bool = False, min_one: bool = True,
                   in_file: bool = False) -> ReadResult:
        """Whole batches from `offset` on, at least one even past `max_bytes` (KIP-74)
        unless not `min_one` (a fetch's later partitions: only what fits). `in_file`: local
        batches that passed their checks come as a FileSlice, unread (ReadResult.file).
        Raises OffsetOutOfRangeError outside [log start, log end]; RemoteDataError (retriable)
        when the object store returned data that failed its checks; CorruptSegmentError when
        a local batch did and the bucket has no copy of it."""
        plog = self._log(topic, partition)
        if offset < self.logs.records_start_offset(topic, partition):  # deleted (DeleteRecords)
            raise OffsetOutOfRangeError(offset, self.log_start_offset(topic, partition), plog.log_end_offset)
        lso = plog.last_stable_offset
        if offset == plog.log_end_offset:  # a consumer caught up: nothing to read, the common case
            return ReadResult(b"", plog.high_watermark, self.log_start_offset(topic, partition), lso)
        if read_committed:
            max_offset = lso if max_offset is None else min(max_offset, lso)
        ask = _Ask(max_bytes, max_offset, min_one)
        if offset < plog.log_start_offset:
            return await self._read_remote(plog, offset, ask, read_committed, lso)
        try:
            found = plog.read(offset, max_bytes, max_offset=max_offset, min_one=min_one)
        except OffsetOutOfRangeError:
            if offset < plog.log_start_offset:  # local retention moved the start meanwhile
                return await self._read_remote(plog, offset, ask, read_committed, lso)
            raise
        unread = found if in_file and found is not None and not plog.config.compact and found.checked else None
        records = b""
        # Local reads come from the page cache: cheaper inline than a hop to a thread.
        try:
            if found is not None and unread is None:
                records = found.read()
        except CorruptSegmentError:  # never the bytes: the bucket's copy, else the error for this partition
            if not self._tiered(plog, offset):
                metrics.CORRUPT_READS.labels("refused").inc()
                raise
            metrics.CORRUPT_READS.labels("served_remote").inc()
            return await self._read_remote(plog, offset, ask, read_committed, lso)
        end_offset = offset if found is None else found.end_offset
        if plog.config.compact:
            records, end_offset = await self._past_header_only(plog, records, end_offset, ask)
        size = len(records) if unread is None else unread.size
        metrics.BYTES_SERVED_LOCAL.inc(size)
        aborted: tuple[AbortedTxn, ...] = ()
        if read_committed and size:
            aborted = tuple(plog.aborted_transactions(offset, end_offset))
        return ReadResult(records, plog.high_watermark, self.log_start_offset(topic, partition), lso, aborted,
                          file=unread)

    async def _past_header_only(self, plog: PartitionLog, records: bytes, end_offset: int,
                                ask: _Ask) -> tuple[bytes, int]:
        """Batches read from a cleaned log, past a stretch of header-only ones (a clean keeps
        a producer's last batch, and a group's, records gone): librdkafka takes a fetch
        without a record for one too large to fit and, after ten, fails the partition. The
        stretch is left out (a fetch may start past its offset, as at any gap of a cleaned
        log) and the batches after it read, within either tier, up to HEADER_ONLY_SCAN_BYTES
        skipped; b"" if the log has no record after it yet."""
        skipped = 0
        while records and _no_records(records) and skipped < HEADER_ONLY_SCAN_BYTES:
            skipped += len(records)
            state = self._remote_state(plog.topic, plog.partition)
            segment = state.segment_for(end_offset) if state is not None else None
            if end_offset >= plog.log_start_offset:
                found = plog.read(end_offset, ask.max_bytes, max_offset=ask.max_offset, min_one=ask.min_one) \
                    if end_offset < plog.log_end_offset else None
                records, end_offset = (b"", end_offset) if found is None else (found.read(), found.end_offset)
            elif state is not None and segment is not None:
                records, end_offset = await self._remote_batches(plog, state, segment, end_offset, ask)
            else:  # retention took what follows meanwhile: the next fetch is told
                return b"", end_offset
        return records, end_offset

    def _tiered(self, plog: PartitionLog, offset: int) -> bool:
        """Whether a committed remote segment holds `offset`."""
        state = self._remote_state(plog.topic, plog.partition)
        return state is not None and state.segment_for(offset) is not None

    async def _read_remote(self, plog: PartitionLog, offset: int, ask: _Ask, read_committed: bool,
                           lso: int) -> ReadResult:
        topic, partition = plog.topic, plog.partition
        state = self._remote_state(topic, partition)
        segment = state.segment_for(offset) if state is not None else None
        if state is None or segment is None or self.remote is None:
            raise OffsetOutOfRangeError(offset, self.log_start_offset(topic, partition), plog.log_end_offset)
        records, end_offset = await self._remote_batches(plog, state, segment, offset, ask)
        if plog.config.compact:
            records, end_offset = await self._past_header_only(plog, records, end_offset, ask)
        metrics.BYTES_SERVED_REMOTE.inc(len(records))
        aborted: list[AbortedTxn] = []
        if read_committed and records:
            # A transaction's marker may lie in a later segment, remote or local.
            for later in [s for s in state.segments if s.next_offset > offset]:  # `segment` may be replaced by now
                aborted += [t for t in await self.remote.indexes.aborted_transactions(later)
                            if t.last_offset >= offset and t.first_offset < end_offset]
            aborted += [t for t in plog.aborted_transactions(offset, end_offset) if t not in aborted]
        return ReadResult(records, plog.high_watermark, self.log_start_offset(topic, partition), lso, tuple(aborted))

    async def _remote_batches(self, plog: PartitionLog, state: RemotePartition, segment: RemoteSegment, offset: int,
                              ask: _Ask) -> tuple[bytes, int]:
        """Batches of one remote segment from `offset` on, and the offset after them."""
        remote = self.remote
        assert remote is not None

        async def read(segment: RemoteSegment) -> tuple[bytes, int]:
            return await remote.read(segment, offset, ask.max_bytes, max_offset=ask.max_offset,
                                     following=state.segment_for(segment.next_offset), min_one=ask.min_one)

        try:
            try:
                return await read(segment)
            except NotFoundError:
                current = state.segment_for(offset)
                if current is None or current is segment:
                    raise
                return await read(current)  # a clean replaced it, and file.delete.delay.ms passed
        except NotFoundError as exc:  # remote retention deleted it while we read
            start = self.log_start_offset(plog.topic, plog.partition)
            if offset < start:
                raise OffsetOutOfRangeError(offset, start, plog.log_end_offset) from exc
            raise RemoteDataError(f"{segment.key('log')} vanished from the object store") from exc

    async def max_timestamp_offset(self, topic: str, partition: int) -> OffsetAndTimestamp | None:
        """The record with the largest timestamp in either tier (KIP-734)."""
        plog = self._log(topic, partition)
        stamps = [s.max_timestamp for s in plog.segments]
        state = self._remote_state(topic, partition)
        if state is not None:
            stamps += [s.max_timestamp for s in state.segments]
        largest = max(stamps, default=-1)
        if largest < 0:
            return None
        return await self.offset_for_timestamp(topic, partition, largest)

    async def offset_for_timestamp(self, topic: str, partition: int, timestamp: int) -> OffsetAndTimestamp | None:
        """The first record at or after `timestamp`, across both tiers, never one that
        DeleteRecords deleted."""
        plog = self._log(topic, partition)
        floor = self.logs.records_start_offset(topic, partition)
        state = self._remote_state(topic, partition)
        if state is not None and self.remote is not None:
            for segment in list(state.segments):
                if segment.next_offset > plog.log_start_offset:
                    break  # from here on the local log has it
                found = await self.remote.offset_for_timestamp(segment, timestamp, floor)
                if found is not None:
                    return found
        return await asyncio.to_thread(plog.offset_for_timestamp, timestamp, floor)


# Header-only batches a fetch reads past at most: the work one fetch of a cleaned log costs.
HEADER_ONLY_SCAN_BYTES = 4 * 1024 * 1024
_RECORD_COUNT = struct.Struct(">i")
_RECORD_COUNT_AT = 57  # in a v2 batch header


def _no_records(batches: bytes) -> bool:
    """Whether whole batches hold no record at all (none, or header-only ones); stops at
    the first batch with records, so a usual read checks one header."""
    position = 0
    while position + HEADER_SIZE <= len(batches):
        if _RECORD_COUNT.unpack_from(batches, position + _RECORD_COUNT_AT)[0] > 0:
            return False
        position += 12 + int.from_bytes(batches[position + 8 : position + 12], "big")
    return True
