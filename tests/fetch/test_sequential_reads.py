"""What a sequential replay costs the read path: each chunk read from disk at most once,
and the read-ahead window counted past the chunk a read ended in."""

import asyncio
import os

import pytest

import fetch.chunk_cache as chunk_cache
from fetch.chunk_cache import ChunkCache
from fetch.index_cache import RemoteDataError
from tests.fetch.test_reader import make_reader, read_all
from tests.tiering.support import open_logs, produce, seal_active, split
from tiering.local_store import LocalFolderStore
from tiering.wrappers import FaultInjectingStore

from .test_chunk_cache import CountingSource


@pytest.fixture
def disk_reads(monkeypatch) -> list[str]:
    """Paths of the chunk files the cache reads from disk."""
    reads: list[str] = []
    map_file = chunk_cache._map_file
    monkeypatch.setattr(chunk_cache, "_map_file", lambda path: reads.append(path) or map_file(path))
    return reads


def two_chunks_in_memory(tmp_path, source: CountingSource) -> ChunkCache:
    return ChunkCache(str(tmp_path / "c"), source.get_range, chunk_bytes=4096, max_bytes=1 << 20,
                      memory_bytes=2 * 4096)


def test_recent_chunks_are_served_from_memory_within_its_bound(tmp_path, disk_reads):
    data = os.urandom(6 * 4096)
    source = CountingSource({"seg": data})

    async def scenario():
        cache = two_chunks_in_memory(tmp_path, source)
        for index in range(6):
            await cache.get("seg", index, len(data))
        recent = [await cache.get("seg", 5, len(data)) for _ in range(4)]  # a reader's four reads of it
        reads_of_recent = len(disk_reads)
        old = await cache.get("seg", 0, len(data))  # beyond the memory bound: from disk, once
        old_again = await cache.get("seg", 0, len(data))
        cache.invalidate("seg", 0)  # found corrupt: the memory copy goes too
        refetched = await cache.get("seg", 0, len(data))
        await cache.close()
        return recent, reads_of_recent, old, old_again, refetched

    recent, reads_of_recent, old, old_again, refetched = asyncio.run(scenario())
    assert recent == [data[5 * 4096:]] * 4 and reads_of_recent == 0
    assert bytes(old) == bytes(old_again) == refetched == data[:4096]
    assert len(disk_reads) == 1
    assert len(source.gets) == 7  # six chunks, and chunk 0 again after the invalidation


def test_a_sequential_reader_has_its_read_ahead_chunks_past_the_current_one_loading(tmp_path):
    async def scenario():
        logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": -1,
                                                     "segment.bytes": 64 * 1024})
        plog = logs.log("t", 0)
        acked = produce(plog, 40, value_size=400)  # about 70 KiB: one full segment and a bit
        seal_active(plog)
        store = LocalFolderStore(str(tmp_path / "bucket"))
        tiering, reader = make_reader(tmp_path, logs, store, chunk_bytes=4096, readahead=2)
        await tiering.open()
        await tiering.run_once()
        first = await reader.read("t", 0, 0, 6000)  # three batches: ends inside chunk 1
        await asyncio.sleep(0.2)  # the read-ahead lands
        key = tiering.remote_segments("t", 0)[0].key("log")
        # The folder store's chunks are its files mapped, held in memory (not on the cache's disk).
        cached = sorted(chunk.chunk_index for chunk in reader.remote.cache._memory if chunk.object_key == key)
        seen = await read_all(reader, max_bytes=5000)
        await tiering.close()
        await reader.remote.cache.close()
        await store.close()
        return len(first.records), cached, acked, seen

    first_bytes, cached, acked, seen = asyncio.run(scenario())
    assert 4096 < first_bytes <= 6000
    assert cached == [0, 1, 2, 3]  # read: 0 and 1; read ahead: the two after chunk 1
    assert seen == acked


def test_read_ahead_brings_chunks_cached_on_disk_into_memory(tmp_path, disk_reads):
    data = os.urandom(4 * 4096)
    source = CountingSource({"seg": data})

    async def scenario():
        cache = two_chunks_in_memory(tmp_path, source)
        for index in range(4):  # on disk: all four; in memory: chunks 2 and 3
            await cache.get("seg", index, len(data))
        cache.prefetch("seg", 0, 2, len(data))
        cache.prefetch("seg", 0, 2, len(data))  # asked twice while loading: read once
        await asyncio.sleep(0.1)
        reads_after_prefetch = len(disk_reads)
        chunks = [await cache.get("seg", index, len(data)) for index in (0, 1)]
        await cache.close()
        return reads_after_prefetch, chunks

    reads_after_prefetch, chunks = asyncio.run(scenario())
    assert reads_after_prefetch == 2
    assert len(disk_reads) == 2  # the reader found both in memory
    assert b"".join(chunks) == data[: 2 * 4096]
    assert len(source.gets) == 4


def test_read_ahead_runs_on_into_the_next_segment(tmp_path):
    async def scenario():
        logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": -1,
                                                     "segment.bytes": 16 * 1024})
        plog = logs.log("t", 0)
        acked = produce(plog, 30, value_size=400)  # about 50 KiB: three full segments and a bit
        seal_active(plog)
        store = FaultInjectingStore(LocalFolderStore(str(tmp_path / "bucket")))
        tiering, reader = make_reader(tmp_path, logs, store, chunk_bytes=4096, readahead=2)
        await tiering.open()
        await tiering.run_once()
        first, second = tiering.remote_segments("t", 0)[:2]
        seen, offset = [], 0
        while offset < first.next_offset:  # a consumer's reads to the end of the first segment
            result = await reader.read("t", 0, offset, 4000)
            seen += split(result.records)
            offset = int.from_bytes(seen[-1][:8], "big") + 4
            await asyncio.sleep(0.05)  # as between a consumer's fetches: the read-ahead lands
        gets_before = store.calls.get("get", 0)
        crossing = await reader.read("t", 0, second.base_offset, 3000)
        gets_for_crossing = store.calls.get("get", 0) - gets_before
        rest = await read_all(reader, start=0, max_bytes=4000)
        await tiering.close()
        await reader.remote.cache.close()
        await store.close()
        return gets_for_crossing, crossing, second.base_offset, acked, rest

    gets_for_crossing, crossing, second_base, acked, rest = asyncio.run(scenario())
    assert int.from_bytes(crossing.records[:8], "big") == second_base
    assert gets_for_crossing == 0  # its offset index and first chunk were read ahead
    assert rest == acked


def test_bytes_checked_once_are_served_again_unchecked_until_their_chunk_is_dropped(tmp_path, monkeypatch):
    import fetch.remote as remote

    checks: list[int] = []
    validate = remote.validate_batches
    monkeypatch.setattr(remote, "validate_batches", lambda data, **kw: checks.append(len(data)) or validate(data, **kw))

    async def scenario():
        logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": -1,
                                                     "segment.bytes": 64 * 1024})
        plog = logs.log("t", 0)
        produce(plog, 40, value_size=400)
        seal_active(plog)
        store = FaultInjectingStore(LocalFolderStore(str(tmp_path / "bucket")))
        tiering, reader = make_reader(tmp_path, logs, store, chunk_bytes=4096, readahead=0)
        await tiering.open()
        await tiering.run_once()
        first = await reader.read("t", 0, 0, 6000)
        again = await reader.read("t", 0, 0, 6000)
        checks_before_drop = len(checks)
        key = tiering.remote_segments("t", 0)[0].key("log")
        reader.remote.cache.invalidate(key, 0)  # evicted: it comes back from the store...
        store.corrupt_next_gets(1)  # ...with a flipped byte, which must not be served
        with pytest.raises(RemoteDataError):
            await reader.read("t", 0, 0, 6000)
        after = await reader.read("t", 0, 0, 6000)
        await tiering.close()
        await reader.remote.cache.close()
        await store.close()
        return first, again, checks_before_drop, after

    first, again, checks_before_drop, after = asyncio.run(scenario())
    assert first.records == again.records == after.records
    assert checks_before_drop == 1  # the second read of the same bytes was not checked again
    # The corrupt copy (its first offset flipped) was refused by its header, the good one checked.
    assert len(checks) == 2
