"""The object store down, erroring, slow or hanging while producers keep appending: the
hot tier takes it, copy lag shows, and tiering catches up with nothing lost or doubled."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from hotlog.manager import LogManager
from hotlog.records import Record, build_batch
from tiering.manager import TieringManager
from tiering.wrappers import FaultInjectingStore

from .conftest import StoreFactory
from .support import digest, open_logs, produce, read_both_tiers

FAST = {"task_interval_ms": 20, "retry_backoff_ms": 20, "retry_backoff_max_ms": 100}


def errors() -> float:
    """Failed tiering tasks of any kind so far."""
    return sum(REGISTRY.get_sample_value("tierlog_tiering_errors_total", {"task": task}) or 0.0
               for task in ("topics", "copy", "remote_retention"))


async def produce_for(logs: LogManager, seconds: float) -> list[tuple[int, str]]:
    """Append from the event loop the manager runs on, as the server's handlers do."""
    acked: list[tuple[int, str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        acked += produce(logs.log("t", 0), 3, tag=f"{len(acked)}")
        await asyncio.sleep(0.005)
    return acked


async def wait_until_caught_up(manager: TieringManager, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while manager.remote_status("t", 0).copy_lag_segments:
        assert time.monotonic() < deadline, f"tiering did not catch up: {manager.remote_status('t', 0)}"
        await asyncio.sleep(0.02)


async def committed_records_and_objects(manager: TieringManager, store: FaultInjectingStore) -> None:
    """Exactly one record per committed segment in the bucket, and no object besides theirs."""
    topic_id = manager.logs.topics["t"].topic_id
    listed = {o.key for o in await store.list(f"t-{topic_id}/0/")}
    segments = manager.remote_segments("t", 0)
    expected = {s.metadata_key for s in segments} | {f.key for s in segments for f in s.files.values()}
    assert listed == expected


def test_a_store_that_is_down_then_back(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": -1})

    async def scenario() -> None:
        store = FaultInjectingStore(make_store())
        manager = TieringManager(logs, store, **FAST)
        await manager.start()
        failed_before = errors()
        store.down = True
        acked = await produce_for(logs, 0.6)
        status = manager.remote_status("t", 0)
        assert status.copy_lag_segments >= 5 and status.copy_lag_bytes > 5 * 3000
        assert status.log_end_offset == -1 and logs.log("t", 0).log_start_offset == 0, "nothing left the disk"
        assert errors() > failed_before
        assert REGISTRY.get_sample_value("tierlog_tiering_copy_lag_segments") >= 5
        store.down = False
        acked += await produce_for(logs, 0.2)
        await wait_until_caught_up(manager)
        await manager.close()
        assert await read_both_tiers(manager, store, "t", 0) == acked
        assert len(logs.log("t", 0).segments) == 1, "local retention ran once segments were committed"
        await store.close()

    asyncio.run(scenario())


def test_errors_and_lost_replies_leave_no_duplicate_and_no_orphan(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": -1})

    async def scenario() -> None:
        store = FaultInjectingStore(make_store())
        manager = TieringManager(logs, store, orphan_grace_ms=0, orphan_check_interval_ms=0, **FAST)
        await manager.start()
        store.fail_next(4, "put")
        # Commits that reach the bucket but whose reply is lost: checked, not redone.
        store.lose_replies(3, "put", key_contains="/meta/")
        acked = await produce_for(logs, 0.8)
        await wait_until_caught_up(manager)
        await manager.run_once()  # one more pass: orphans of the failed attempts go
        await manager.close()
        assert store.failed["put"] >= 7
        assert await read_both_tiers(manager, store, "t", 0) == acked
        await committed_records_and_objects(manager, store)
        await store.close()

    asyncio.run(scenario())


def test_a_slow_store_does_not_slow_producers(tmp_path) -> None:
    from tiering.local_store import LocalFolderStore

    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": -1})

    async def scenario() -> None:
        store = FaultInjectingStore(LocalFolderStore(str(tmp_path / "bucket")))
        store.delay_s = 0.2  # every request
        manager = TieringManager(logs, store, **FAST)
        await manager.start()
        plog = logs.log("t", 0)
        slowest_append = slowest_tick = 0.0
        acked: list[tuple[int, str]] = []
        for i in range(40):
            batch = build_batch([Record(b"k", f"v{i}".encode().ljust(600, b"."))])
            began = time.perf_counter()
            info = plog.append(batch)
            slowest_append = max(slowest_append, time.perf_counter() - began)
            acked.append((info.base_offset, digest(batch)))
            await plog.flush_async()
            began = time.perf_counter()
            await asyncio.sleep(0.002)
            slowest_tick = max(slowest_tick, time.perf_counter() - began)
        # Waiting on the store would cost at least its 0.2 s; nothing here comes near it.
        assert slowest_append < 0.05, "an append waited on the object store"
        assert slowest_tick < 0.1, "the event loop was blocked"
        await wait_until_caught_up(manager)
        await manager.close()
        assert await read_both_tiers(manager, store, "t", 0) == acked
        assert manager.remote_segments("t", 0)

    asyncio.run(scenario())


def test_a_hanging_store_holds_uploads_but_not_shutdown(tmp_path) -> None:
    from tiering.local_store import LocalFolderStore

    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": -1})
    bucket = str(tmp_path / "bucket")

    async def hung() -> list[tuple[int, str]]:
        store = FaultInjectingStore(LocalFolderStore(bucket))
        manager = TieringManager(logs, store, **FAST)
        await manager.start()
        store.hang()
        acked = await produce_for(logs, 0.4)
        assert manager.remote_status("t", 0).copy_lag_segments >= 3
        assert store.calls.get("put", 0) >= 1, "an upload is waiting on the store"
        await asyncio.wait_for(manager.close(), 2.0)
        return acked

    acked = asyncio.run(hung())

    async def back() -> None:
        store = LocalFolderStore(bucket)
        manager = TieringManager(logs, store, orphan_grace_ms=0)
        await manager.open()
        await manager.run_once()
        assert manager.remote_status("t", 0).copy_lag_segments == 0
        assert await read_both_tiers(manager, store, "t", 0) == acked

    asyncio.run(back())
