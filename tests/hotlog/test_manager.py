"""The log manager: topics, configs and partitions that survive restarts, and bad requests."""

import asyncio
import json
import os

import pytest

from hotlog.errors import (
    InvalidConfigError,
    InvalidTopicError,
    LogClosedError,
    TopicExistsError,
    UnknownTopicOrPartitionError,
)
from hotlog.manager import CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE, TOPICS_FILE, LogManager

from .support import dir_state, make_batch, payload_digest, read_all


def tree(root) -> dict[str, int]:
    """Every file under `root` (relative path -> size)."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = os.path.getsize(path)
    return out


def test_topics_ids_partitions_configs_and_data_survive_a_restart(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    orders = manager.create_topic("orders", 3, {"segment.bytes": "4096", "retention.ms": 60_000,
                                                "remote.storage.enable": "false"})
    manager.create_topic("audit.log_v2", 1)
    sent = {p: [make_batch(p + 1, tag=b"p%d-%d" % (p, i)) for i in range(5)] for p in range(3)}
    for p, batches in sent.items():
        for batch in batches:
            manager.log("orders", p).append(batch)
    manager.close()

    again = LogManager(str(tmp_path)).open()
    assert again.opened_clean
    assert sorted(again.topics) == ["audit.log_v2", "orders"]
    topic = again.topic("orders")
    assert (topic.topic_id, topic.partitions) == (orders.topic_id, 3)
    assert topic.overrides == {"segment.bytes": 4096, "retention.ms": 60_000, "remote.storage.enable": False}
    config = again.log("orders", 1).config
    assert (config.segment_bytes, config.retention_ms, config.remote_storage_enable) == (4096, 60_000, False)
    assert config.flush_ms == 1000  # not overridden: the default
    for p, batches in sent.items():
        assert [payload_digest(b) for b in read_all(again.log("orders", p))] == [payload_digest(b) for b in batches]
    assert again.log("audit.log_v2", 0).log_end_offset == 0
    again.close()


def test_broker_defaults_apply_where_a_topic_does_not_override(tmp_path):
    manager = LogManager(str(tmp_path), {"segment.bytes": 10_000, "retention.ms": -1}).open()
    manager.create_topic("t", 1, {"retention.ms": 5})
    config = manager.log("t", 0).config
    assert (config.segment_bytes, config.retention_ms) == (10_000, 5)


def test_clean_marker_and_checkpoint_follow_kafka_layouts(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    assert not manager.opened_clean and not os.path.exists(tmp_path / CLEAN_SHUTDOWN_FILE)
    manager.create_topic("t", 2)
    manager.log("t", 1).append(make_batch(4))
    manager.close()
    assert os.path.exists(tmp_path / CLEAN_SHUTDOWN_FILE)
    assert (tmp_path / CHECKPOINT_FILE).read_text().splitlines() == ["0", "2", "t 0 0", "t 1 4"]
    again = LogManager(str(tmp_path)).open()
    assert again.opened_clean and not os.path.exists(tmp_path / CLEAN_SHUTDOWN_FILE)


def test_a_log_a_failed_fsync_took_offline_closes_without_the_clean_marker(tmp_path, monkeypatch):
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("t", 2)
    manager.log("t", 0).append(make_batch(2))
    manager.log("t", 1).append(make_batch(3))
    real_fdatasync = os.fdatasync
    failing = manager.log("t", 0).active_segment.log_path

    def fdatasync(fd):
        if os.readlink(f"/proc/self/fd/{fd}") == failing:
            raise OSError(5, "Input/output error")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    manager.close()  # does not raise: the healthy log is flushed, the offline one left to recovery
    monkeypatch.undo()
    assert not os.path.exists(tmp_path / CLEAN_SHUTDOWN_FILE)
    assert (tmp_path / CHECKPOINT_FILE).read_text().splitlines() == ["0", "2", "t 0 0", "t 1 3"]
    again = LogManager(str(tmp_path)).open()  # recovery checks what the failed fsync left
    assert not again.opened_clean
    assert (again.log("t", 0).log_end_offset, again.log("t", 1).log_end_offset) == (2, 3)


def test_a_deleted_topic_leaves_no_folder_and_a_recreated_one_starts_empty(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    first = manager.create_topic("t", 2)
    manager.log("t", 0).append(make_batch(3))
    deleted = manager.delete_topic("t")
    assert deleted.topic_id == first.topic_id
    assert not [n for n in os.listdir(tmp_path) if n.startswith("t-")]
    assert "t" not in json.loads((tmp_path / TOPICS_FILE).read_text())
    with pytest.raises(UnknownTopicOrPartitionError):
        manager.log("t", 0)
    second = manager.create_topic("t", 1)
    assert second.topic_id != first.topic_id
    assert manager.log("t", 0).log_end_offset == 0 and read_all(manager.log("t", 0)) == []
    manager.close()
    again = LogManager(str(tmp_path)).open()
    assert again.topic("t").topic_id == second.topic_id and again.log("t", 0).log_end_offset == 0


def test_a_deleted_topics_log_refuses_appends_and_reads_but_slices_under_way_stay_valid(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("t", 1)
    plog = manager.log("t", 0)
    plog.append(make_batch(3))
    under_way = plog.read(0, 1 << 20)
    expected = under_way.read()
    manager.delete_topic("t")
    with open(tmp_path / "other", "wb") as f:
        f.write(b"not a segment" * 100)
    other_fds = [os.open(tmp_path / "other", os.O_RDWR) for _ in range(8)]  # would reuse a closed fd
    try:
        assert under_way.read() == expected
        with pytest.raises(LogClosedError):
            plog.append(make_batch(1))
        with pytest.raises(LogClosedError):
            plog.read(0, 1000)
        assert (tmp_path / "other").read_bytes() == b"not a segment" * 100
    finally:
        for fd in other_fds:
            os.close(fd)


def test_a_folder_left_by_a_deleted_topic_is_not_taken_by_its_successor(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("t", 1)
    manager.log("t", 0).append(make_batch(3))
    manager.close()
    # A crash after the delete's commit point (topics.json) but before the folder went.
    (tmp_path / TOPICS_FILE).write_text("{}")
    again = LogManager(str(tmp_path)).open()
    assert again.topics == {}
    again.create_topic("t", 1)
    assert again.log("t", 0).log_end_offset == 0 and read_all(again.log("t", 0)) == []


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "with space", "é", "x" * 250, "a\x00b", "newline\n"])
def test_illegal_topic_names_are_refused_and_change_nothing(tmp_path, name):
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("ok", 1)
    before = tree(tmp_path)
    with pytest.raises(InvalidTopicError):
        manager.create_topic(name, 1)
    assert tree(tmp_path) == before and sorted(manager.topics) == ["ok"]


@pytest.mark.parametrize(
    "configs",
    [
        {"no.such.config": 1},
        {"segment.bytes": "abc"},
        {"segment.bytes": 13},
        {"retention.ms": -5},
        {"cleanup.policy": "shred"},
        {"cleanup.policy": "compact,compact"},
        {"min.cleanable.dirty.ratio": 1.5},
        {"min.cleanable.dirty.ratio": "half"},
        {"min.compaction.lag.ms": -1},
        {"min.compaction.lag.ms": 10, "max.compaction.lag.ms": 5},
        {"delete.retention.ms": -1},
        {"message.timestamp.type": "WallClock"},
        {"remote.storage.enable": "maybe"},
        {"flush.messages": 0},
    ],
)
def test_bad_topic_configs_are_refused_and_change_nothing(tmp_path, configs):
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("ok", 1, {"retention.ms": 1000})
    before = tree(tmp_path)
    with pytest.raises(InvalidConfigError):
        manager.create_topic("new", 1, configs)
    with pytest.raises(InvalidConfigError):
        manager.alter_topic_configs("ok", configs)
    assert tree(tmp_path) == before and sorted(manager.topics) == ["ok"]
    assert manager.topic("ok").overrides == {"retention.ms": 1000}
    assert manager.log("ok", 0).config.retention_ms == 1000


@pytest.mark.parametrize("policy", ["compact", "compact,delete", "delete, compact"])
def test_compacted_topics_are_taken_with_their_cleaner_configs(tmp_path, policy):
    manager = LogManager(str(tmp_path), {"min.cleanable.dirty.ratio": 0.25}).open()
    manager.create_topic("t", 1, {"cleanup.policy": policy, "min.compaction.lag.ms": "5", "delete.retention.ms": 7})
    config = manager.log("t", 0).config
    assert config.compact and config.delete == ("delete" in policy)
    assert (config.min_cleanable_ratio, config.min_compaction_lag_ms, config.delete_retention_ms) == (0.25, 5, 7)
    assert config.max_compaction_lag_ms == 2**63 - 1


def test_existing_topics_bad_partition_counts_and_unknown_names_are_typed_errors(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("t", 2)
    before = tree(tmp_path)
    with pytest.raises(TopicExistsError):
        manager.create_topic("t", 5)
    with pytest.raises(InvalidConfigError):
        manager.create_topic("u", 0)
    with pytest.raises(InvalidConfigError):
        manager.add_partitions("t", 2)
    for call in (lambda: manager.topic("nope"), lambda: manager.log("nope", 0), lambda: manager.log("t", 2),
                 lambda: manager.log("t", -1), lambda: manager.delete_topic("nope"),
                 lambda: manager.alter_topic_configs("nope", {}), lambda: manager.add_partitions("nope", 3)):
        with pytest.raises(UnknownTopicOrPartitionError):
            call()
    with pytest.raises(InvalidConfigError):
        manager.alter_topic_configs("t", {}, delete=("no.such.config",))
    assert tree(tmp_path) == before and manager.topic("t").partitions == 2


def test_validate_only_creates_nothing(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    before = tree(tmp_path)
    topic = manager.create_topic("t", 3, {"segment.bytes": 1 << 20}, validate_only=True)
    assert topic.partitions == 3 and manager.topics == {} and tree(tmp_path) == before


def test_altered_configs_reach_live_logs_and_persist(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("t", 2, {"segment.bytes": 1 << 20, "retention.ms": 1000})
    manager.alter_topic_configs("t", {"segment.bytes": 300}, delete=("retention.ms",))
    plog = manager.log("t", 1)
    assert plog.config.segment_bytes == 300 and plog.config.retention_ms == 7 * 24 * 3600 * 1000
    for _ in range(4):
        plog.append(make_batch(2, value_size=80))
    assert len(plog.segments) > 1  # the new segment.bytes took effect on appends
    manager.close()
    again = LogManager(str(tmp_path)).open()
    assert again.topic("t").overrides == {"segment.bytes": 300}


def test_added_partitions_exist_persist_and_take_appends(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("t", 1, {"segment.bytes": 5000})
    manager.add_partitions("t", 3)
    manager.log("t", 2).append(make_batch(2))
    assert manager.log("t", 2).config.segment_bytes == 5000
    manager.close()
    again = LogManager(str(tmp_path)).open()
    assert again.topic("t").partitions == 3 and again.log("t", 2).log_end_offset == 2
    assert dir_state(tmp_path / "t-2")


def test_flush_due_flushes_logs_whose_flush_ms_has_passed(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("slow", 1, {"flush.ms": 60_000})
    manager.create_topic("fast", 1, {"flush.ms": 0})
    for name in ("slow", "fast"):
        manager.log(name, 0).append(make_batch(2))
    asyncio.run(manager.flush_due())
    assert manager.log("fast", 0).recovery_point == 2 and manager.log("slow", 0).recovery_point == 0
    slow = manager.log("slow", 0)
    asyncio.run(manager.flush_due(now_ms=slow.last_flush_ms + 60_000))
    assert slow.recovery_point == 2


def test_the_background_loop_flushes_and_stops_when_cancelled(tmp_path):
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("t", 1, {"flush.ms": 0})
    plog = manager.log("t", 0)

    async def scenario():
        task = asyncio.create_task(manager.run(flush_check_ms=5, checkpoint_ms=10))
        plog.append(make_batch(3))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if plog.recovery_point == 3 and "t 0 3" in (tmp_path / CHECKPOINT_FILE).read_text():
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert plog.recovery_point == 3
    assert (tmp_path / CHECKPOINT_FILE).read_text().splitlines()[2] == "t 0 3"
