"""The scrubber against the local folder and moto's S3 server: a flipped byte in the
bucket is mended from the local copy while it exists, and reported (once) when not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import NamedTuple

from prometheus_client import REGISTRY

from hotlog.manager import LogManager
from tiering.manager import TieringManager
from tiering.scrubber import Scrubber
from tiering.store import ObjectStore

from .conftest import StoreFactory
from .support import open_logs, opened, produce

UNPACED = 0  # bytes per second: no pacing in tests


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Tiered(NamedTuple):
    manager: TieringManager
    store: ObjectStore
    scrubber: Scrubber


@contextlib.asynccontextmanager
async def tiered(logs: LogManager, make_store: StoreFactory) -> AsyncIterator[Tiered]:
    """The topic's sealed segments uploaded (one tiering pass), and a scrubber over both tiers."""
    store = make_store()
    async with opened(logs, store) as manager:
        await manager.run_once()
        yield Tiered(manager, store, Scrubber(logs, manager, bytes_per_second=UNPACED, interval_ms=60_000))


async def flip_a_byte(store: ObjectStore, key: str, position: int) -> bytes:
    good = await store.get(key)
    await store.put(key, good[:position] + bytes([good[position] ^ 0x01]) + good[position + 1:])
    return good


def test_a_corrupt_object_is_uploaded_again_from_its_local_copy(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data")
    produce(logs.log("t", 0), 40)

    async def scenario() -> None:
        async with tiered(logs, make_store) as (manager, store, scrubber):
            remote = manager.remote_segments("t", 0)
            assert len(remote) >= 3
            clean = await scrubber.scrub_once()
            assert clean.remote_corrupt == 0
            assert clean.remote_bytes == sum(f.size for r in remote for f in r.files.values())

            good_log = await flip_a_byte(store, remote[1].key("log"), 70)
            good_index = await flip_a_byte(store, remote[2].key("index"), 3)
            repaired_before = sample("tierlog_scrub_repaired_total", {"tier": "remote"})
            report = await scrubber.scrub_once()
            assert (report.remote_corrupt, report.remote_repaired) == (2, 2)
            assert await store.get(remote[1].key("log")) == good_log
            assert await store.get(remote[2].key("index")) == good_index
            assert sample("tierlog_scrub_repaired_total", {"tier": "remote"}) - repaired_before == 2
            assert (await scrubber.scrub_once()).remote_corrupt == 0

    asyncio.run(scenario())


def test_a_corrupt_object_without_a_local_copy_is_reported_once(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": -1})
    produce(logs.log("t", 0), 40)

    async def scenario() -> None:
        async with tiered(logs, make_store) as (manager, store, scrubber):
            remote = manager.remote_segments("t", 0)
            local_bases = {s.base_offset for s in logs.log("t", 0).segments}
            assert remote[0].base_offset not in local_bases
            good = await flip_a_byte(store, remote[0].key("log"), 100)
            corrupt_before = sample("tierlog_scrub_corrupt_total", {"tier": "remote"})
            for _ in range(2):
                report = await scrubber.scrub_once()
                assert (report.remote_corrupt, report.remote_repaired) == (1, 0)
            assert sample("tierlog_scrub_corrupt_total", {"tier": "remote"}) - corrupt_before == 1
            assert await store.get(remote[0].key("log")) != good  # nothing made up

    asyncio.run(scenario())


def flip_a_local_byte(path: str, position: int) -> bytes:
    with open(path, "r+b") as f:
        good = f.read()
        f.seek(position)
        f.write(bytes([good[position] ^ 0x01]))
    return good


def test_a_corrupt_local_segment_is_replaced_by_the_buckets_copy(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data")
    produce(logs.log("t", 0), 40)

    async def scenario() -> None:
        async with tiered(logs, make_store) as (manager, store, scrubber):
            plog = logs.log("t", 0)
            segment = next(s for s in plog.segments if s.sealed)
            good = flip_a_local_byte(segment.log_path, 100)
            repaired_before = sample("tierlog_scrub_repaired_total", {"tier": "local"})
            report = await scrubber.scrub_once()
            assert (report.local_corrupt, report.local_repaired) == (1, 1)
            assert report.local_bytes == sum(s.size for s in plog.segments if s.sealed)
            with open(segment.log_path, "rb") as f:
                assert f.read() == good
            assert sample("tierlog_scrub_repaired_total", {"tier": "local"}) - repaired_before == 1
            replaced = next(s for s in plog.segments if s.base_offset == segment.base_offset)
            assert replaced.corrupt_at is None
            assert replaced.read(segment.base_offset, 1 << 20).read()[:200] == good[:200]
            assert (await scrubber.scrub_once()).local_corrupt == 0

    asyncio.run(scenario())


def test_a_corrupt_local_segment_not_in_the_bucket_is_refused_and_reported_once(tmp_path) -> None:
    logs = open_logs(tmp_path / "data", configs={"remote.storage.enable": False})
    plog = logs.log("t", 0)
    produce(plog, 40)

    async def scenario() -> None:
        segment = next(s for s in plog.segments if s.sealed)
        flip_a_local_byte(segment.log_path, 100)
        scrubber = Scrubber(logs, None, bytes_per_second=UNPACED, interval_ms=60_000)
        corrupt_before = sample("tierlog_scrub_corrupt_total", {"tier": "local"})
        for _ in range(2):
            report = await scrubber.scrub_once()
            assert (report.local_corrupt, report.local_repaired) == (1, 0)
        assert sample("tierlog_scrub_corrupt_total", {"tier": "local"}) - corrupt_before == 1
        assert segment.corrupt_at == 0  # the first batch holds the flipped byte: nothing of it is served

    asyncio.run(scenario())
