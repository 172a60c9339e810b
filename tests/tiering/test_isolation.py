"""One topic's or partition's failure is its own: the tiering task goes on for the others,
the failing one is counted, logged at a bounded rate, shows in copy lag, and heals by
itself once the store lets it."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Callable, Sequence

import pytest
from prometheus_client import REGISTRY

from hotlog.manager import LogManager
from tiering.manager import TieringManager
from tiering.store import ObjectStore
from tiering.wrappers import DelegatingStore, FaultInjectingStore

from .conftest import StoreFactory
from .support import open_logs, produce, read_both_tiers, seal_active

FAST = {"task_interval_ms": 20, "retry_backoff_ms": 20, "retry_backoff_max_ms": 50}
TIERED = {"segment.bytes": 4096, "local.retention.bytes": 0, "retention.ms": -1}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def tiered_to_the_end(manager: TieringManager, topic: str) -> bool:
    """Every offset of the partition is in the bucket (fill() seals all it appends)."""
    return manager.remote_end_offset(topic, 0) == manager.logs.log(topic, 0).log_end_offset


def fill(logs: LogManager, topic: str, batches: int = 20, tag: str = "v") -> list[tuple[int, str]]:
    acked = produce(logs.log(topic, 0), batches, tag=tag)
    seal_active(logs.log(topic, 0))
    return acked


def test_a_partition_whose_uploads_fail_holds_back_no_other_and_shows_in_copy_lag(
        tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", "bad", 1, TIERED)
    logs.create_topic("good", 1, TIERED)
    acked = {t: fill(logs, t) for t in ("bad", "good")}
    bad_folder = f"bad-{logs.topics['bad'].topic_id}/"

    async def scenario() -> None:
        store = FaultInjectingStore(make_store())
        store.fail_next(10**9, "put", key_contains=bad_folder)  # its record goes in, no segment does
        failing_before = sample("tierlog_tiering_failing", task="copy")
        manager = TieringManager(logs, store, **FAST)
        await manager.start()
        try:
            await eventually(lambda: tiered_to_the_end(manager, "good"), "the good topic is tiered")
            acked["good"] += fill(logs, "good", tag="later")  # and the task goes on
            await eventually(lambda: tiered_to_the_end(manager, "good"), "later segments are tiered too")
            await eventually(lambda: store.failed.get("put", 0) >= 3, "the bad partition is retried")
            status = manager.remote_status("bad", 0)
            assert status.log_end_offset == -1 and status.copy_lag_segments >= 5 and status.copy_lag_bytes > 5 * 3000
            assert sample("tierlog_tiering_copy_lag_segments") >= status.copy_lag_segments
            assert sample("tierlog_tiering_failing", task="copy") == failing_before + 1
            store.heal()
            await eventually(lambda: tiered_to_the_end(manager, "bad"), "the bad partition heals by itself")
            await eventually(lambda: sample("tierlog_tiering_failing", task="copy") == failing_before,
                             "no longer counted as failing")
            for topic in ("bad", "good"):
                assert await read_both_tiers(manager, store, topic, 0) == acked[topic]
        finally:
            await manager.close()
            await store.close()

    asyncio.run(scenario())


class Refusing(DelegatingStore):
    """Raises the exception given for any write or delete of a key holding a given string,
    until it is taken out of `refusals`."""

    def __init__(self, inner: ObjectStore, refusals: dict[str, Exception]) -> None:
        super().__init__(inner)
        self.refusals = refusals

    def _check(self, key: str) -> None:
        for part, exc in self.refusals.items():
            if part in key:
                raise exc

    async def put(self, key: str, data: bytes) -> None:
        self._check(key)
        await self.inner.put(key, data)

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._check(key)
        await self.inner.delete(keys)


def test_errors_of_any_kind_in_one_topic_stop_neither_the_task_nor_the_others(
        tmp_path, make_store: StoreFactory, caplog: pytest.LogCaptureFixture) -> None:
    names = ("full", "buggy", "doomed", "fine")
    logs = open_logs(tmp_path / "data", "full", 1, TIERED)
    for name in names[1:]:
        logs.create_topic(name, 1, TIERED)
    acked = {name: fill(logs, name) for name in names}
    ids = {name: logs.topics[name].topic_id for name in names}

    async def scenario() -> None:
        store = Refusing(make_store(), {
            # A full disk under a folder store: its topic record cannot be written.
            f"_topics/full-{ids['full']}": OSError(errno.ENOSPC, "No space left on device"),
            # Not a store error at all (a bug): its segment uploads raise it.
            f"buggy-{ids['buggy']}/": ValueError("a bug in one partition's upload"),
        })
        manager = TieringManager(logs, store, **FAST)
        await manager.open()
        await manager.run_once()
        assert tiered_to_the_end(manager, "doomed") and tiered_to_the_end(manager, "fine")
        store.refusals[f"doomed-{ids['doomed']}/"] = OSError(errno.EIO, "Input/output error")  # its deletion fails
        logs.delete_topic("doomed")
        errors_before = {task: sample("tierlog_tiering_errors_total", task=task) for task in ("topics", "copy")}
        manager.run_in_background()
        try:
            await asyncio.sleep(0.5)  # a dozen retries of each failing one
            acked["fine"] += fill(logs, "fine", tag="later")
            await eventually(lambda: tiered_to_the_end(manager, "fine"), "the task goes on for the others")
            for name in ("full", "buggy"):
                status = manager.remote_status(name, 0)
                assert status.log_end_offset == -1 and status.copy_lag_segments > 0, name
            assert sample("tierlog_tiering_errors_total", task="topics") - errors_before["topics"] >= 6
            assert sample("tierlog_tiering_errors_total", task="copy") - errors_before["copy"] >= 3
            assert any(f"doomed-{ids['doomed']}" in o.key for o in await store.list("")), "not deleted yet"
            # Each failing one has logged once (the interval is a minute), not at every retry.
            lines = [r for r in caplog.records if r.name == "tiering.failures" and "failed" in r.getMessage()]
            assert sorted(r.getMessage().split(":")[0] for r in lines) == [
                "buggy-0", "topic doomed (deleted)", "topic full"]
            assert [r.levelname for r in lines if r.getMessage().startswith("buggy")] == ["ERROR"], "a bug: traceback"
            store.refusals.clear()
            await eventually(lambda: all(tiered_to_the_end(manager, n) for n in ("full", "buggy")), "they heal")
            await eventually(lambda: ids["doomed"] not in manager.topic_records, "doomed leaves the bucket")
            assert not any(f"doomed-{ids['doomed']}" in o.key for o in await store.list(""))
            for name in ("full", "buggy", "fine"):
                assert await read_both_tiers(manager, store, name, 0) == acked[name]
        finally:
            await manager.close()
            await store.close()

    caplog.set_level(logging.INFO, logger="tiering")
    asyncio.run(scenario())
