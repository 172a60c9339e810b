import asyncio
import os

import pytest

from fetch import chunk_cache
from fetch.chunk_cache import ChunkCache, ShortChunkError
from tiering.local_store import LocalFolderStore
from tiering.store import GET
from tiering.wrappers import LatencyModelStore


class CountingSource:
    """Objects in memory; counts ranged GETs and can hold them until released."""

    def __init__(self, objects: dict[str, bytes], delay: float = 0.0) -> None:
        self.objects = objects
        self.delay = delay
        self.gets: list[tuple[str, int, int]] = []

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        self.gets.append((key, start, end))
        await asyncio.sleep(self.delay)
        return self.objects[key][start:end]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_readers_of_one_chunk_share_one_get(tmp_path):
    data = os.urandom(10_000)
    source = CountingSource({"seg": data}, delay=0.05)

    async def scenario():
        cache = ChunkCache(str(tmp_path / "c"), source.get_range, chunk_bytes=4096, max_bytes=1 << 20)
        results = await asyncio.gather(*(cache.get("seg", 1, len(data)) for _ in range(20)))
        await cache.close()
        return results

    results = run(scenario())
    assert all(r == data[4096:8192] for r in results)
    assert source.gets == [("seg", 4096, 8192)]


def test_cached_chunk_is_served_without_a_get_and_last_chunk_is_short(tmp_path):
    data = os.urandom(10_000)
    source = CountingSource({"seg": data})

    async def scenario():
        cache = ChunkCache(str(tmp_path / "c"), source.get_range, chunk_bytes=4096, max_bytes=1 << 20)
        first = await cache.get("seg", 2, len(data))
        again = await cache.get("seg", 2, len(data))
        return first, again

    first, again = run(scenario())
    assert first == again == data[8192:]
    assert len(source.gets) == 1


def test_eviction_keeps_the_cache_within_its_bound(tmp_path):
    data = os.urandom(64 * 1024)
    source = CountingSource({"seg": data})

    async def scenario():
        cache = ChunkCache(str(tmp_path / "c"), source.get_range, chunk_bytes=4096, max_bytes=3 * 4096)
        for index in range(16):
            assert await cache.get("seg", index, len(data)) == data[index * 4096 : (index + 1) * 4096]
        files = os.listdir(tmp_path / "c")
        # the most recent chunk is still cached; the oldest was evicted and is fetched again
        await cache.get("seg", 15, len(data))
        gets_before = len(source.gets)
        await cache.get("seg", 0, len(data))
        return cache.cached_bytes, files, len(source.gets) - gets_before

    cached, files, refetched = run(scenario())
    assert cached <= 3 * 4096
    assert len(files) == 3
    assert refetched == 1


def test_prefetch_loads_following_chunks_in_the_background(tmp_path):
    data = os.urandom(40_000)
    source = CountingSource({"seg": data})

    async def scenario():
        cache = ChunkCache(str(tmp_path / "c"), source.get_range, chunk_bytes=4096, max_bytes=1 << 20)
        cache.prefetch("seg", 1, 3, len(data))
        await asyncio.sleep(0.05)
        gets_after_prefetch = len(source.gets)
        chunks = [await cache.get("seg", i, len(data)) for i in (1, 2, 3)]
        await cache.close()
        return gets_after_prefetch, chunks

    gets, chunks = run(scenario())
    assert gets == 3
    assert len(source.gets) == 3  # served from the prefetched copies
    assert b"".join(chunks) == data[4096 : 4 * 4096]


def test_a_short_answer_from_the_store_is_an_error_and_not_cached(tmp_path):
    data = os.urandom(10_000)
    source = CountingSource({"seg": data[:5000]})  # the store lost the object's tail

    async def scenario():
        cache = ChunkCache(str(tmp_path / "c"), source.get_range, chunk_bytes=4096, max_bytes=1 << 20)
        with pytest.raises(ShortChunkError):
            await cache.get("seg", 1, len(data))
        return cache.cached_bytes

    assert run(scenario()) == 0


def test_invalidate_drops_a_corrupt_chunk(tmp_path):
    data = bytearray(os.urandom(8192))
    source = CountingSource({"seg": bytes(data)})

    async def scenario():
        cache = ChunkCache(str(tmp_path / "c"), source.get_range, chunk_bytes=4096, max_bytes=1 << 20)
        await cache.get("seg", 0, len(data))
        cache.invalidate("seg", 0)
        await cache.get("seg", 0, len(data))

    run(scenario())
    assert len(source.gets) == 2


def test_a_reader_that_gives_up_leaves_the_shared_get_to_the_others(tmp_path):
    data = os.urandom(10_000)
    source = CountingSource({"seg": data}, delay=0.05)

    async def scenario():
        cache = ChunkCache(str(tmp_path / "c"), source.get_range, chunk_bytes=4096, max_bytes=1 << 20)
        first = asyncio.create_task(cache.get("seg", 0, len(data)))
        await asyncio.sleep(0.01)  # its GET is under way
        second = asyncio.create_task(cache.get("seg", 0, len(data)))
        await asyncio.sleep(0.01)
        first.cancel()  # e.g. its client disconnected
        got = await second
        await cache.close()
        return first, got

    first, got = run(scenario())
    assert first.cancelled()
    assert got == data[:4096]
    assert len(source.gets) == 1


def test_a_cache_disk_that_fails_costs_caching_not_the_read(tmp_path, monkeypatch):
    data = os.urandom(10_000)
    source = CountingSource({"seg": data})

    def disk_full(path: str, chunk: bytes, *, sync: bool) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("fetch.chunk_cache.write_atomically", disk_full)

    async def scenario():
        cache = ChunkCache(str(tmp_path / "c"), source.get_range, chunk_bytes=4096, max_bytes=1 << 20)
        got = [await cache.get("seg", 1, len(data)) for _ in range(2)]
        await cache.close()
        return got, cache.cached_bytes

    got, cached = run(scenario())
    assert got == [data[4096:8192]] * 2
    assert cached == 0 and len(source.gets) == 2  # not admitted: the second read fetched again


def test_a_folder_stores_chunks_are_its_files_mapped_not_copies_on_the_cache_disk(tmp_path):
    """The folder store's objects are local files already: the cache maps them and writes
    nothing; a mapping out of memory is mapped again, its bytes still trusted as checked."""
    data = os.urandom(4 * 4096 + 100)
    store = LocalFolderStore(str(tmp_path / "bucket"))
    directory = tmp_path / "c"

    async def scenario():
        await store.put("seg", data)
        cache = ChunkCache.for_store(str(directory), store, chunk_bytes=4096, max_bytes=1 << 20, memory_bytes=2 * 4096)
        chunks = [bytes(await cache.get("seg", index, len(data))) for index in range(5)]
        cache.mark_verified("seg", 0, 4096)
        gets = store.requests[GET]
        again = bytes(await cache.get("seg", 0, len(data)))  # out of memory since: mapped again
        trusted = cache.is_verified("seg", 0, 4096)
        cache.invalidate("seg", 0)  # found corrupt by a reader: checked again next time
        checked_after_invalidation = cache.is_verified("seg", 0, 4096)
        await cache.close()
        return chunks, again, store.requests[GET] - gets, trusted, checked_after_invalidation

    chunks, again, mapped_again, trusted, checked_after_invalidation = run(scenario())
    assert b"".join(chunks) == data and again == data[:4096]
    assert os.listdir(directory) == []
    assert mapped_again == 1
    assert trusted and not checked_after_invalidation


def test_a_wrapped_folder_stores_chunks_go_to_the_cache_disk(tmp_path):
    """Behind a wrapper (latency model, faults) the store is not known to be local files."""
    data = os.urandom(2 * 4096)
    store = LocalFolderStore(str(tmp_path / "bucket"))
    directory = tmp_path / "c"

    async def scenario():
        await store.put("seg", data)
        wrapped = LatencyModelStore(store, first_byte_s=0, bandwidth_bytes_per_s=1e12)
        cache = ChunkCache.for_store(str(directory), wrapped, chunk_bytes=4096, max_bytes=1 << 20)
        chunks = [await cache.get("seg", index, len(data)) for index in range(2)]
        await cache.close()
        return chunks

    assert b"".join(run(scenario())) == data
    assert len(os.listdir(directory)) == 2


def test_read_ahead_not_yet_read_outlives_chunks_read_since_in_memory(tmp_path):
    """A reader keeps touching the chunk it is in while its read-ahead lands: when memory is
    full, a chunk already read goes first, not one the reader asked to have ready."""
    data = os.urandom(6 * 4096)
    store = LocalFolderStore(str(tmp_path / "bucket"))

    async def scenario():
        await store.put("seg", data)
        cache = ChunkCache.for_store(str(tmp_path / "c"), store, chunk_bytes=4096, max_bytes=1 << 20,
                                     memory_bytes=3 * 4096)
        await cache.get("seg", 0, len(data))
        cache.prefetch("seg", 1, 2, len(data))
        await asyncio.gather(*list(cache._background))  # the read-ahead has landed
        await cache.get("seg", 0, len(data))  # the reader, still in chunk 0: the least recently used is chunk 1
        await cache.get("seg", 3, len(data))  # memory full: chunk 0 goes
        ahead = [await cache.get("seg", index, len(data)) for index in (1, 2)]
        await cache.close()
        return ahead

    ahead = run(scenario())
    assert [bytes(chunk) for chunk in ahead] == [data[4096:8192], data[8192:12288]]
    assert store.requests[GET] == 4  # chunks 0 to 3, each once


def test_checked_ranges_are_kept_for_the_most_recently_checked_objects_only(tmp_path, monkeypatch):
    """A folder store's chunks keep their checks when memory drops them, so the objects
    remembered as checked are bounded on their own: the oldest is checked again."""
    monkeypatch.setattr(chunk_cache, "MAX_VERIFIED_OBJECTS", 2)
    cache = ChunkCache(str(tmp_path / "c"), CountingSource({}).get_range, chunk_bytes=4096, max_bytes=1 << 20)
    for key in ("a", "b", "c"):
        cache.mark_verified(key, 0, 4096)
    assert [cache.is_verified(key, 0, 4096) for key in ("a", "b", "c")] == [False, True, True]
