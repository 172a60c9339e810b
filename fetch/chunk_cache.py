"""A bounded on-disk cache of fixed-size, aligned chunks of remote objects.

Chunk i of an object covers bytes [i * chunk_bytes, (i + 1) * chunk_bytes). Concurrent
readers of one missing chunk share one GET (single flight); a global semaphore bounds
GETs in flight; the least recently used chunks are evicted past `max_bytes`. The most
recently used chunks are also kept in memory (up to `memory_bytes`), so a sequential reader,
which asks for each chunk once per read, opens it at most once. A chunk read back from disk
is the file mapped into memory (pages faulted in by a worker thread), not a copy of it: a
read then copies only the bytes it serves, as a `pread` from the local log does.

A local-folder store's objects are files on this machine already: their chunks are those
files mapped (`LocalFolderStore.map_range`), kept in memory only, never copied to the cache's
disk, where a copy would cost a page-cache write per byte (most of a replay's CPU) for reads
no faster than the store's own.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mmap
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NamedTuple

from hotlog.durable import write_atomically
from tiering.local_store import LocalFolderStore
from tiering.store import ObjectStore

from . import metrics

log = logging.getLogger(__name__)

RangeGet = Callable[[str, int, int], Awaitable[bytes]]  # (key, start, end exclusive) -> bytes
MapRange = Callable[[str, int, int], Awaitable[mmap.mmap]]  # the same bytes, mapped from a local file
Chunk = bytes | mmap.mmap  # a chunk's bytes: as fetched, or its cache file mapped (read-only)
MAX_VERIFIED_RANGES = 1024  # per object; a sequential reader needs one
# Objects whose checked ranges are kept, the most recently checked: a local store's mapped
# chunks keep theirs when memory drops them (the same file's bytes come back), so no drop bounds them.
MAX_VERIFIED_OBJECTS = 4096


class ChunkKey(NamedTuple):
    """Chunk `chunk_index` of the object `object_key`."""

    object_key: str
    chunk_index: int  # not `index`: that is tuple's method

    def path(self, directory: str) -> str:
        """Its cache file in `directory` (object keys may hold slashes: hashed)."""
        return os.path.join(directory, f"{hashlib.sha1(self.object_key.encode()).hexdigest()}-{self.chunk_index}")


class ChunkCache:
    def __init__(
        self,
        directory: str,
        get_range: RangeGet,
        *,
        chunk_bytes: int = 4 * 1024 * 1024,
        max_bytes: int = 1024 * 1024 * 1024,
        max_concurrent_gets: int = 16,
        memory_bytes: int = 64 * 1024 * 1024,
        map_range: MapRange | None = None,
    ) -> None:
        """`map_range`: where the objects are local files, their ranges mapped (kept in memory
        only, never on the cache's disk); used when `chunk_bytes` is a multiple of the mapping
        granularity."""
        if chunk_bytes <= 0 or max_bytes < chunk_bytes:
            raise ValueError("chunk_bytes must be positive and max_bytes at least one chunk")
        self.directory = directory
        self.get_range = get_range
        self._map_range = map_range if chunk_bytes % mmap.ALLOCATIONGRANULARITY == 0 else None
        self.chunk_bytes = chunk_bytes
        self.max_bytes = max_bytes
        self._gets = asyncio.Semaphore(max_concurrent_gets)
        self.memory_bytes = memory_bytes
        self._lru: OrderedDict[ChunkKey, int] = OrderedDict()  # chunk -> size on disk
        self._memory: OrderedDict[ChunkKey, Chunk] = OrderedDict()  # a subset of _lru
        self._memory_used = 0
        self._from_disk: dict[ChunkKey, asyncio.Task[Chunk]] = {}  # chunk files being mapped
        # Object key -> disjoint, sorted [start, end) byte ranges whose batches readers have
        # checked; a dropped chunk's bytes leave them (they come back from the store unchecked).
        self._verified: OrderedDict[str, list[tuple[int, int]]] = OrderedDict()
        self.drops = 0  # chunks dropped so far
        self._prefetched: set[ChunkKey] = set()
        self._in_flight: dict[ChunkKey, asyncio.Task[Chunk]] = {}  # GETs, one per chunk
        self._background: set[asyncio.Task[Chunk]] = set()
        self.cached_bytes = 0
        # The cache does not outlive the process: start empty.
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)

    def chunk_range(self, index: int, object_size: int) -> tuple[int, int]:
        start = index * self.chunk_bytes
        return start, min(start + self.chunk_bytes, object_size)

    @classmethod
    def for_store(cls, directory: str, store: ObjectStore, **settings: int) -> ChunkCache:
        """A cache over `store`'s objects: a local-folder store's chunks are its files mapped;
        any other's (S3, a wrapped store: a latency model, faults) are fetched and kept on
        the cache's disk."""
        mapped = store.map_range if isinstance(store, LocalFolderStore) else None
        return cls(directory, store.get, map_range=mapped, **settings)

    async def get(self, key: str, index: int, object_size: int) -> Chunk:
        """Chunk `index` of object `key` (of `object_size` bytes), from memory, disk or one shared
        GET. Read-only: slice it."""
        chunk = ChunkKey(key, index)
        data = self._memory.get(chunk)  # a chunk on disk, or a local store's file mapped
        if data is not None or chunk in self._lru:
            if chunk in self._lru:
                self._lru.move_to_end(chunk)
            metrics.CHUNK_CACHE.labels("hit").inc()
            if chunk in self._prefetched:
                self._prefetched.discard(chunk)
                metrics.PREFETCH_HITS.inc()
            if data is not None:
                self._memory.move_to_end(chunk)
                return data
            try:
                return await asyncio.shield(self._read_from_disk(chunk))
            except FileNotFoundError:  # evicted while the read was on its way
                if not os.path.exists(chunk.path(self.directory)):  # and not cached again since
                    self._forget(chunk)
        metrics.CHUNK_CACHE.labels("miss").inc()
        # Shielded: a reader that gives up (its client went away) leaves the GET to the others.
        return await asyncio.shield(self._load(chunk, object_size))

    def prefetch(self, key: str, first: int, count: int, object_size: int) -> None:
        """Start loading chunks first .. first+count-1 in the background, unless cached or loading."""
        last = (object_size - 1) // self.chunk_bytes
        for index in range(first, min(first + count, last + 1)):
            chunk = ChunkKey(key, index)
            if chunk in self._memory or chunk in self._in_flight or chunk in self._from_disk:
                continue
            if chunk in self._lru:  # on disk: into memory before the reader asks
                self._read_from_disk(chunk)
                continue
            self._load(chunk, object_size, prefetch=True)

    def _prefetch_done(self, task: asyncio.Task[Chunk]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # a failed prefetch is retried by the reader that needs the chunk

    def _single_flight(self, tasks: dict[ChunkKey, asyncio.Task[Any]], chunk: ChunkKey,
                       work: Callable[[], Coroutine[Any, Any, Any]]) -> asyncio.Task[Any]:
        """The task in `tasks` doing `work` for `chunk`, started if none is: one however many
        readers ask at once. It runs on its own, so no reader's cancellation reaches the others."""
        task = tasks.get(chunk)
        if task is None:
            task = tasks[chunk] = asyncio.get_running_loop().create_task(work())
            self._background.add(task)

            def done(finished: asyncio.Task[Any]) -> None:
                if tasks.get(chunk) is finished:
                    del tasks[chunk]
                self._prefetch_done(finished)

            task.add_done_callback(done)
        return task

    def _read_from_disk(self, chunk: ChunkKey) -> asyncio.Task[Chunk]:
        """A cached chunk's file mapped into memory."""
        return self._single_flight(self._from_disk, chunk, lambda: self._file_to_memory(chunk))

    async def _file_to_memory(self, chunk: ChunkKey) -> Chunk:
        data = await asyncio.to_thread(_map_file, chunk.path(self.directory))
        if chunk in self._lru:  # not dropped while the read was on its way
            self._remember(chunk, data)
        return data

    def _load(self, chunk: ChunkKey, object_size: int, *, prefetch: bool = False) -> asyncio.Task[Chunk]:
        """The chunk's GET, shared by every reader and prefetch that asks meanwhile."""
        return self._single_flight(self._in_flight, chunk, lambda: self._fetch(chunk, object_size, prefetch))

    async def _fetch(self, chunk: ChunkKey, object_size: int, prefetch: bool) -> Chunk:
        key, index = chunk
        start, end = self.chunk_range(index, object_size)
        data: Chunk
        async with self._gets:
            began = time.perf_counter()
            data = await (self.get_range if self._map_range is None else self._map_range)(key, start, end)
            metrics.REMOTE_GET_LATENCY.observe(time.perf_counter() - began)
        metrics.REMOTE_GETS.inc()
        metrics.REMOTE_GET_BYTES.inc(len(data))
        if len(data) != end - start:
            raise ShortChunkError(f"{key}: chunk {index} came back with {len(data)} of {end - start} bytes")
        if prefetch:  # marked before it is remembered: read-ahead stays in memory until read
            self._prefetched.add(chunk)
        if isinstance(data, mmap.mmap):  # the store's own file: in memory only
            self._remember(chunk, data)
        else:
            await self._keep(chunk, data)
        return data

    async def _keep(self, chunk: ChunkKey, data: bytes) -> None:
        """A fetched chunk to the cache's disk and memory."""
        try:
            # Whole or absent, not durable: the cache starts empty after a restart.
            await asyncio.to_thread(write_atomically, chunk.path(self.directory), data, sync=False)
        except OSError as exc:  # a full or failing cache disk costs later GETs, not this read
            log.warning("chunk cache: cannot write %s chunk %d, serving it uncached: %s", *chunk, exc)
            self._prefetched.discard(chunk)
            return
        self._admit(chunk, len(data))
        self._remember(chunk, data)

    def _admit(self, chunk: ChunkKey, size: int) -> None:
        self._lru[chunk] = size
        self.cached_bytes += size
        while self.cached_bytes > self.max_bytes and len(self._lru) > 1:
            old, _ = next(iter(self._lru.items()))
            self.invalidate(*old)

    def _remember(self, chunk: ChunkKey, data: Chunk) -> None:
        if chunk in self._memory or len(data) > self.memory_bytes:
            return
        self._memory[chunk] = data
        self._memory_used += len(data)
        while self._memory_used > self.memory_bytes:
            # The least recently used chunk, read-ahead not yet read last: a reader touching the
            # chunks it is in must not push out the ones it asked to have ready.
            dropped = next((c for c in self._memory if c not in self._prefetched), next(iter(self._memory)))
            old = self._memory.pop(dropped)
            self._memory_used -= len(old)
            if dropped not in self._lru:  # a local store's mapping: mapped again when asked, the same bytes
                self._prefetched.discard(dropped)

    def is_verified(self, key: str, start: int, end: int) -> bool:
        """Whether bytes [start, end) of `key` lie in one range readers have checked."""
        return any(lo <= start and end <= hi for lo, hi in self._verified.get(key, ()))

    def mark_verified(self, key: str, start: int, end: int) -> None:
        kept = []
        for lo, hi in self._verified.get(key, ()):
            if hi < start or lo > end:
                kept.append((lo, hi))
            else:  # overlapping or adjacent: merge
                start, end = min(lo, start), max(hi, end)
        kept.append((start, end))
        kept.sort()
        self._verified[key] = kept[-MAX_VERIFIED_RANGES:]  # forgetting some only costs re-checks
        self._verified.move_to_end(key)
        if len(self._verified) > MAX_VERIFIED_OBJECTS:
            self._verified.popitem(last=False)

    def _unverify(self, chunk: ChunkKey) -> None:
        key = chunk.object_key
        cut_lo = chunk.chunk_index * self.chunk_bytes
        cut_hi = cut_lo + self.chunk_bytes
        kept = []
        for lo, hi in self._verified.get(key, ()):
            if lo < cut_lo:
                kept.append((lo, min(hi, cut_lo)))
            if hi > cut_hi:
                kept.append((max(lo, cut_hi), hi))
        if kept:
            self._verified[key] = kept
        else:
            self._verified.pop(key, None)

    def _forget(self, chunk: ChunkKey) -> None:
        self.drops += 1
        self._from_disk.pop(chunk, None)  # a mapping begun before the drop is not handed out
        self._unverify(chunk)
        size = self._lru.pop(chunk, None)
        if size is not None:
            self.cached_bytes -= size
        self._prefetched.discard(chunk)
        data = self._memory.pop(chunk, None)
        if data is not None:
            self._memory_used -= len(data)

    def invalidate(self, key: str, index: int) -> None:
        """Drop a chunk (evicted, or found corrupt by a reader)."""
        chunk = ChunkKey(key, index)
        self._forget(chunk)
        try:
            os.unlink(chunk.path(self.directory))
        except FileNotFoundError:
            pass

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def _map_file(path: str) -> mmap.mmap:
    """The file mapped read-only, its pages faulted in here (a worker thread), not later on
    the event loop. The mapping outlives the file's deletion (an eviction)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0), prot=mmap.PROT_READ)
    finally:
        os.close(fd)


class ShortChunkError(Exception):
    """The store returned fewer bytes than the chunk's range."""
