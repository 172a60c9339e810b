"""The group coordinator in-process: joins, syncs, timeouts and committed offsets."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest
from kio.schema.errors import ErrorCode

from api.broker import Broker
from api.kafka.coordinator import GroupCoordinator, GroupState, JoinRequest
from api.kafka.offset_store import (
    OFFSETS_TOPIC,
    CommittedOffset,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    java_string_hash,
)
from api.settings import BrokerSettings

Scenario = Callable[[Broker, GroupCoordinator], Awaitable[None]]


def run(data_dir: str, scenario: Scenario, **settings: Any) -> None:
    async def main() -> None:
        values = {"group_initial_rebalance_delay_ms": 0, "group_min_session_timeout_ms": 10,
                  "offsets_topic_num_partitions": 2, **settings}
        broker = Broker(data_dir, BrokerSettings(**values))
        await broker.start()
        try:
            await asyncio.wait_for(scenario(broker, broker.groups), 20)
        finally:
            await broker.stop()

    asyncio.run(main())


def join(member_id: str = "", *, group: str = "g", session_ms: int = 5000, rebalance_ms: int = 5000,
         protocols: tuple[tuple[str, bytes], ...] = (("range", b"meta"),), protocol_type: str = "consumer",
         require_known_member_id: bool = False) -> JoinRequest:
    return JoinRequest(group, member_id, None, protocol_type, protocols, session_ms, rebalance_ms, "client",
                       "/127.0.0.1", require_known_member_id)


def test_two_members_join_one_generation_and_the_leader_assignment_reaches_both(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        first = await groups.join(join())
        assert (first.error, first.generation_id, first.leader_id) == (ErrorCode.none, 1, first.member_id)
        # A second member: the leader must rejoin before the new generation forms.
        second_join = asyncio.ensure_future(groups.join(join()))
        await asyncio.sleep(0.05)
        assert groups.groups["g"].state is GroupState.PREPARING_REBALANCE
        assert groups.heartbeat("g", 1, first.member_id, None) == ErrorCode.rebalance_in_progress
        leader, second = await asyncio.gather(groups.join(join(first.member_id)), second_join)
        assert leader.generation_id == second.generation_id == 2
        assert [m[0] for m in leader.members] == [first.member_id, second.member_id] and second.members == ()
        follower_sync = asyncio.ensure_future(groups.sync("g", 2, second.member_id, None, None, None, {}))
        leader_sync = await groups.sync("g", 2, first.member_id, None, None, None,
                                        {first.member_id: b"p0", second.member_id: b"p1"})
        assert (leader_sync.assignment, (await follower_sync).assignment) == (b"p0", b"p1")
        assert groups.groups["g"].state is GroupState.STABLE
        assert groups.heartbeat("g", 2, second.member_id, None) == ErrorCode.none
        assert groups.heartbeat("g", 1, second.member_id, None) == ErrorCode.illegal_generation
        assert groups.heartbeat("g", 2, "stranger", None) == ErrorCode.unknown_member_id

    run(str(tmp_path), scenario)


def test_kip394_hands_out_a_member_id_before_joining(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        asked = await groups.join(join(require_known_member_id=True))
        assert asked.error == ErrorCode.member_id_required and asked.member_id
        assert groups.groups["g"].members == {}
        joined = await groups.join(join(asked.member_id, require_known_member_id=True))
        assert (joined.error, joined.member_id) == (ErrorCode.none, asked.member_id)

    run(str(tmp_path), scenario)


def test_a_member_missing_its_session_timeout_is_removed_and_the_group_rebalances(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        quiet = await groups.join(join(session_ms=300))
        busy_join = asyncio.ensure_future(groups.join(join(session_ms=300)))
        await asyncio.sleep(0.01)
        quiet_rejoin = await groups.join(join(quiet.member_id, session_ms=300))
        busy = await busy_join
        await asyncio.gather(groups.sync("g", 2, quiet.member_id, None, None, None, {}),
                             groups.sync("g", 2, busy.member_id, None, None, None, {}))
        assert quiet_rejoin.generation_id == 2
        for _ in range(8):  # busy heartbeats, quiet does not
            await asyncio.sleep(0.1)
            error = groups.heartbeat("g", 2, busy.member_id, None)
        assert error == ErrorCode.rebalance_in_progress
        assert list(groups.groups["g"].members) == [busy.member_id]
        alone = await groups.join(join(busy.member_id, session_ms=300))
        assert (alone.generation_id, alone.leader_id, len(alone.members)) == (3, busy.member_id, 1)

    run(str(tmp_path), scenario)


def test_a_member_that_does_not_rejoin_in_the_rebalance_timeout_is_dropped(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        stale = await groups.join(join(session_ms=10_000, rebalance_ms=300))
        await groups.sync("g", 1, stale.member_id, None, None, None, {})
        newcomer = await groups.join(join(session_ms=10_000, rebalance_ms=300))  # waits out the old member
        assert (newcomer.generation_id, newcomer.leader_id) == (2, newcomer.member_id)
        assert list(groups.groups["g"].members) == [newcomer.member_id]
        assert groups.heartbeat("g", 1, stale.member_id, None) == ErrorCode.unknown_member_id

    run(str(tmp_path), scenario)


def test_a_member_whose_join_is_dropped_does_not_hold_up_the_rebalance(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        first = await groups.join(join(session_ms=300, rebalance_ms=10_000))
        vanishing = asyncio.ensure_future(groups.join(join(session_ms=300, rebalance_ms=10_000)))
        await asyncio.sleep(0.05)
        vanishing.cancel()  # its connection closed while it waited
        rejoined = await groups.join(join(first.member_id, session_ms=300, rebalance_ms=10_000))
        assert rejoined.generation_id == 2 and len(rejoined.members) == 2  # at once, not after 10 s
        await groups.sync("g", 2, first.member_id, None, None, None, {})
        for _ in range(6):  # the vanished member sends no heartbeats and times out
            await asyncio.sleep(0.1)
            groups.heartbeat("g", 2, first.member_id, None)
        assert list(groups.groups["g"].members) == [first.member_id]

    run(str(tmp_path), scenario)


def test_the_initial_delay_gathers_members_starting_together(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        first = asyncio.ensure_future(groups.join(join()))
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(groups.join(join()))
        results = await asyncio.gather(first, second)
        assert {r.generation_id for r in results} == {1}

    run(str(tmp_path), scenario, group_initial_rebalance_delay_ms=300)


def test_joins_that_do_not_fit_the_group_are_refused(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        assert (await groups.join(join(session_ms=5))).error == ErrorCode.invalid_session_timeout
        await groups.join(join())
        assert (await groups.join(join(protocol_type="connect"))).error == ErrorCode.inconsistent_group_protocol
        assert (await groups.join(join(protocols=(("sticky", b""),)))).error == \
            ErrorCode.inconsistent_group_protocol
        assert (await groups.join(join(group=""))).error == ErrorCode.invalid_group_id

    run(str(tmp_path), scenario)


def test_committed_offsets_are_checked_kept_and_read_back_from_the_offsets_topic(tmp_path: Any) -> None:
    async def commit(broker: Broker, groups: GroupCoordinator) -> None:
        broker.logs.create_topic("t", 2)
        member = await groups.join(join())
        await groups.sync("g", 1, member.member_id, None, None, None, {})
        errors = await groups.commit_offsets("g", 1, member.member_id, None,
                                             {("t", 0): (5, 3, "five"), ("t", 7): (1, -1, ""),
                                              ("nope", 0): (1, -1, "")})
        assert errors == {("t", 0): ErrorCode.none, ("t", 7): ErrorCode.unknown_topic_or_partition,
                          ("nope", 0): ErrorCode.unknown_topic_or_partition}
        assert await groups.commit_offsets("g", 0, member.member_id, None, {("t", 1): (1, -1, "")}) == \
            {("t", 1): ErrorCode.illegal_generation}
        # Outside group management one may commit only while the group has no members.
        assert await groups.commit_offsets("g", -1, "", None, {("t", 1): (1, -1, "")}) == \
            {("t", 1): ErrorCode.unknown_member_id}
        assert await groups.commit_offsets("solo", -1, "", None, {("t", 1): (9, -1, "x" * 5000)}) == \
            {("t", 1): ErrorCode.offset_metadata_too_large}
        assert await groups.commit_offsets("solo", -1, "", None, {("t", 1): (9, -1, "")}) == \
            {("t", 1): ErrorCode.none}
        assert (await groups.delete_groups(["g", "solo", "ghost"])) == \
            {"g": ErrorCode.non_empty_group, "solo": ErrorCode.none, "ghost": ErrorCode.group_id_not_found}
        groups.leave("g", [(member.member_id, None)])

    async def reload(broker: Broker, groups: GroupCoordinator) -> None:
        assert groups.committed("g", [("t", 0), ("t", 1)]) == {("t", 0): groups.groups["g"].offsets[("t", 0)],
                                                               ("t", 1): None}
        assert groups.groups["g"].offsets[("t", 0)].offset == 5
        assert groups.groups["g"].offsets[("t", 0)].metadata == "five"
        assert "solo" not in groups.groups  # deleted: its tombstones were read back too
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


def test_an_acks_all_produce_whose_fsync_fails_is_answered_kafka_storage_error(tmp_path: Any, monkeypatch) -> None:
    from datetime import timedelta

    from kio.schema.produce.v9 import request as produce_v9

    from api.kafka.codec import response_type
    from api.kafka.context import Call, KafkaContext
    from api.kafka.produce import handle_produce
    from hotlog.records import Record, build_batch

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        broker.logs.create_topic("t", 1)
        kafka = KafkaContext(broker, groups, "127.0.0.1", 9092, "cluster")
        request = produce_v9.ProduceRequest(
            transactional_id=None, acks=-1, timeout=timedelta(seconds=5),
            topic_data=(produce_v9.TopicProduceData(name="t", partition_data=(
                produce_v9.PartitionProduceData(index=0, records=build_batch([Record(None, b"v")])),)),))
        monkeypatch.setattr("hotlog.segment.os.fdatasync", failing_fsync)
        response = await handle_produce(kafka, Call(9, "client", "127.0.0.1", response_type(0, 9)), request)
        monkeypatch.undo()
        answer = response.responses[0].partition_responses[0]
        assert answer.error_code == ErrorCode.kafka_storage_error and "fsync" in answer.error_message

    run(str(tmp_path), scenario)


def test_replay_ends_a_producers_transaction_offsets_only_in_their_own_partition(tmp_path: Any) -> None:
    groups_by_partition: dict[int, str] = {}

    async def write(broker: Broker, groups: GroupCoordinator) -> None:
        broker.logs.create_topic("t", 1)
        for name in (f"group-{i}" for i in range(100)):
            groups_by_partition.setdefault(groups.store.partition_for(name), name)
        first, second = groups_by_partition[1], groups_by_partition[0]
        # One producer: a transaction committing offsets in partition 1, then an open one in partition 0.
        await groups.commit_txn_offsets(first, (5, 0), -1, "", None, {("t", 0): (10, -1, "")})
        broker.logs.log(OFFSETS_TOPIC, 1).append_marker(5, 0, commit=True, coordinator_epoch=0)
        groups.end_txn(5, commit=True)
        await groups.commit_txn_offsets(second, (5, 0), -1, "", None, {("t", 0): (999, -1, "")})

    async def reload(broker: Broker, groups: GroupCoordinator) -> None:
        first, second = groups_by_partition[1], groups_by_partition[0]
        assert groups.committed(first, [("t", 0)])[("t", 0)].offset == 10
        assert groups.committed(second, [("t", 0)]) == {("t", 0): None}  # its transaction is still open
        assert groups.pending_txn_partitions(second) == {("t", 0)}

    run(str(tmp_path), write)
    run(str(tmp_path), reload)
