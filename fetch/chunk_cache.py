"""A bounded on-disk cache of fixed-size, aligned chunks of remote objects.

Chunk i of an object covers bytes [i * chunk_bytes, (i + 1) * chunk_bytes). Concurrent
readers of one missing chunk share one GET (single flight); a global semaphore bounds
GETs in flight; the least recently used chunks are evicted past `max_bytes`. The most
recently used chunks are also kept in memory (up to `memory_bytes`), so a sequential reader,
which asks for each chunk once per read, reads it from disk at most once.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from collections import OrderedDict
from typing import Awaitable, Callable

from . import metrics

RangeGet = Callable[[str, int, int], Awaitable[bytes]]  # (key, start, end exclusive) -> bytes


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
    ) -> None:
        if chunk_bytes <= 0 or max_bytes < chunk_bytes:
            raise ValueError("chunk_bytes must be positive and max_bytes at least one chunk")
        self.directory = directory
        self.get_range = get_range
        self.chunk_bytes = chunk_bytes
        self.max_bytes = max_bytes
        self._gets = asyncio.Semaphore(max_concurrent_gets)
        self.memory_bytes = memory_bytes
        self._lru: OrderedDict[tuple[str, int], int] = OrderedDict()  # chunk -> size on disk
        self._memory: OrderedDict[tuple[str, int], bytes] = OrderedDict()  # a subset of _lru
        self._memory_used = 0
        self._from_disk: dict[tuple[str, int], asyncio.Task[bytes]] = {}  # chunk files being read into memory
        self._prefetched: set[tuple[str, int]] = set()
        self._in_flight: dict[tuple[str, int], asyncio.Future[bytes]] = {}
        self._background: set[asyncio.Task[bytes]] = set()
        self.cached_bytes = 0
        # The cache does not outlive the process: start empty.
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)

    def chunk_range(self, index: int, object_size: int) -> tuple[int, int]:
        start = index * self.chunk_bytes
        return start, min(start + self.chunk_bytes, object_size)

    def _path(self, key: str, index: int) -> str:
        return os.path.join(self.directory, f"{hashlib.sha1(key.encode()).hexdigest()}-{index}")

    async def get(self, key: str, index: int, object_size: int) -> bytes:
        """Chunk `index` of object `key` (of `object_size` bytes), from disk or one shared GET."""
        chunk = (key, index)
        if chunk in self._lru:
            self._lru.move_to_end(chunk)
            metrics.CHUNK_CACHE.labels("hit").inc()
            if chunk in self._prefetched:
                self._prefetched.discard(chunk)
                metrics.PREFETCH_HITS.inc()
            data = self._memory.get(chunk)
            if data is not None:
                self._memory.move_to_end(chunk)
                return data
            try:
                return await asyncio.shield(self._read_from_disk(chunk))
            except FileNotFoundError:  # evicted while the read was on its way
                self._forget(chunk)
        metrics.CHUNK_CACHE.labels("miss").inc()
        return await self._load(key, index, object_size)

    def prefetch(self, key: str, first: int, count: int, object_size: int) -> None:
        """Start loading chunks first .. first+count-1 in the background, unless cached or loading."""
        last = (object_size - 1) // self.chunk_bytes
        for index in range(first, min(first + count, last + 1)):
            chunk = (key, index)
            if chunk in self._memory or chunk in self._in_flight or chunk in self._from_disk:
                continue
            if chunk in self._lru:  # on disk: into memory before the reader asks
                self._read_from_disk(chunk)
                continue
            task = asyncio.get_running_loop().create_task(self._load(key, index, object_size, prefetch=True))
            self._background.add(task)
            task.add_done_callback(self._prefetch_done)

    def _prefetch_done(self, task: "asyncio.Task[bytes]") -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # a failed prefetch is retried by the reader that needs the chunk

    def _read_from_disk(self, chunk: tuple[str, int]) -> "asyncio.Task[bytes]":
        """A cached chunk's file read into memory: one read however many readers ask at once."""
        task = self._from_disk.get(chunk)
        if task is None:
            task = self._from_disk[chunk] = asyncio.get_running_loop().create_task(self._file_to_memory(chunk))
            self._background.add(task)

            def done(finished: "asyncio.Task[bytes]") -> None:
                if self._from_disk.get(chunk) is finished:
                    del self._from_disk[chunk]
                self._prefetch_done(finished)

            task.add_done_callback(done)
        return task

    async def _file_to_memory(self, chunk: tuple[str, int]) -> bytes:
        data = await asyncio.to_thread(_read_file, self._path(*chunk))
        if chunk in self._lru:  # not dropped while the read was on its way
            self._remember(chunk, data)
        return data

    async def _load(self, key: str, index: int, object_size: int, *, prefetch: bool = False) -> bytes:
        chunk = (key, index)
        pending = self._in_flight.get(chunk)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._in_flight[chunk] = future
        try:
            start, end = self.chunk_range(index, object_size)
            async with self._gets:
                began = time.perf_counter()
                data = await self.get_range(key, start, end)
                metrics.REMOTE_GET_LATENCY.observe(time.perf_counter() - began)
            metrics.REMOTE_GETS.inc()
            metrics.REMOTE_GET_BYTES.inc(len(data))
            if len(data) != end - start:
                raise ShortChunkError(f"{key}: chunk {index} came back with {len(data)} of {end - start} bytes")
            await asyncio.to_thread(_write_file, self._path(key, index), data)
            self._admit(chunk, len(data))
            self._remember(chunk, data)
            if prefetch:
                self._prefetched.add(chunk)
            future.set_result(data)
            return data
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._in_flight[chunk]

    def _admit(self, chunk: tuple[str, int], size: int) -> None:
        self._lru[chunk] = size
        self.cached_bytes += size
        while self.cached_bytes > self.max_bytes and len(self._lru) > 1:
            old, _ = next(iter(self._lru.items()))
            self.invalidate(*old)

    def _remember(self, chunk: tuple[str, int], data: bytes) -> None:
        if chunk in self._memory or len(data) > self.memory_bytes:
            return
        self._memory[chunk] = data
        self._memory_used += len(data)
        while self._memory_used > self.memory_bytes:
            _, old = self._memory.popitem(last=False)
            self._memory_used -= len(old)

    def _forget(self, chunk: tuple[str, int]) -> None:
        size = self._lru.pop(chunk, None)
        if size is not None:
            self.cached_bytes -= size
        self._prefetched.discard(chunk)
        data = self._memory.pop(chunk, None)
        if data is not None:
            self._memory_used -= len(data)

    def invalidate(self, key: str, index: int) -> None:
        """Drop a chunk (evicted, or found corrupt by a reader)."""
        self._forget((key, index))
        try:
            os.unlink(self._path(key, index))
        except FileNotFoundError:
            pass

    def invalidate_object(self, key: str) -> None:
        for chunk in [c for c in self._lru if c[0] == key]:
            self.invalidate(*chunk)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write_file(path: str, data: bytes) -> None:
    with open(f"{path}.tmp", "wb") as f:
        f.write(data)
    os.replace(f"{path}.tmp", path)


class ShortChunkError(Exception):
    """The store returned fewer bytes than the chunk's range."""
