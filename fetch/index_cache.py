"""Indexes of remote segments (offset, time, aborted transactions), fetched whole and
kept in memory, bounded by bytes, least recently used first out."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from crc32c import crc32c

from hotlog.index import OffsetIndex, TimeIndex
from hotlog.txn_index import AbortedTxn, TxnIndex
from tiering.metadata import RemoteSegment
from tiering.store import ObjectStore

from . import metrics

ParsedIndex = OffsetIndex | TimeIndex | list[AbortedTxn]


class RemoteDataError(Exception):
    """Data from the object store failed its checksum or was short: not served, retry later."""


class RemoteIndexCache:
    def __init__(self, store: ObjectStore, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.cached_bytes = 0
        self._entries: OrderedDict[tuple[str, str], tuple[ParsedIndex, int]] = OrderedDict()
        self._loading: dict[tuple[str, str], asyncio.Task[ParsedIndex]] = {}

    async def offset_index(self, segment: RemoteSegment) -> OffsetIndex:
        index = await self._get(segment, "index")
        assert isinstance(index, OffsetIndex)
        return index

    async def time_index(self, segment: RemoteSegment) -> TimeIndex:
        index = await self._get(segment, "timeindex")
        assert isinstance(index, TimeIndex)
        return index

    async def aborted_transactions(self, segment: RemoteSegment) -> list[AbortedTxn]:
        if "txnindex" not in segment.files:
            return []
        entries = await self._get(segment, "txnindex")
        assert isinstance(entries, list)
        return entries

    async def _get(self, segment: RemoteSegment, extension: str) -> ParsedIndex:
        slot = (str(segment.segment_id), extension)
        entry = self._entries.get(slot)
        if entry is not None:
            self._entries.move_to_end(slot)
            metrics.INDEX_CACHE.labels("hit").inc()
            return entry[0]
        metrics.INDEX_CACHE.labels("miss").inc()
        task = self._loading.get(slot)
        if task is None:  # one GET however many readers ask at once
            task = asyncio.get_running_loop().create_task(self._load(segment, extension))
            self._loading[slot] = task
            task.add_done_callback(lambda _: self._loading.pop(slot, None))
        return await asyncio.shield(task)

    async def _load(self, segment: RemoteSegment, extension: str) -> ParsedIndex:
        meta = segment.files[extension]
        data = await self.store.get(meta.key)
        if len(data) != meta.size or crc32c(data) != meta.crc32c:
            raise RemoteDataError(f"{meta.key}: {len(data)} bytes with a checksum that does not match its record")
        parsed = _parse(segment, extension, data)
        slot = (str(segment.segment_id), extension)
        self._entries[slot] = (parsed, len(data))
        self.cached_bytes += len(data)
        while self.cached_bytes > self.max_bytes and len(self._entries) > 1:
            _, (_, size) = self._entries.popitem(last=False)
            self.cached_bytes -= size
        return parsed


def _parse(segment: RemoteSegment, extension: str, data: bytes) -> ParsedIndex:
    if extension == "txnindex":
        return TxnIndex.parse(data)
    index: OffsetIndex | TimeIndex
    if extension == "index":
        index = OffsetIndex("", segment.base_offset, max(len(data), 8))
    else:
        index = TimeIndex("", segment.base_offset, max(len(data), 12))
    if not index.load_bytes(data):
        raise RemoteDataError(f"{segment.key(extension)}: not a whole number of index entries")
    return index
