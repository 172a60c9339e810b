"""The tiering manager against the local folder and moto's S3 server: upload, local and
remote retention, restore on an empty machine, topic deletion and orphans."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest
from crc32c import crc32c
from prometheus_client import REGISTRY

from hotlog.errors import OutOfOrderSequenceError
from hotlog.records import Record, build_batch
from tiering.local_store import LocalFolderStore
from tiering.manager import TieringManager
from tiering.metadata import META_FOLDER, TOPICS_PREFIX, RemoteSegment, SegmentState, segment_key
from tiering.wrappers import FaultInjectingStore

from .conftest import StoreFactory
from .support import SMALL_SEGMENTS, open_logs, opened, produce, read_both_tiers, seal_active

HOUR_MS = 3_600_000


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_sealed_segments_are_uploaded_in_offset_order_with_their_indexes(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", partitions=2)
    acked = {p: produce(logs.log("t", p), 40) for p in range(2)}
    uploaded_before = sample("tierlog_tiering_uploaded_segments_total")
    puts_before = sample("tierlog_object_store_requests_total", {"operation": "PUT"})

    async def scenario() -> None:
        store = make_store()
        async with opened(logs, store) as manager:
            await manager.run_once()
            for p in range(2):
                plog = logs.log("t", p)
                sealed = [s for s in plog.segments if s.sealed]
                remote = manager.remote_segments("t", p)
                assert len(sealed) >= 5 and not plog.active_segment.sealed
                assert [(r.base_offset, r.next_offset) for r in remote] == [(s.base_offset, s.next_offset) for s in sealed]
                for r, s in zip(remote, sealed):
                    for extension, path in (("log", s.log_path), ("index", s.offset_index.path),
                                            ("timeindex", s.time_index.path)):
                        with open(path, "rb") as f:
                            local = f.read()
                        assert await store.get(r.key(extension)) == local
                        assert (r.files[extension].size, r.files[extension].crc32c) == (len(local), crc32c(local))
                    assert r.max_timestamp == s.max_timestamp and r.state is SegmentState.COPY_FINISHED
                    assert "snapshot" in r.files  # producer state as of the segment's end
                assert manager.remote_end_offset("t", p) == sealed[-1].next_offset
                assert manager.remote_log_start_offset("t", p) == 0
                middle = remote[2]
                assert manager.remote_segment_for("t", p, middle.next_offset - 1) == middle
                assert manager.remote_segment_for("t", p, sealed[-1].next_offset) is None
                status = manager.remote_status("t", p)
                assert (status.copy_lag_segments, status.copy_lag_bytes) == (0, 0)
                assert status.size_bytes == sum(s.size for s in sealed)
                # Default local retention (= retention.ms, 7 days) keeps everything local too.
                assert plog.log_start_offset == 0
                assert await read_both_tiers(manager, store, "t", p) == acked[p]
            assert sample("tierlog_tiering_uploaded_segments_total") - uploaded_before == sum(
                len(manager.remote_segments("t", p)) for p in range(2))
            assert sample("tierlog_tiering_copy_lag_segments") == 0
            assert sample("tierlog_tier_bytes", {"tier": "remote"}) == sum(
                manager.remote_status("t", p).size_bytes for p in range(2))
            puts = sample("tierlog_object_store_requests_total", {"operation": "PUT"}) - puts_before
            assert puts >= store.requests["PUT"] > 0
            # A second pass has nothing to do: no request but the topic being in sync.
            before = sum(store.requests.values())
            await manager.run_once()
            assert sum(store.requests.values()) == before

    asyncio.run(scenario())


def test_a_segment_above_segment_bytes_is_uploaded_whole(tmp_path, make_store: StoreFactory) -> None:
    """A batch above segment.bytes fills a local segment of its own, which tiers as any other."""
    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": -1})
    plog = logs.log("t", 0)
    acked = produce(plog, 3)
    acked += produce(plog, 1, records=20, value_size=1000, tag="big")
    acked += produce(plog, 3)
    seal_active(plog)
    big = plog.segments[1]
    assert big.base_offset == acked[3][0] and big.size > SMALL_SEGMENTS["segment.bytes"]
    with open(big.log_path, "rb") as f:
        big_log = f.read()

    async def scenario() -> None:
        store = make_store()
        async with opened(logs, store) as manager:
            await manager.run_once()
            remote = manager.remote_segments("t", 0)
            assert [r.base_offset for r in remote] == [0, big.base_offset, big.next_offset]
            assert remote[1].next_offset == big.next_offset and remote[1].size_bytes == len(big_log)
            assert await store.get(remote[1].key("log")) == big_log
            assert plog.log_start_offset == manager.remote_end_offset("t", 0), "all sealed segments tiered"
            assert await read_both_tiers(manager, store, "t", 0) == acked

    asyncio.run(scenario())


def test_local_retention_deletes_only_what_the_bucket_holds(tmp_path, make_store: StoreFactory) -> None:
    from tiering.wrappers import FaultInjectingStore

    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": -1})
    plog = logs.log("t", 0)
    acked = produce(plog, 30)

    async def scenario() -> None:
        store = FaultInjectingStore(make_store())
        async with opened(logs, store, retry_backoff_ms=0) as manager:
            segments_before = len(plog.segments)
            first_two = [s.base_offset for s in plog.segments[:2]]
            # An upload of the third segment fails: the first two are committed and deleted
            # locally, the third and later stay local.
            third = plog.segments[2].base_offset
            store.fail_next(1, "put", key_contains=f"{third:020d}-")
            await manager.run_once()
            remote = manager.remote_segments("t", 0)
            assert [r.base_offset for r in remote] == first_two
            assert plog.log_start_offset == remote[-1].next_offset == third
            assert len(plog.segments) == segments_before - 2
            assert manager.remote_status("t", 0).copy_lag_segments == segments_before - 3
            await manager.run_once()
            assert len(plog.segments) == 1, "every sealed segment uploaded, then deleted locally"
            assert plog.log_start_offset == manager.remote_end_offset("t", 0)
            assert await read_both_tiers(manager, store, "t", 0) == acked

    asyncio.run(scenario())


def test_local_retention_by_time_keeps_recent_segments(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", configs={"local.retention.ms": HOUR_MS, "retention.ms": -1})
    plog = logs.log("t", 0)
    now = int(time.time() * 1000)
    produce(plog, 12, timestamp=now - 3 * HOUR_MS)
    seal_active(plog)
    old_end = plog.log_end_offset
    produce(plog, 12, timestamp=now)

    async def scenario() -> None:
        store = make_store()
        async with opened(logs, store) as manager:
            await manager.run_once(now_ms=now)
            assert plog.log_start_offset == old_end, "segments older than an hour left the local disk, no more"
            assert manager.remote_log_start_offset("t", 0) == 0

    asyncio.run(scenario())


def test_remote_retention_by_time_tombstones_then_deletes(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": 2 * HOUR_MS})
    plog = logs.log("t", 0)
    now = int(time.time() * 1000)
    produce(plog, 12, timestamp=now - 5 * HOUR_MS)
    seal_active(plog)
    boundary = plog.log_end_offset
    recent = produce(plog, 12, timestamp=now)
    seal_active(plog)

    async def scenario() -> None:
        store = make_store()
        async with opened(logs, store) as manager:
            await manager.run_once(now_ms=now - 4 * HOUR_MS)  # nothing expired yet
            everything = manager.remote_segments("t", 0)
            expired = [r for r in everything if r.base_offset < boundary]
            assert expired and manager.remote_log_start_offset("t", 0) == 0
            await manager.run_once(now_ms=now)
            assert manager.remote_log_start_offset("t", 0) == boundary
            for record in expired:
                for f in record.files.values():
                    assert not await store.list(f.key), f"{f.key} outlived retention"
                assert not await store.list(record.metadata_key)
            assert await read_both_tiers(manager, store, "t", 0) == recent

    asyncio.run(scenario())


def test_remote_retention_by_bytes_counts_the_whole_log(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.bytes": 12_000})
    plog = logs.log("t", 0)
    produce(plog, 40)

    async def scenario() -> None:
        store = make_store()
        async with opened(logs, store) as manager:
            await manager.run_once()
            remote = manager.remote_segments("t", 0)
            local_only = sum(s.size for s in plog.segments if s.base_offset >= manager.remote_end_offset("t", 0))
            total = sum(r.size_bytes for r in remote) + local_only
            assert total >= 12_000 - 4096, "not more deleted than needed"
            assert total - remote[0].size_bytes < 12_000, "the oldest remaining segment is needed to reach the limit"
            assert manager.remote_log_start_offset("t", 0) > 0

    asyncio.run(scenario())


def test_remote_retention_runs_while_every_copy_fails(tmp_path, make_store: StoreFactory) -> None:
    """A store that refuses uploads must not hold back the deletion of what has expired."""
    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.bytes": 12_000})
    plog = logs.log("t", 0)
    produce(plog, 40)

    async def scenario() -> None:
        store = FaultInjectingStore(make_store())
        async with opened(logs, store, retry_backoff_ms=60_000) as manager:
            await manager.run_once()
            first_pass = manager.remote_segments("t", 0)
            assert first_pass, "the first pass should have uploaded segments"
            produce(plog, 40, tag="later")
            seal_active(plog)
            store.fail_next(1_000_000, "put", key_contains=".log")  # every later segment upload fails
            for _ in range(3):
                await manager.run_once()
            assert store.failed.get("put", 0) >= 1, "the copy should have been tried, failed and backed off"
            kept = {s.segment_id for s in manager.remote_segments("t", 0)}
            assert not kept & {s.segment_id for s in first_pass}, \
                "retention should go on deleting old remote segments while copies fail"

    asyncio.run(scenario())


def test_a_copy_pass_ends_while_the_producer_keeps_sealing_segments(tmp_path) -> None:
    """A pass uploads what was sealed when it began: a producer as fast as the uploads must
    not keep the pass (and retention after it) from ending."""
    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.bytes": 12_000})
    plog = logs.log("t", 0)
    produce(plog, 20)

    class SealsOnEveryUpload(FaultInjectingStore):
        async def put(self, key: str, data: bytes) -> None:
            await super().put(key, data)
            if key.endswith(".log"):
                produce(plog, 6, tag=key)  # more than a segment sealed per upload

    async def scenario() -> None:
        store = SealsOnEveryUpload(LocalFolderStore(str(tmp_path / "bucket")))
        async with opened(logs, store, upload_concurrency=1) as manager:
            deleted = sample("tierlog_tiering_remote_deleted_segments_total")
            more = await asyncio.wait_for(manager.run_once(), 30)
            assert manager.remote_end_offset("t", 0) < plog.log_end_offset, "segments sealed meanwhile wait"
            assert more, "the pass says more waits, so the next one starts without the task interval"
            assert sample("tierlog_tiering_remote_deleted_segments_total") > deleted, \
                "retention should have run after the copy"

    asyncio.run(scenario())


def test_retention_minus_one_keeps_remote_segments_forever(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": -1})
    plog = logs.log("t", 0)
    produce(plog, 20, timestamp=1_000_000_000_000)  # 2001

    async def scenario() -> None:
        store = make_store()
        async with opened(logs, store) as manager:
            await manager.run_once()
            assert manager.remote_log_start_offset("t", 0) == 0
            assert len(plog.segments) == 1

    asyncio.run(scenario())


def test_restore_on_an_empty_machine_brings_back_every_offset_and_producer_state(
        tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", partitions=2, configs={"local.retention.bytes": 0, "retention.ms": -1})
    acked = {p: produce(logs.log("t", p), 25) for p in range(2)}
    # An idempotent producer's batches in partition 0, ending the sealed part of the log.
    plog = logs.log("t", 0)
    for sequence in (0, 3):
        plog.append(build_batch([Record(b"k", b"x" * 50)] * 3, producer_id=77, producer_epoch=1,
                                base_sequence=sequence))
    for p in range(2):
        seal_active(logs.log("t", p))  # only sealed segments travel: a restore has all of them
    topic_id = logs.topics["t"].topic_id

    async def first_life() -> dict[int, list[tuple[int, str]]]:
        store = make_store()
        async with opened(logs, store) as manager:
            await manager.run_once()
            tiered = {p: await read_both_tiers(manager, store, "t", p) for p in range(2)}
        return tiered

    tiered = asyncio.run(first_life())
    assert tiered[1] == acked[1]
    logs.close()

    fresh = open_logs(tmp_path / "empty-machine", create=False)

    async def second_life() -> None:
        store = make_store()
        async with opened(fresh, store) as manager:
            topic = fresh.topics["t"]
            assert (topic.topic_id, topic.partitions) == (topic_id, 2)
            assert topic.overrides["local.retention.bytes"] == 0
            for p in range(2):
                end = manager.remote_end_offset("t", p)
                assert fresh.log("t", p).log_end_offset == end > 0
                assert await read_both_tiers(manager, store, "t", p) == tiered[p]
            # New appends continue after the last tiered offset...
            restored = fresh.log("t", 0)
            info = restored.append(build_batch([Record(b"k", b"new")]))
            assert info.base_offset == manager.remote_end_offset("t", 0)
            # ...and the idempotent producer's state came back: its next sequence is 6.
            with pytest.raises(OutOfOrderSequenceError):
                restored.append(build_batch([Record(b"k", b"x")], producer_id=77, producer_epoch=1, base_sequence=9))
            restored.append(build_batch([Record(b"k", b"x")], producer_id=77, producer_epoch=1, base_sequence=6))

    asyncio.run(second_life())
    fresh.close()


def test_a_restore_after_retention_emptied_the_bucket_continues_after_the_last_offset(
        tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0, "retention.ms": HOUR_MS})
    plog = logs.log("t", 0)
    produce(plog, 20, timestamp=int(time.time() * 1000) - 3 * HOUR_MS)
    seal_active(plog)
    end = plog.log_end_offset

    async def tier() -> None:
        store = make_store()
        async with opened(logs, store) as manager:
            await manager.run_once()
            assert manager.remote_segments("t", 0) == [] and manager.remote_end_offset("t", 0) == end
            topic_id = logs.topics["t"].topic_id
            left = [o.key for o in await store.list(f"t-{topic_id}/")]
            assert len(left) == 1 and f"/{META_FOLDER}" in left[0], "only the record of where offsets continue"

    asyncio.run(tier())
    fresh = open_logs(tmp_path / "empty-machine", create=False)

    async def restore() -> None:
        async with opened(fresh, make_store()):
            assert fresh.log("t", 0).log_end_offset == end, "offsets are never handed out twice"

    asyncio.run(restore())


def test_a_restart_after_a_crash_mid_restore_finishes_it(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", configs={"local.retention.bytes": 0})
    produce(logs.log("t", 0), 20)
    topic = logs.topics["t"]

    async def tier() -> int:
        async with opened(logs, make_store()) as manager:
            await manager.run_once()
            return manager.remote_end_offset("t", 0)

    end = asyncio.run(tier())
    # The topic was created locally from the bucket, then the process died before the log
    # was moved to the remote end: the local log is empty at offset 0.
    half = open_logs(tmp_path / "half", create=False)
    half.create_topic("t", 1, topic.overrides, topic_id=topic.topic_id)

    async def restart() -> None:
        async with opened(half, make_store()):
            assert half.log("t", 0).log_end_offset == end

    asyncio.run(restart())


def test_deleting_a_topic_deletes_its_objects_and_a_new_one_of_that_name_starts_clean(
        tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data", partitions=2)
    for p in range(2):
        produce(logs.log("t", p), 20)
    logs.create_topic("other", 1, {"segment.bytes": 4096})
    produce(logs.log("other", 0), 20)

    async def scenario() -> None:
        store = make_store()
        async with opened(logs, store) as manager:
            await manager.run_once()
            old_id = logs.topics["t"].topic_id
            assert await store.list(f"t-{old_id}/")
            logs.delete_topic("t")
            logs.create_topic("t", 1, {"segment.bytes": 4096})
            produce(logs.log("t", 0), 20)
            await manager.run_once()
            assert await store.list(f"t-{old_id}/") == []
            assert [o.key for o in await store.list(TOPICS_PREFIX)] == sorted(
                f"{TOPICS_PREFIX}{name}-{logs.topics[name].topic_id}.json" for name in ("other", "t"))
            assert manager.remote_segments("t", 0) and manager.remote_segments("t", 0)[0].topic_id != old_id
            assert manager.remote_segments("other", 0), "other topics are untouched"

    asyncio.run(scenario())


def test_a_topic_deleted_while_tiering_was_down_is_deleted_at_the_next_start(
        tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data")
    produce(logs.log("t", 0), 20)
    topic_id = logs.topics["t"].topic_id

    async def tier() -> None:
        store = make_store()
        async with opened(logs, store) as manager:
            await manager.run_once()

    asyncio.run(tier())
    logs.delete_topic("t")

    async def restart() -> None:
        store = make_store()
        async with opened(logs, store):
            assert "t" not in logs.topics, "a topic deleted here is not restored"
            assert await store.list(f"t-{topic_id}/") == []
            assert await store.list(TOPICS_PREFIX) == []

    asyncio.run(restart())


def test_orphans_are_deleted_after_the_grace_period_and_committed_objects_stay(
        tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data")
    acked = produce(logs.log("t", 0), 20)
    topic_id = logs.topics["t"].topic_id

    async def scenario() -> None:
        store = make_store()
        async with opened(logs, store, orphan_grace_ms=HOUR_MS) as manager:
            await manager.run_once()
            committed = {o.key for o in await store.list(f"t-{topic_id}/")}
            # What a crash mid-upload leaves: segment files whose record was never written.
            orphans = [segment_key(f"t-{topic_id}/0/", 0, uuid.uuid4(), ext) for ext in ("log", "index")]
            for key in orphans:
                await store.put(key, b"half an upload")
            await store.put(f"t-{topic_id}/0/notes.txt", b"not a segment: left alone")
            manager.orphan_check_interval_ms = 0
            await manager.run_once()
            assert set(orphans) <= {o.key for o in await store.list(f"t-{topic_id}/")}, "younger than the grace"
            manager.orphan_grace_ms = 0
            await asyncio.sleep(0.01)
            await manager.run_once()
            left = {o.key for o in await store.list(f"t-{topic_id}/")}
            assert left == committed | {f"t-{topic_id}/0/notes.txt"}
            assert await read_both_tiers(manager, store, "t", 0) == acked

    asyncio.run(scenario())


def test_records_in_the_bucket_are_json_a_person_can_read(tmp_path, make_store: StoreFactory) -> None:
    logs = open_logs(tmp_path / "data")
    produce(logs.log("t", 0), 10)

    async def scenario() -> None:
        store = make_store()
        async with opened(logs, store) as manager:
            await manager.run_once()
            remote = manager.remote_segments("t", 0)[0]
            key = remote.metadata_key
            assert f"/0/{META_FOLDER}{remote.base_offset:020d}-{remote.segment_id}.json" in key
            assert RemoteSegment.from_json(await store.get(key), key) == remote

    asyncio.run(scenario())


def test_configuration_errors_are_typed(tmp_path) -> None:
    from hotlog.errors import InvalidConfigError
    from tiering.local_store import LocalFolderStore

    logs = open_logs(tmp_path / "data")
    with pytest.raises(InvalidConfigError):
        TieringManager(logs, LocalFolderStore(str(tmp_path / "b")), upload_concurrency=0)
    with pytest.raises(InvalidConfigError):
        TieringManager(logs, LocalFolderStore(str(tmp_path / "b")), upload_bytes_per_sec=-5)
    assert os.listdir(tmp_path) == ["data"]
