"""Committed offsets in-process: checks, the records in `__consumer_offsets` and their
layout, replay at start-up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from broker.groups.coordinator import GroupCoordinator
from broker.groups.offset_store import (
    CommittedOffset,
    ProducerEpoch,
    TopicPartition,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    java_string_hash,
)
from broker.groups.offsets import OffsetCommit
from broker.internal_topics import OFFSETS_TOPIC
from broker.node import Broker
from broker.settings import BrokerSettings
from fetch.reader import Reader
from hotlog.manager import LogManager

from ..support import join, run

T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)


def test_committed_offsets_are_checked_kept_and_read_back_from_the_offsets_topic(tmp_path: Any) -> None:
    async def commit(broker: Broker, groups: GroupCoordinator) -> None:
        broker.logs.create_topic("t", 2)
        member = await groups.membership.join(join())
        await groups.membership.sync("g", 1, member.member_id, None, None, None, {})
        errors = await groups.offsets.commit("g", 1, member.member_id, None,
                                             {T0: OffsetCommit(5, 3, "five"), TopicPartition("t", 7): OffsetCommit(1),
                                              TopicPartition("nope", 0): OffsetCommit(1)})
        assert errors == {T0: ErrorCode.none, ("t", 7): ErrorCode.unknown_topic_or_partition,
                          ("nope", 0): ErrorCode.unknown_topic_or_partition}
        assert await groups.offsets.commit("g", 0, member.member_id, None, {T1: OffsetCommit(1)}) == \
            {T1: ErrorCode.illegal_generation}
        # Outside group management one may commit only while the group has no members.
        assert await groups.offsets.commit("g", -1, "", None, {T1: OffsetCommit(1)}) == \
            {T1: ErrorCode.unknown_member_id}
        assert await groups.offsets.commit("solo", -1, "", None, {T1: OffsetCommit(9, -1, "x" * 5000)}) == \
            {T1: ErrorCode.offset_metadata_too_large}
        assert await groups.offsets.commit("solo", -1, "", None, {T1: OffsetCommit(9)}) == \
            {T1: ErrorCode.none}
        assert (await groups.delete_groups(["g", "solo", "ghost"])) == \
            {"g": ErrorCode.non_empty_group, "solo": ErrorCode.none, "ghost": ErrorCode.group_id_not_found}
        groups.membership.leave("g", [(member.member_id, None)])

    async def reload(broker: Broker, groups: GroupCoordinator) -> None:
        assert groups.offsets.committed("g", [T0, T1]) == {T0: groups.offsets.groups["g"][T0], T1: None}
        assert groups.offsets.groups["g"][T0].offset == 5
        assert groups.offsets.groups["g"][T0].metadata == "five"
        assert "solo" not in groups.offsets.groups  # deleted: its tombstones were read back too
        assert broker.logs.topics[OFFSETS_TOPIC].partitions == 2
        # Never tiered: local retention could otherwise delete what start-up must read.
        assert broker.logs.topics[OFFSETS_TOPIC].overrides["remote.storage.enable"] is False

    run(str(tmp_path), commit)
    run(str(tmp_path), reload)


def test_offset_records_use_kafkas_layout() -> None:
    key = encode_key("my-group", "orders", 7)
    assert key == b"\x00\x01\x00\x08my-group\x00\x06orders\x00\x00\x00\x07"
    assert decode_key(key) == ("my-group", "orders", 7)
    assert decode_key(b"\x00\x02\x00\x01g") is None  # group metadata: not an offset
    committed = CommittedOffset(42, 3, "meta", 1_700_000_000_000)
    assert decode_value(encode_value(committed)) == committed


@pytest.mark.parametrize("text,expected", [("", 0), ("abc", 96354), ("hello", 99162322), ("é", 233),
                                           ("\U0001F600", 1772899), ("polygenelubricants", -2147483648)])
def test_group_partition_hash_is_javas_string_hash(text: str, expected: int) -> None:
    assert java_string_hash(text) == expected


def test_replay_ends_a_producers_transaction_offsets_only_in_their_own_partition(tmp_path: Any) -> None:
    groups_by_partition: dict[int, str] = {}

    async def write(broker: Broker, groups: GroupCoordinator) -> None:
        broker.logs.create_topic("t", 1)
        for name in (f"group-{i}" for i in range(100)):
            groups_by_partition.setdefault(groups.offsets.store.partition_for(name), name)
        first, second = groups_by_partition[1], groups_by_partition[0]
        # One producer: a transaction committing offsets in partition 1, then an open one in partition 0.
        await groups.offsets.commit_in_transaction(first, ProducerEpoch(5, 0), -1, "", None, {T0: OffsetCommit(10)})
        broker.logs.log(OFFSETS_TOPIC, 1).append_marker(5, 0, commit=True, coordinator_epoch=0)
        groups.offsets.end_txn(5, commit=True)
        await groups.offsets.commit_in_transaction(second, ProducerEpoch(5, 0), -1, "", None, {T0: OffsetCommit(999)})

    async def reload(broker: Broker, groups: GroupCoordinator) -> None:
        first, second = groups_by_partition[1], groups_by_partition[0]
        assert groups.offsets.committed(first, [T0])[T0].offset == 10
        assert groups.offsets.committed(second, [T0]) == {T0: None}  # its transaction is still open
        assert groups.offsets.pending_in_transactions(second) == {T0}

    run(str(tmp_path), write)
    run(str(tmp_path), reload)


def test_an_abort_while_offsets_wait_for_their_fsync_drops_them(tmp_path) -> None:
    async def scenario() -> None:
        settings = BrokerSettings.parse({"offsets.topic.num.partitions": "1"})
        logs = LogManager(str(tmp_path))
        logs.open()
        logs.create_topic("t", 1, {})
        groups = GroupCoordinator(logs, Reader(logs), settings)
        await groups.load()
        committing = asyncio.create_task(
            groups.offsets.commit_in_transaction("g", ProducerEpoch(5, 0), -1, "", None, {T0: OffsetCommit(42)}))
        await asyncio.sleep(0)  # appended; waiting for the fsync
        groups.offsets.end_txn(5, commit=False)  # the ABORT marker lands meanwhile (a fence or a timeout)
        assert await committing == {T0: ErrorCode.none}
        assert groups.offsets.pending_in_transactions("g") == set()  # nothing left to hold the group
        groups.offsets.end_txn(5, commit=True)  # the producer's next transaction commits
        assert groups.offsets.committed("g", [T0]) == {T0: None}
        logs.close()

    asyncio.run(scenario())


def test_records_start_up_cannot_parse_are_logged_counted_and_skipped(tmp_path: Any, caplog) -> None:
    """Garbage in the internal topics (a bad disk, an older version) must not keep the
    broker from starting; the good records around it still count."""
    from prometheus_client import REGISTRY

    from broker.internal_topics import TXN_STATE_TOPIC
    from hotlog.records import Record, build_batch

    def skipped(topic: str) -> float:
        return REGISTRY.get_sample_value("tierlog_internal_records_skipped_total", {"topic": topic}) or 0.0

    async def write(broker: Broker, groups: GroupCoordinator) -> None:
        broker.logs.create_topic("t", 2)
        assert await groups.offsets.commit("g", -1, "", None, {T0: OffsetCommit(5)}) == {T0: ErrorCode.none}
        partition = groups.offsets.store.partition_for("g")
        garbage = [Record(b"\x00\x01\xff\xff", b"x"), Record(b"\x00\x01\x00\x01g\x00\x01t", b"\x00\x03"),
                   Record(encode_key("g", "t", 0), b"\x00\x03\x00")]
        broker.logs.log(OFFSETS_TOPIC, partition).append(build_batch(garbage))
        assert await groups.offsets.commit("g", -1, "", None, {T1: OffsetCommit(7)}) == {T1: ErrorCode.none}
        broker.logs.create_topic(TXN_STATE_TOPIC, 1, {"remote.storage.enable": "false"})
        broker.logs.log(TXN_STATE_TOPIC, 0).append(build_batch([Record(b"\x00\x00\x00\x02id", b"\x00")]))

    before = skipped(OFFSETS_TOPIC), skipped(TXN_STATE_TOPIC)

    async def reload(broker: Broker, groups: GroupCoordinator) -> None:
        committed = groups.offsets.committed("g", [T0, T1])
        assert (committed[T0].offset, committed[T1].offset) == (5, 7)  # type: ignore[union-attr]

    run(str(tmp_path), write, offsets_topic_num_partitions=1)
    run(str(tmp_path), reload, offsets_topic_num_partitions=1)
    assert skipped(OFFSETS_TOPIC) - before[0] == 3
    assert skipped(TXN_STATE_TOPIC) - before[1] == 1
    assert "skipping an unparseable record" in caplog.text
