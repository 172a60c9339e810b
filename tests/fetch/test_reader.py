"""The read path over both tiers, as a consumer sees it."""

import asyncio

import pytest

from fetch.chunk_cache import ChunkCache
from fetch.index_cache import RemoteDataError, RemoteIndexCache
from fetch.reader import Reader
from fetch.remote import RemoteReader
from hotlog.errors import OffsetOutOfRangeError
from hotlog.records import Record, build_batch, decode_batches
from tests.tiering.support import digest, open_logs, produce, seal_active, split
from tiering.manager import TieringManager
from tiering.wrappers import FaultInjectingStore

TIERED = {"local.retention.bytes": 4096, "retention.ms": -1}


def make_reader(tmp_path, logs, store, *, chunk_bytes=2048, readahead=2):
    tiering = TieringManager(logs, store, task_interval_ms=10)
    cache = ChunkCache.for_store(str(tmp_path / "chunks"), store, chunk_bytes=chunk_bytes, max_bytes=64 * chunk_bytes)
    remote = RemoteReader(cache, RemoteIndexCache(store), readahead_chunks=readahead)
    return tiering, Reader(logs, tiering, remote)


async def read_all(reader, topic="t", partition=0, start=None, max_bytes=3000, **kwargs):
    """(base offset, digest) of every batch from `start`, reading as a consumer loops."""
    offset = reader.log_start_offset(topic, partition) if start is None else start
    seen = []
    while offset < reader.high_watermark(topic, partition):
        result = await reader.read(topic, partition, offset, max_bytes, **kwargs)
        batches = split(result.records)
        assert batches, f"no progress at offset {offset}"
        for batch in batches:
            header_offset = int.from_bytes(batch[:8], "big")
            seen.append((header_offset, digest(batch)))
        offset = int.from_bytes(batches[-1][:8], "big") + int.from_bytes(batches[-1][23:27], "big") + 1
    return seen


def test_a_replay_from_zero_reads_every_batch_once_across_both_tiers(tmp_path, make_store):
    async def scenario():
        logs = open_logs(tmp_path / "data", configs=TIERED)
        plog = logs.log("t", 0)
        acked = produce(plog, 60)
        seal_active(plog)
        store = make_store()
        tiering, reader = make_reader(tmp_path, logs, store)
        await tiering.open()
        await tiering.run_once()
        assert plog.log_start_offset > 0, "local retention should have removed tiered segments"
        assert reader.log_start_offset("t", 0) == 0
        assert reader.local_log_start_offset("t", 0) == plog.log_start_offset
        assert reader.last_tiered_offset("t", 0) == tiering.remote_segments("t", 0)[-1].next_offset - 1
        assert reader.last_tiered_offset("t", 0) >= plog.log_start_offset - 1
        seen = await read_all(reader)
        await tiering.close()
        await reader.remote.cache.close()
        await store.close()
        return acked, seen

    acked, seen = asyncio.run(scenario())
    assert seen == acked


def test_timestamps_and_out_of_range_work_across_tiers(tmp_path, make_store):
    async def scenario():
        logs = open_logs(tmp_path / "data", configs={**TIERED, "retention.bytes": 16_000})
        plog = logs.log("t", 0)
        produce(plog, 20, timestamp=1_000_000)
        produce(plog, 20, timestamp=2_000_000)
        seal_active(plog)
        produce(plog, 5, timestamp=3_000_000)
        store = make_store()
        tiering, reader = make_reader(tmp_path, logs, store)
        await tiering.open()
        await tiering.run_once()
        await tiering.run_once()
        start = reader.log_start_offset("t", 0)
        remote_hit = await reader.offset_for_timestamp("t", 0, 2_000_001)
        local_hit = await reader.offset_for_timestamp("t", 0, 3_000_002)
        none = await reader.offset_for_timestamp("t", 0, 9_000_000)
        with pytest.raises(OffsetOutOfRangeError):
            await reader.read("t", 0, start - 1, 1000) if start > 0 else await reader.read("t", 0, 10**6, 1000)
        local_start = plog.log_start_offset
        await tiering.close()
        await reader.remote.cache.close()
        await store.close()
        return start, local_start, remote_hit, local_hit, none

    start, local_start, remote_hit, local_hit, none = asyncio.run(scenario())
    assert start > 0, "remote retention.bytes should have removed the oldest segments"
    assert remote_hit is not None and remote_hit.offset < local_start, "the answer comes from a remote segment"
    # offsets 80..159 hold timestamps 2_000_000 + offset % 4; retention removed those below `start`
    expected = next(o for o in range(max(start, 80), 160) if o % 4 >= 1)
    assert (remote_hit.offset, remote_hit.timestamp) == (expected, 2_000_000 + expected % 4)
    assert local_hit is not None and (local_hit.offset, local_hit.timestamp) == (160 + 2, 3_000_002)
    assert none is None


def test_corrupt_data_from_the_store_is_not_served_and_the_next_read_succeeds(tmp_path):
    from tiering.local_store import LocalFolderStore

    async def scenario():
        logs = open_logs(tmp_path / "data", configs=TIERED)
        plog = logs.log("t", 0)
        acked = produce(plog, 30)
        seal_active(plog)
        store = FaultInjectingStore(LocalFolderStore(str(tmp_path / "bucket")))
        tiering, reader = make_reader(tmp_path, logs, store)
        await tiering.open()
        await tiering.run_once()
        errors = 0
        for _ in range(3):  # each chunk GET comes back with a flipped byte
            store.corrupt_next_gets(1)
            with pytest.raises(RemoteDataError):
                await reader.read("t", 0, 0, 3000)
            errors += 1
        seen = await read_all(reader)
        await tiering.close()
        await reader.remote.cache.close()
        return acked, seen, errors

    acked, seen, errors = asyncio.run(scenario())
    assert errors == 3
    assert seen == acked


def test_a_consumer_racing_tiering_and_local_deletion_sees_each_offset_once_in_order(tmp_path, make_store):
    async def scenario():
        logs = open_logs(tmp_path / "data", configs=TIERED)
        plog = logs.log("t", 0)
        store = make_store()
        tiering, reader = make_reader(tmp_path, logs, store)
        await tiering.open()
        acked: list = []
        done = asyncio.Event()

        async def producer():
            for round_ in range(12):
                acked.extend(produce(plog, 6, tag=f"r{round_}"))
                seal_active(plog)
                await tiering.run_once()  # uploads, then deletes local copies behind the reader
                await asyncio.sleep(0)
            done.set()

        async def consumer():
            seen, offset = [], 0
            while not (done.is_set() and offset >= plog.high_watermark):
                result = await reader.read("t", 0, offset, 1500)
                for batch in split(result.records):
                    seen.append((int.from_bytes(batch[:8], "big"), digest(batch)))
                if seen:
                    offset = seen[-1][0] + 4  # four records a batch
                await asyncio.sleep(0)
            return seen

        _, seen = await asyncio.gather(producer(), consumer())
        remote_segments = len(tiering.remote_segments("t", 0))
        await tiering.close()
        await reader.remote.cache.close()
        await store.close()
        return acked, seen, remote_segments, plog.log_start_offset

    acked, seen, remote_segments, local_start = asyncio.run(scenario())
    assert remote_segments > 3 and local_start > 0
    assert seen == acked


def test_read_committed_replay_from_the_store_drops_nothing_and_reports_aborts(tmp_path, make_store):
    async def scenario():
        logs = open_logs(tmp_path / "data", configs=TIERED)
        plog = logs.log("t", 0)
        def txn(seq: int) -> bytes:
            return build_batch([Record(None, b"x" * 300)], producer_id=3, producer_epoch=0, base_sequence=seq,
                               transactional=True)
        plog.append(txn(0))
        plog.append(txn(1))
        plog.append_marker(3, 0, commit=False, coordinator_epoch=0)
        produce(plog, 30)
        seal_active(plog)
        produce(plog, 2)
        store = make_store()
        tiering, reader = make_reader(tmp_path, logs, store)
        await tiering.open()
        await tiering.run_once()
        first = await reader.read("t", 0, 0, 100_000, read_committed=True)
        await tiering.close()
        await reader.remote.cache.close()
        await store.close()
        return first, plog.log_start_offset

    first, local_start = asyncio.run(scenario())
    assert local_start > 0
    assert [(t.producer_id, t.first_offset, t.last_offset) for t in first.aborted] == [(3, 0, 2)]
    assert [b.header.base_offset for b in decode_batches(first.records)][:3] == [0, 1, 2]
