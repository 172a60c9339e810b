"""Reads of a cleaned log: a stretch of header-only batches (a clean keeps the last batch
of a group and of each producer, records gone) is read through to the next batch with
records, locally and in the bucket, so a client never gets a fetch with bytes but no
record (librdkafka takes that for a batch too large and, after ten, fails the partition);
a reader racing cleans in the bucket sees each offset once, each key's versions in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from fetch.reader import Reader
from hotlog.log import PartitionLog
from hotlog.manager import LogManager
from hotlog.records import Record, build_batch, decode_batches
from hotlog.segment import FileSlice
from tiering.local_store import LocalFolderStore
from tiering.manager import TieringManager
from tiering.store import ObjectStore
from tiering.wrappers import FaultInjectingStore

from ..hotlog.cleaner_support import COMPACT
from ..tiering.compaction_support import TIERED_TABLE, Entry, GatedStore, produce_history
from ..tiering.support import seal_active
from .test_reader import make_reader

ROUNDS = 40
KEYS = 3


@pytest.mark.parametrize("max_bytes", [1 << 20, 100])  # 100: a stretch of two headers is past the fetch's size
def test_a_fetch_reads_past_header_only_batches_to_the_next_record(tmp_path, max_bytes: int) -> None:
    logs = LogManager(str(tmp_path)).open()
    logs.create_topic("table", 1, {**COMPACT, "delete.retention.ms": 0})
    plog = logs.log("table", 0)
    for version in range(ROUNDS):
        for k in range(KEYS):
            plog.append(build_batch([Record(b"k%d" % k, b"v%d-%d" % (k, version), (), 0)]))
    plog.roll()
    plog.flush()

    async def scenario() -> None:
        while await logs.clean_once() is not None:
            pass
        empty_stretch = [s for s in plog.segments[:-1] if not list(_records(s.read(s.base_offset, 1 << 20)))]
        assert empty_stretch, "the clean left no segment of header-only batches: nothing to read through"
        reader = Reader(logs)
        offset, seen = 0, []
        while offset < plog.log_end_offset:
            result = await reader.read("table", 0, offset, max_bytes)
            batches = list(decode_batches(result.records))
            records = [r for b in batches for r in b.records]
            assert records, f"a fetch at {offset} held bytes but no record"
            seen += [(r.offset, r.key, r.value) for r in records]
            offset = batches[-1].header.last_offset + 1
        assert [o for o, _, _ in seen] == sorted({o for o, _, _ in seen})
        assert {k: v for _, k, v in seen} == {b"k%d" % k: b"v%d-%d" % (k, ROUNDS - 1) for k in range(KEYS)}

    asyncio.run(scenario())
    logs.close()


def _records(found: FileSlice | None) -> list[Record]:
    return [] if found is None else [r for b in decode_batches(found.read()) for r in b.records]


class _Table(NamedTuple):
    plog: PartitionLog
    tiering: TieringManager
    reader: Reader
    last: dict[bytes, Entry]  # each key's last record


@contextlib.asynccontextmanager
async def _tiered_table(tmp_path: Path, store: ObjectStore, *, keys: int = 8, versions: int = 40, per_batch: int = 5,
                        configs: dict[str, Any] | None = None, chunk_bytes: int = 2048) -> AsyncIterator[_Table]:
    """A tiered compacted partition of keyed history, uploaded, its local copies dropped by
    the next pass, with a reader over both tiers; all closed on the way out."""
    logs = LogManager(str(tmp_path / "data")).open()
    logs.create_topic("t", 1, {**TIERED_TABLE, "local.retention.bytes": 0, **(configs or {})})
    plog = logs.log("t", 0)
    last = produce_history(plog, keys, versions, per_batch=per_batch, tombstone_key=None)
    seal_active(plog)
    tiering, reader = make_reader(tmp_path, logs, store, chunk_bytes=chunk_bytes)
    try:
        await tiering.open()
        await tiering.run_once()
        yield _Table(plog, tiering, reader, last)
    finally:
        await tiering.close()
        assert reader.remote is not None
        await reader.remote.cache.close()
        await store.close()
        logs.close()


def test_header_only_batches_in_the_bucket_are_read_through_too(tmp_path) -> None:
    async def scenario() -> None:
        async with _tiered_table(tmp_path, LocalFolderStore(str(tmp_path / "bucket")), keys=KEYS, versions=ROUNDS,
                                 per_batch=1) as table:
            assert await table.tiering.clean_once() is not None
            await table.tiering.run_once()  # local retention: the cleaned log is read from the bucket
            assert table.plog.log_start_offset == table.tiering.remote_end_offset("t", 0)
            seen = await _read_records(table.reader, 1 << 20)
            assert {key: (offset, value) for offset, key, value in seen} == {
                key: (e.offset, e.value) for key, e in table.last.items()}

    asyncio.run(scenario())


def test_the_chunk_cache_never_serves_a_replaced_segments_bytes(tmp_path) -> None:
    """A reader whose cache holds the old segments' chunks reads the cleaned log after a
    clean: the cleaned segments' objects have keys of their own."""
    async def scenario() -> None:
        async with _tiered_table(tmp_path, LocalFolderStore(str(tmp_path / "bucket"))) as table:
            before = await _read_records(table.reader, 1 << 20)  # the old segments' chunks are cached now
            assert len(before) == 8 * 40
            assert await table.tiering.clean_once() is not None
            after = await _read_records(table.reader, 1 << 20)
            assert after == sorted((e.offset, k, e.value) for k, e in table.last.items())

    asyncio.run(scenario())


def test_a_reader_racing_cleans_in_the_bucket_sees_each_offset_once_and_never_an_older_value(
        tmp_path, make_store) -> None:
    """A consumer reads the bucket in small fetches while cleans swap its segments and
    delete the replaced objects at once (file.delete.delay.ms=0): reads in flight finish
    on what they started, the next ones go to the cleaned segments."""
    async def scenario() -> None:
        store = FaultInjectingStore(make_store())
        async with _tiered_table(tmp_path, store, configs={"file.delete.delay.ms": 0}, chunk_bytes=512) as table:
            tiering, plog, last = table.tiering, table.plog, table.last
            store.delay_s = 0.002  # reads stay in flight while a clean commits
            cleans = 0

            async def clean_on() -> None:
                nonlocal cleans
                for round_ in range(3):
                    cleans += await tiering.clean_once() is not None
                    await tiering.run_once()  # deletes what was replaced
                    last.update(produce_history(plog, 8, 10, tag=f"r{round_}-", tombstone_key=None))
                    seal_active(plog)
                    await tiering.run_once()

            cleaner = asyncio.create_task(clean_on())
            seen = await _read_records(table.reader, 300, until=cleaner)
            await cleaner
            assert cleans == 3
            versions: dict[bytes, int] = {}
            for _, key, value in seen:
                assert value is not None and key is not None
                number = _number(value)
                assert number > versions.get(key, -1), f"{key!r}: {value!r} after a newer version"
                versions[key] = number
            assert {key: value for _, key, value in seen if key in last} == {k: e.value for k, e in last.items()}

    asyncio.run(scenario())


def test_a_read_whose_segment_was_replaced_and_deleted_under_it_reads_the_replacement(tmp_path) -> None:
    """A read that found its segment before a clean replaced it, and got to the store only
    after the replaced objects were gone (file.delete.delay.ms=0): it reads the cleaned
    segment instead, at the same offset."""
    async def scenario() -> None:
        store = GatedStore(LocalFolderStore(str(tmp_path / "bucket")))
        async with _tiered_table(tmp_path, store, configs={"file.delete.delay.ms": 0}) as table:
            tiering, reader = table.tiering, table.reader
            old = tiering.remote_segments("t", 0)[0]
            store.gated = lambda operation, key: key == old.key("index")  # the reader's; the clean GETs `.log`s
            read = asyncio.create_task(reader.read("t", 0, 0, 1 << 20))
            await store.waiting.wait()
            assert await tiering.clean_once() is not None
            await tiering.run_once()
            assert not await store.list(old.key("index")), "the replaced segment should be gone"
            store.gate.set()
            result = await read
            records = [r for b in decode_batches(result.records) for r in b.records]
            assert records and {(r.key, r.value) for r in records} <= {(k, e.value) for k, e in table.last.items()}
            assert result.records == (await reader.read("t", 0, 0, 1 << 20)).records  # as a read begun now

    asyncio.run(scenario())


async def _read_records(reader: Reader, max_bytes: int,
                        until: asyncio.Task[None] | None = None) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record from the log start on, fetch after fetch as a consumer reads (until
    `until` is done as well); asserts that each fetch holds a record and offsets increase."""
    offset, seen = reader.log_start_offset("t", 0), []
    while offset < reader.high_watermark("t", 0) or (until is not None and not until.done()):
        if offset >= reader.high_watermark("t", 0):
            await asyncio.sleep(0.005)
            continue
        result = await reader.read("t", 0, offset, max_bytes)
        batches = list(decode_batches(result.records))
        records = [r for b in batches for r in b.records]
        assert records, f"a fetch at {offset} held bytes but no record"
        assert records[0].offset >= offset
        seen += [(r.offset, r.key, r.value) for r in records]
        offset = batches[-1].header.last_offset + 1
    offsets = [o for o, _, _ in seen]
    assert offsets == sorted(set(offsets)), "an offset twice, or going back"
    return seen


def _number(value: bytes) -> int:
    """The order of a produce_history value (`v<key>-<version>`, then `r<round>-<key>-<version>`)."""
    text = value[: len(value) // 8].decode()
    if text.startswith("v"):
        return int(text.split("-")[1])
    round_, _, version = text[1:].split("-")
    return (int(round_) + 1) * 1000 + int(version)
