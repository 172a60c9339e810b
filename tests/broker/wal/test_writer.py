"""The WAL writer and the write path over it, in-process, on the local-folder store (with
faults injected): one object per window for every partition, acks only after the commit,
a store that is down holds acks back (and only for WAL topics), bounded memory."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.errors import WalFullError
from broker.node import Broker
from broker.settings import BrokerSettings
from broker.wal.objects import WAL_PREFIX, decode
from hotlog.errors import DiskWriteError
from hotlog.log import PartitionLog
from hotlog.records import Record, build_batch
from tiering.local_store import LocalFolderStore
from tiering.manager import TieringManager
from tiering.wrappers import FaultInjectingStore


async def started(tmp_path: Any, **settings: Any) -> tuple[Broker, FaultInjectingStore]:
    store = FaultInjectingStore(LocalFolderStore(str(tmp_path / "bucket")))
    broker = Broker(str(tmp_path / "data"), BrokerSettings(log_defaults={"remote.wal.enable": True}, **settings))
    broker.attach_tiering(TieringManager(broker.logs, store), store)
    await broker.start()
    return broker, store


async def wal_keys(store: FaultInjectingStore) -> list[str]:
    return sorted(o.key for o in await store.list(WAL_PREFIX))


def batch(value: bytes) -> bytes:
    return build_batch([Record(None, value)])


def test_one_object_per_window_holds_every_partition_in_order(tmp_path: Any) -> None:
    async def scenario() -> None:
        broker, store = await started(tmp_path, log_remote_wal_window_ms=100)
        try:
            broker.logs.create_topic("a", 16)
            appended = [broker.write.append("a", p, batch(b"v%d" % p), protocol="test") for p in range(16)]
            await asyncio.wait_for(asyncio.gather(*(broker.write.wait_durable(a) for a in appended)), 5)
            keys = await wal_keys(store)
            assert len(keys) == 1, "16 partitions within one window make one object"
            wal = decode(keys[0], await store.get(keys[0]))
            assert sorted(e.partition for e in wal.entries) == list(range(16))
            assert all(bytes(wal.batches(e))[:8] == b"\0" * 8 for e in wal.entries)  # offset 0 each, as written
        finally:
            await broker.stop()
            await store.close()

    asyncio.run(scenario())


def test_a_store_that_is_down_holds_back_wal_acks_only(tmp_path: Any) -> None:
    async def scenario() -> None:
        broker, store = await started(tmp_path, log_remote_wal_window_ms=20)
        try:
            broker.logs.create_topic("wal", 1)
            broker.logs.create_topic("local", 1, {"remote.wal.enable": False})
            store.down = True
            held = broker.write.append("wal", 0, batch(b"held"), protocol="test")
            waiting = asyncio.create_task(broker.write.wait_durable(held))
            local = broker.write.append("local", 0, batch(b"fsynced"), protocol="test")
            await asyncio.wait_for(broker.write.wait_durable(local), 5)  # non-WAL topics go on
            await asyncio.sleep(0.5)
            assert not waiting.done(), "no ack while the bucket does not hold the batch"
            assert store.failed.get("put", 0) >= 2, "the PUT is retried"
            store.down = False
            await asyncio.wait_for(waiting, 10)  # recovers by itself once the store is back
            assert len(await wal_keys(store)) == 1
        finally:
            await broker.stop()
            await store.close()

    asyncio.run(scenario())


def test_appends_to_wal_topics_are_refused_once_the_pending_bytes_are_full(tmp_path: Any) -> None:
    async def scenario() -> None:
        broker, store = await started(tmp_path, log_remote_wal_window_ms=20, log_remote_wal_window_bytes=4096)
        try:
            broker.logs.create_topic("wal", 1)
            broker.logs.create_topic("local", 1, {"remote.wal.enable": False})
            store.down = True
            plog = broker.logs.log("wal", 0)
            with pytest.raises(WalFullError):
                for i in range(100):  # 8 windows of 4 KiB fill up
                    broker.write.append("wal", 0, batch(b"x" * 1000 + b"%d" % i), protocol="test")
            end = plog.log_end_offset
            with pytest.raises(WalFullError):
                broker.write.append("wal", 0, batch(b"refused"), protocol="test")
            assert plog.log_end_offset == end, "a refused append changes nothing"
            broker.write.append("local", 0, batch(b"fine"), protocol="test")  # non-WAL topics still take appends
        finally:
            store.down = False
            await broker.stop()
            await store.close()

    asyncio.run(scenario())


def test_a_clean_stop_puts_the_open_window_in_the_bucket(tmp_path: Any) -> None:
    """acks=1 batches ride the windows unawaited; a clean stop must not leave them local only."""
    async def scenario() -> None:
        broker, store = await started(tmp_path, log_remote_wal_window_ms=60_000)
        broker.logs.create_topic("wal", 1)
        broker.write.append("wal", 0, batch(b"acks=1"), protocol="test")
        await broker.stop()
        keys = await wal_keys(store)
        await store.close()
        assert len(keys) == 1 and decode(keys[0], await LocalFolderStore(str(tmp_path / "bucket")).get(keys[0])).entries

    asyncio.run(scenario())


def test_folding_goes_on_when_the_disk_refuses_to_roll_a_segment(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        broker, store = await started(tmp_path, log_remote_wal_window_ms=20)
        try:
            assert broker.wal is not None
            broker.logs.create_topic("wal", 1)
            await broker.write.wait_durable(broker.write.append("wal", 0, batch(b"v"), protocol="test"))
            plog = broker.logs.log("wal", 0)

            def disk_full(self: PartitionLog) -> None:
                raise DiskWriteError("no space left on device")

            with monkeypatch.context() as patched:
                patched.setattr(PartitionLog, "roll", disk_full)
                await broker.wal.fold_once(now_ms=2**62)  # past log.remote.wal.fold.ms: due a roll
            assert len(plog.segments) == 1 and plog.active_segment.size > 0
            await broker.wal.fold_once(now_ms=2**62)  # room again: the next fold rolls it
            assert len(plog.segments) == 2
        finally:
            await broker.stop()
            await store.close()

    asyncio.run(scenario())
