"""Reads of record batches from segments in the object store, through the chunk cache."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import NamedTuple

from hotlog.batch import HEADER_SIZE, BatchHeader, BatchPosition, parse_header, validate_batches
from hotlog.errors import CorruptRecordError
from hotlog.index import OffsetIndex
from hotlog.log import OffsetAndTimestamp, first_at_or_after
from hotlog.records import decode_batch
from tiering.metadata import RemoteSegment

from .chunk_cache import Chunk, ChunkCache, ShortChunkError
from .index_cache import RemoteDataError, RemoteIndexCache

MAX_READ_ENDS = 4096  # objects whose readers' positions are remembered for read-ahead


class RemoteRead(NamedTuple):
    records: bytes  # whole batches, back to back; empty when none is before max_offset
    end_offset: int  # the offset after them


class _Span:
    """Bytes of one remote `.log` object, assembled from cached chunks as a read needs them."""

    def __init__(self, cache: ChunkCache, key: str, size: int) -> None:
        self.cache = cache
        self.key = key
        self.size = size
        self.chunks: dict[int, Chunk] = {}

    async def _chunk(self, index: int) -> Chunk:
        chunk = self.chunks.get(index)
        if chunk is None:
            try:
                chunk = self.chunks[index] = await self.cache.get(self.key, index, self.size)
            except ShortChunkError as exc:
                raise RemoteDataError(str(exc)) from exc
        return chunk

    async def read(self, position: int, length: int) -> bytes:
        """Bytes [position, position + length), stitched across chunk boundaries."""
        size = self.cache.chunk_bytes
        first, last = position // size, (position + length - 1) // size
        if first == last:
            chunk = await self._chunk(first)
            return chunk[position - first * size : position - first * size + length]
        parts: list[memoryview] = []
        for index in range(first, last + 1):
            chunk = await self._chunk(index)
            lo = max(position - index * size, 0)
            hi = min(position + length - index * size, len(chunk))
            parts.append(memoryview(chunk)[lo:hi])  # views: the join is the one copy
        return b"".join(parts)

    async def header(self, position: int) -> BatchHeader:
        return parse_header(await self.read(position, HEADER_SIZE))

    def last_chunk(self, end_position: int) -> int:
        return max(end_position - 1, 0) // self.cache.chunk_bytes


def _check_offsets(batches: list[BatchPosition], offset: int, segment: RemoteSegment) -> None:
    """Offsets are outside the CRC: check that they increase within the segment, the first
    batch ending at or after `offset` (a cleaned segment has gaps where batches went)."""
    first = batches[0].header
    if not (segment.base_offset <= first.base_offset and first.last_offset >= offset):
        raise CorruptRecordError(f"batch at offset {first.base_offset} cannot hold offset {offset}")
    expected = first.base_offset
    for _, header in batches:
        if header.base_offset < expected or header.next_offset > segment.next_offset:
            raise CorruptRecordError(f"batch offsets {header.base_offset}..{header.last_offset} out of sequence")
        expected = header.next_offset


class RemoteReader:
    def __init__(self, cache: ChunkCache, indexes: RemoteIndexCache, *, readahead_chunks: int = 4) -> None:
        self.cache = cache
        self.indexes = indexes
        self.readahead_chunks = readahead_chunks
        # Object key -> where the last read ended, for the most recent MAX_READ_ENDS objects.
        self._read_ends: OrderedDict[str, int] = OrderedDict()
        self._index_loads: set[asyncio.Task[OffsetIndex]] = set()

    async def read(
        self, segment: RemoteSegment, offset: int, max_bytes: int, *, max_offset: int | None = None,
        following: RemoteSegment | None = None, min_one: bool = True,
    ) -> RemoteRead:
        """Whole batches from the one holding `offset` (at least one, unless not `min_one`),
        up to `max_bytes`, before `max_offset`. Every batch that
        came from the store is checked (CRC-32C, offsets) before it is first served; the cache
        then holds checked bytes, trusted as the local log is, until a chunk of them is
        dropped. A sequential reader near the segment's end has the `following` segment's
        index and first chunks read ahead."""
        key, size = segment.key("log"), segment.files["log"].size
        drops = self.cache.drops  # a chunk dropped from here on may be held here in an older copy
        span = _Span(self.cache, key, size)
        index = await self.indexes.offset_index(segment)
        position = index.position_for(offset)
        start = None
        while position + HEADER_SIZE <= size:
            header = await span.header(position)
            if header.base_offset < segment.base_offset or header.next_offset > segment.next_offset:
                self.cache.invalidate(key, position // self.cache.chunk_bytes)  # fetched anew next time
                raise RemoteDataError(f"{key}: a batch at position {position} holds offsets "
                                      f"{header.base_offset}..{header.last_offset}, outside the segment's")
            if header.last_offset >= offset:
                start = position
                break
            position += header.size
        if start is None or (max_offset is not None and header.base_offset >= max_offset) or (
                not min_one and header.size > max_bytes):
            return RemoteRead(b"", offset)
        end, end_offset = start + header.size, header.next_offset  # the first batch, even past max_bytes
        if max_offset is None or max_offset >= segment.next_offset:
            # As the local log does: jump by the offset index to near the byte limit, so
            # only the last few headers are read, not every one.
            end = max(end, index.position_floor(start + max_bytes))
        while end + HEADER_SIZE <= size:
            header = await span.header(end)
            end_offset = header.base_offset
            if max_offset is not None and header.base_offset >= max_offset:
                break
            if end + header.size - start > max_bytes:
                break
            end += header.size
            end_offset = header.next_offset
        data = await span.read(start, end - start)
        if self.cache.drops != drops or not self.cache.is_verified(key, start, end):
            try:
                _check_offsets(validate_batches(data, stored=True), offset, segment)
            except CorruptRecordError as exc:
                for chunk in range(start // self.cache.chunk_bytes, span.last_chunk(end) + 1):
                    self.cache.invalidate(key, chunk)
                raise RemoteDataError(f"{key}: {exc}") from exc
            if self.cache.drops == drops:
                self.cache.mark_verified(key, start, end)
        self._read_ahead(key, start, end, size, following)
        return RemoteRead(data, end_offset)

    def _read_ahead(self, key: str, start: int, end: int, size: int, following: RemoteSegment | None) -> None:
        """Sequential readers (this read begins where the last one ended, or at the segment's
        start) get the next chunks loading before they ask: `readahead_chunks` past the chunk
        this read ended in (which the next read uses), running on into the next segment."""
        sequential = start == 0 or self._read_ends.get(key) == start
        self._read_ends[key] = end
        self._read_ends.move_to_end(key)
        if len(self._read_ends) > MAX_READ_ENDS:
            self._read_ends.popitem(last=False)
        if not sequential:
            return
        first = -(-end // self.cache.chunk_bytes)
        self.cache.prefetch(key, first, self.readahead_chunks, size)
        beyond = first + self.readahead_chunks - (-(-size // self.cache.chunk_bytes))  # chunks past this object
        if beyond > 0 and following is not None:
            index = asyncio.get_running_loop().create_task(self.indexes.offset_index(following))
            self._index_loads.add(index)
            index.add_done_callback(self._index_loaded)
            self.cache.prefetch(following.key("log"), 0, beyond, following.files["log"].size)

    async def close(self) -> None:
        """Stop the background index loads, then the chunk cache's GETs."""
        for task in list(self._index_loads):
            task.cancel()
        await asyncio.gather(*self._index_loads, return_exceptions=True)
        await self.cache.close()

    def _index_loaded(self, task: asyncio.Task[OffsetIndex]) -> None:
        self._index_loads.discard(task)
        if not task.cancelled():
            task.exception()  # a failed load is retried by the read that needs the index

    async def offset_for_timestamp(self, segment: RemoteSegment, timestamp: int,
                                   min_offset: int = 0) -> OffsetAndTimestamp | None:
        """The segment's first record at or past `min_offset` stamped at or after `timestamp`."""
        if segment.max_timestamp < timestamp or segment.next_offset <= min_offset:
            return None
        time_index = await self.indexes.time_index(segment)
        offset_index = await self.indexes.offset_index(segment)
        span = _Span(self.cache, segment.key("log"), segment.files["log"].size)
        position = offset_index.position_for(max(time_index.offset_before(timestamp), min_offset))
        while position + HEADER_SIZE <= span.size:
            header = await span.header(position)
            if header.max_timestamp >= timestamp and header.last_offset >= min_offset:
                batch = decode_batch(await span.read(position, header.size))
                return first_at_or_after(batch.records, timestamp, min_offset) or \
                    OffsetAndTimestamp(header.last_offset, header.max_timestamp)
            position += header.size
        return None
