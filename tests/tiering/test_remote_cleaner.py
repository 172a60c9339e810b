"""Compaction in the bucket: a tiered compacted topic's remote segments are cleaned and
swapped under the commit protocol (one PUT per cleaned group, the replaced objects kept
file.delete.delay.ms), local copies with them; a restore gives the compacted log; a
commit that may have failed is resolved; a clean stopped between two commits leaves the rest
dirty; retention leaves a compact-only log alone."""

from __future__ import annotations

import asyncio
import time

from hotlog.manager import LogManager
from tiering.local_store import LocalFolderStore
from tiering.manager import TieringManager
from tiering.metadata import RemoteSegment, SegmentState
from tiering.store import ObjectStore, TransientStoreError
from tiering.wrappers import DelegatingStore, FaultInjectingStore

from .compaction_support import TIERED_TABLE, GatedStore, assert_compacted, produce_history, remote_entries
from .conftest import StoreFactory
from .support import open_logs, seal_active

DAY_MS = 86_400_000


async def tiered_history(tmp_path, store, *, keys: int = 10, versions: int = 30,
                         configs: dict | None = None) -> tuple[LogManager, TieringManager, dict]:
    logs = open_logs(tmp_path / "data", configs={**TIERED_TABLE, **(configs or {})})
    plog = logs.log("t", 0)
    last = produce_history(plog, keys, versions)
    seal_active(plog)
    manager = TieringManager(logs, store, task_interval_ms=10)
    await manager.open()
    await manager.run_once()
    assert manager.remote_end_offset("t", 0) == plog.log_end_offset
    return logs, manager, last


def test_the_bucket_is_compacted_and_the_replaced_objects_go_after_the_delete_delay(
        tmp_path, make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = make_store()
        logs, manager, last = await tiered_history(tmp_path, store)
        plog = logs.log("t", 0)
        before = manager.remote_segments("t", 0)
        history = await remote_entries(manager, store)
        local_before = plog.size_bytes
        result = await manager.clean_once()
        assert result is not None and result.cleaned_to == plog.log_end_offset
        after = manager.remote_segments("t", 0)
        entries = await remote_entries(manager, store)
        assert len(entries) < len(history) // 10
        assert_compacted(entries, last, below=plog.log_end_offset)
        assert {e.key for e in entries} == {k for k, e in last.items() if e.value is not None}
        assert after[0].base_offset == before[0].base_offset and after[-1].next_offset == before[-1].next_offset
        assert all(s.replaces for s in after)
        # The local copies were swapped for the cleaned segments too.
        assert plog.size_bytes < local_before // 5
        # The replaced objects stay for readers on them, then go.
        old_keys = [f.key for s in before for f in s.files.values()]
        assert all(await asyncio.gather(*(store.head(k) for k in old_keys[:3])))
        await manager.run_once()
        assert len(await store.list(before[0].key("log"))) == 1
        await manager.run_once(now_ms=int(time.time() * 1000) + 61_000)
        for key in old_keys:
            assert not await store.list(key), f"{key} outlived file.delete.delay.ms"
        state = manager.remote_partition("t", 0)
        assert state is not None
        records = [o.key for o in await store.list(state.prefix + "meta/")]
        assert len(records) == len(after)
        assert await manager.clean_once() is None  # nothing dirty is left
        # Cleaned segments are small: the next clean merges them (Kafka's groupSegmentsBySize).
        last.update(produce_history(plog, 10, 30, tag="w", tombstone_key=None))
        seal_active(plog)
        await manager.run_once()
        grown = manager.remote_segments("t", 0)
        assert await manager.clean_once() is not None
        merged = manager.remote_segments("t", 0)
        assert len(merged) < len(grown) and any(len(s.replaces) > 1 for s in merged)
        assert_compacted(await remote_entries(manager, store), last, below=plog.log_end_offset)
        await manager.close()
        await store.close()

    asyncio.run(scenario())


def test_a_restore_from_the_bucket_gives_the_compacted_log(tmp_path, make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = make_store()
        logs, manager, last = await tiered_history(tmp_path, store)
        end = logs.log("t", 0).log_end_offset
        await manager.clean_once()
        await manager.close()
        logs.close()
        empty = LogManager(str(tmp_path / "empty")).open()
        restored = TieringManager(empty, store)
        await restored.open()
        assert empty.log("t", 0).log_end_offset == end
        entries = await remote_entries(restored, store)
        assert_compacted(entries, last, below=end)
        assert len(entries) <= len(last)
        await restored.close()
        await store.close()

    asyncio.run(scenario())


def test_cleaned_records_that_lost_their_tombstones_to_a_crash_still_replace_the_old_ones(tmp_path) -> None:
    """A stop between a cleaned segment's commit and its tombstones' PUTs: the next start
    reads the replaced records as tombstones, and the log as the cleaned one."""
    async def scenario() -> None:
        faulty = FaultInjectingStore(_local(tmp_path))
        logs, manager, last = await tiered_history(tmp_path, faulty)
        end = logs.log("t", 0).log_end_offset
        for segment in manager.remote_segments("t", 0):
            faulty.fail_next(1, "put", key_contains=segment.metadata_key)
        assert await manager.clean_once() is not None
        cleaned = manager.remote_segments("t", 0)
        await manager.close()
        logs.close()
        again = TieringManager(LogManager(str(tmp_path / "data")).open(), _local(tmp_path))
        await again.open()
        assert again.remote_segments("t", 0) == cleaned
        state = again.remote_partition("t", 0)
        assert state is not None and state.tombstones
        assert all(t.state is SegmentState.DELETE_STARTED for t in state.tombstones)
        assert_compacted(await remote_entries(again, again.store), last, below=end)
        await again.run_once()
        assert not state.tombstones  # read back after a restart: no reader is on them
        await again.close()

    asyncio.run(scenario())


def test_a_commit_whose_answer_was_lost_is_resolved_before_anything_else(tmp_path) -> None:
    async def scenario() -> None:
        faulty = FaultInjectingStore(_local(tmp_path))
        logs, manager, last = await tiered_history(tmp_path, faulty)
        end = logs.log("t", 0).log_end_offset
        before = manager.remote_segments("t", 0)
        faulty.lose_replies(1, "put", key_contains="/meta/")  # the first group's commit
        assert await manager.clean_once() is None  # the PUT landed, its answer did not
        state = manager.remote_partition("t", 0)
        assert state is not None and state.uncertain_clean is not None
        assert manager.remote_segments("t", 0) == before
        await manager.run_once()  # retention asks the store first
        assert state.uncertain_clean is None
        after = manager.remote_segments("t", 0)
        assert after[0].replaces and after[1:] == before[-len(after) + 1:]
        entries = await remote_entries(manager, faulty)
        assert entries[0].offset >= before[0].base_offset and entries[-1].offset < end
        for key, entry in last.items():
            assert entry.value is None or entry in entries, key
        await manager.close()
        await faulty.close()

    asyncio.run(scenario())


def test_retention_by_time_leaves_a_compact_only_log_in_the_bucket(tmp_path, make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = make_store()
        logs, manager, _ = await tiered_history(tmp_path, store, configs={"retention.ms": 1000})
        before = manager.remote_segments("t", 0)
        await manager.run_once(now_ms=int(time.time() * 1000) + 30 * DAY_MS)
        assert manager.remote_segments("t", 0) == before
        logs.alter_topic_configs("t", {"cleanup.policy": "compact,delete"})
        await manager.run_once(now_ms=int(time.time() * 1000) + 30 * DAY_MS)
        assert manager.remote_segments("t", 0) == []
        await manager.close()
        await store.close()

    asyncio.run(scenario())


def test_a_clean_racing_retention_gives_up_and_leaves_no_object_behind(tmp_path) -> None:
    """compact,delete: retention deletes the segments a clean is rewriting; the clean's
    commit sees it, deletes what it uploaded and stops; the log stays as retention left it."""
    async def scenario() -> None:
        store = GatedStore(_local(tmp_path))
        logs, manager, _ = await tiered_history(tmp_path, store, configs={
            "cleanup.policy": "compact,delete", "retention.ms": DAY_MS})
        store.gated = lambda operation, key: operation == "put" and key.endswith(".timeindex")  # its first upload
        clean = asyncio.create_task(manager.clean_once())
        await store.waiting.wait()
        await manager.run_once(now_ms=int(time.time() * 1000) + 2 * DAY_MS)  # everything expires
        assert manager.remote_segments("t", 0) == []
        store.gate.set()
        assert await clean is None  # abandoned
        state = manager.remote_partition("t", 0)
        assert state is not None and not state.in_flight
        left = [o.key for o in await store.list(state.prefix) if "/meta/" not in o.key]
        assert left == [], f"objects of the abandoned clean or of deleted segments left: {left[:3]}"
        await manager.close()
        await store.close()

    asyncio.run(scenario())


def test_min_compaction_lag_keeps_young_remote_segments_dirty(tmp_path) -> None:
    async def scenario() -> None:
        store = _local(tmp_path)
        _, manager, _ = await tiered_history(tmp_path, store, configs={"min.compaction.lag.ms": DAY_MS})
        assert await manager.clean_once() is None
        result = await manager.clean_once(now_ms=int(time.time() * 1000) + 2 * DAY_MS)
        assert result is not None and result.replaced > 0
        await manager.close()
        await store.close()

    asyncio.run(scenario())


def _local(tmp_path) -> LocalFolderStore:
    return LocalFolderStore(str(tmp_path / "bucket"))


class CommitsRefused(DelegatingStore):
    """Takes the first `allowed` commits of cleaned segments, then refuses every other one
    before it reaches the store: a clean stopped between two of its groups' commits."""

    def __init__(self, inner: ObjectStore, allowed: int) -> None:
        super().__init__(inner)
        self.allowed = allowed

    async def put(self, key: str, data: bytes) -> None:
        if "/meta/" in key:
            record = RemoteSegment.from_json(data, key)
            if record.state is SegmentState.COPY_FINISHED and record.replaces:
                if self.allowed == 0:
                    raise TransientStoreError(f"{key}: refused")
                self.allowed -= 1
        await self.inner.put(key, data)


def test_a_clean_stopped_between_two_commits_leaves_the_rest_dirty(tmp_path) -> None:
    """Only the first cleaned group is committed: the segments after it are still as
    uploaded, duplicates and all, so the bucket's log is clean only up to that group's end,
    and the next start's clean takes on the rest."""
    async def scenario() -> None:
        refusing = CommitsRefused(_local(tmp_path), allowed=1)
        logs, manager, last = await tiered_history(tmp_path, refusing)
        end = logs.log("t", 0).log_end_offset
        before = manager.remote_segments("t", 0)
        assert await manager.clean_once() is None  # the second group's commit failed
        await manager.close()
        logs.close()
        logs = LogManager(str(tmp_path / "data")).open()
        again = TieringManager(logs, _local(tmp_path))
        await again.open()
        state = again.remote_partition("t", 0)
        assert state is not None
        first, *rest = state.segments
        assert first.replaces and rest == before[-len(rest):]  # a stop after the first commit
        assert first.cleaned_to == first.next_offset
        assert state.first_dirty_offset == first.next_offset
        assert_compacted(await remote_entries(again, again.store), last, below=state.first_dirty_offset)
        result = await again.clean_once()
        assert result is not None and result.cleaned_to == end
        assert_compacted(await remote_entries(again, again.store), last, below=end)
        await again.close()
        await again.store.close()
        logs.close()

    asyncio.run(scenario())
