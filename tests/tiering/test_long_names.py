"""Topic names as long as Kafka allows (249 characters), on both stores: every file and
object name they make fits, they are tiered, read back, restored and deleted like any
other, and a bucket whose keys the previous version wrote still restores."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from hotlog.manager import LogManager
from tiering.metadata import TOPICS_PREFIX, legacy_topic_folder
from tiering.store import ObjectStore

from .conftest import StoreFactory
from .support import open_logs, opened, produce, read_both_tiers, seal_active

LONGEST = "L" * 249
TIERED = {"local.retention.bytes": 0, "retention.ms": -1}  # once uploaded, segments leave the disk


async def keys(store: ObjectStore) -> list[str]:
    return [o.key for o in await store.list("")]


def move_to_an_empty_machine(logs: LogManager, path: Path) -> LogManager:
    """Stop the old machine's logs; the new one's are empty until the bucket restores them."""
    logs.close()
    return open_logs(path, create=False)


def test_a_topic_of_249_characters_is_tiered_read_back_restored_and_deleted(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", LONGEST, 2, TIERED)
    logs.create_topic("short", 1, TIERED)
    acked = {p: produce(logs.log(LONGEST, p), 30, tag=f"p{p}") for p in range(2)}
    for p in range(2):
        seal_active(logs.log(LONGEST, p))
    assert {f"{LONGEST}-0", f"{LONGEST}-1"} <= set(os.listdir(tmp_path / "data")), "Kafka's folder names"

    async def first_life() -> None:
        store = make_store()
        async with opened(logs, store) as manager:
            await manager.run_once()
            for p in range(2):
                plog = logs.log(LONGEST, p)
                assert len(manager.remote_segments(LONGEST, p)) >= 5
                assert plog.log_start_offset == manager.remote_end_offset(LONGEST, p), "local copies deleted"
                assert await read_both_tiers(manager, store, LONGEST, p) == acked[p]
            every = await keys(store)
            assert any(LONGEST[:150] in k for k in every)
            assert all(len(part.encode()) <= 255 for k in every for part in k.split("/"))

    asyncio.run(first_life())
    fresh = move_to_an_empty_machine(logs, tmp_path / "empty-machine")

    async def second_life() -> None:
        store = make_store()
        async with opened(fresh, store) as manager:
            assert set(fresh.topics) == {LONGEST, "short"}, "restored under its full name"
            for p in range(2):
                assert await read_both_tiers(manager, store, LONGEST, p) == acked[p]
            fresh.delete_topic(LONGEST)
            await manager.run_once()
            left = await keys(store)
            assert left and not any(LONGEST[:150] in k for k in left), "its records and objects are gone"
            assert [k for k in left if k.startswith(TOPICS_PREFIX)] == [
                f"{TOPICS_PREFIX}short-{fresh.topics['short'].topic_id}.json"]

    asyncio.run(second_life())
    assert not [n for n in os.listdir(tmp_path / "empty-machine") if n.startswith("LLL")], "gone locally too"
    fresh.close()


def test_a_bucket_the_previous_version_wrote_restores_and_is_written_where_it_was(
        tmp_path, make_store: StoreFactory) -> None:
    store = make_store()
    # The previous version named a topic's objects `<topic>-<topic id>` whatever its length:
    # in S3 a long name did fit. A folder store could hold only names that still fit today.
    name = "orders" if "file:" in store.url else "o" * 230
    logs = open_logs(tmp_path / "data", name, 1, TIERED)
    topic = logs.topics[name]
    acked = produce(logs.log(name, 0), 30)
    seal_active(logs.log(name, 0))
    folder = legacy_topic_folder(name, topic.topic_id)
    # A topic record as that version wrote it: no folder.
    old_record = {"version": 1, "name": name, "topic_id": str(topic.topic_id), "partitions": 1,
                  "configs": topic.overrides, "state": "LIVE"}

    async def upgraded() -> None:
        await store.put(f"{TOPICS_PREFIX}{folder}.json", json.dumps(old_record, sort_keys=True).encode())
        async with opened(logs, store) as manager:
            await manager.run_once()
            assert manager.remote_segments(name, 0)
            segment_keys = [k for k in await keys(store) if not k.startswith(TOPICS_PREFIX)]
            assert segment_keys and all(k.startswith(f"{folder}/0/") for k in segment_keys)
            assert [k for k in await keys(store) if k.startswith(TOPICS_PREFIX)] == [f"{TOPICS_PREFIX}{folder}.json"]

    asyncio.run(upgraded())
    fresh = move_to_an_empty_machine(logs, tmp_path / "empty-machine")

    async def restored() -> None:
        new_store = make_store()
        async with opened(fresh, new_store) as manager:
            assert fresh.topics[name].topic_id == topic.topic_id
            assert await read_both_tiers(manager, new_store, name, 0) == acked

    asyncio.run(restored())
    fresh.close()

