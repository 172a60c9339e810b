"""Static group membership (KIP-345) with confluent-kafka: a consumer restarting with the
same group.instance.id inside its session timeout takes its old partitions back with no
rebalance (librdkafka's 0102_static_group_rebalance); one that stays away is removed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from kio.schema.errors import ErrorCode
from kio.schema.heartbeat.v4 import HeartbeatRequest
from kio.schema.join_group.v5 import request as join_v5
from kio.schema.join_group.v9 import request as join_v9
from kio.schema.sync_group.v5 import request as sync_v5

from .cluster import KafkaServer
from .test_confluent import consumer, create_topic, poll_until
from .wire import Wire

JOIN_GROUP, SYNC_GROUP, HEARTBEAT = 11, 14, 12


@dataclass
class StaticMember:
    """A consumer with a group.instance.id, and what its rebalance callbacks saw."""

    instance_id: str
    client: Consumer
    assigned: list[int] = field(default_factory=list)
    rebalances: int = 0  # on_assign and on_revoke calls

    def on_assign(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = sorted(p.partition for p in partitions)
        self.rebalances += 1

    def on_revoke(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = []
        self.rebalances += 1


def static_member(server: KafkaServer, topic: str, group: str, instance_id: str,
                  session_timeout_ms: int) -> StaticMember:
    client = consumer(server, **{"group.id": group, "group.instance.id": instance_id,
                                 "session.timeout.ms": session_timeout_ms, "heartbeat.interval.ms": 200})
    member = StaticMember(instance_id, client)
    client.subscribe([topic], on_assign=member.on_assign, on_revoke=member.on_revoke)
    return member


def heartbeat(server: KafkaServer, group: str, generation_id: int, member_id: str, instance_id: str) -> ErrorCode:
    wire = Wire(server.bootstrap)
    try:
        wire.send(HeartbeatRequest(group_id=group, generation_id=generation_id, member_id=member_id,
                                   group_instance_id=instance_id), 1)
        return wire.receive(HEARTBEAT, 4)[1].error_code
    finally:
        wire.close()


def current_generation(server: KafkaServer, group: str, member: StaticMember) -> int:
    """The generation the group accepts heartbeats of from `member` (the group is Stable)."""
    member_id = member.client.memberid()
    assert member_id
    for generation_id in range(1, 50):
        if heartbeat(server, group, generation_id, member_id, member.instance_id) == ErrorCode.none:
            return generation_id
    raise AssertionError("no generation accepts the member's heartbeat")


def keep_polling(clients: list[Consumer], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for client in clients:
            message = client.poll(0.05)
            assert message is None or message.error() is None, message.error()


def two_members(server: KafkaServer, name: str, session_timeout_ms: int) -> tuple[StaticMember, StaticMember]:
    """Members "a" and "b" of a group on a topic of 4 partitions, each with two of them."""
    create_topic(server, name, partitions=4)
    a = static_member(server, name, name, "a", session_timeout_ms)
    b = static_member(server, name, name, "b", session_timeout_ms)
    poll_until([a.client, b.client], lambda: len(a.assigned) == len(b.assigned) == 2)
    return a, b


def test_a_static_member_restarting_within_its_session_timeout_gets_its_partitions_back_without_a_rebalance(
        kafka_server: KafkaServer) -> None:
    group = "static-restart"
    a, b = two_members(kafka_server, group, session_timeout_ms=6000)
    generation_id = current_generation(kafka_server, group, b)
    a_partitions, a_member_id, b_rebalances = a.assigned, a.client.memberid(), b.rebalances
    a.client.close()  # a static member sends no LeaveGroup: the group keeps its place
    restarted = static_member(kafka_server, group, group, "a", session_timeout_ms=6000)
    poll_until([restarted.client, b.client], lambda: restarted.assigned != [], seconds=5)
    assert restarted.assigned == a_partitions
    assert restarted.client.memberid() != a_member_id
    keep_polling([restarted.client, b.client], seconds=1.5)  # several heartbeats: none asks b to rejoin
    assert b.rebalances == b_rebalances and len(b.assigned) == 2
    assert current_generation(kafka_server, group, b) == generation_id
    assert current_generation(kafka_server, group, restarted) == generation_id
    # The earlier incarnation is fenced, not merely unknown.
    assert heartbeat(kafka_server, group, generation_id, a_member_id, "a") == ErrorCode.fenced_instance_id
    restarted.client.close()
    b.client.close()


def test_a_static_member_away_past_its_session_timeout_is_removed_and_the_group_rebalances(
        kafka_server: KafkaServer) -> None:
    group = "static-away"
    a, b = two_members(kafka_server, group, session_timeout_ms=2000)
    generation_id = current_generation(kafka_server, group, b)
    a.client.close()
    keep_polling([b.client], seconds=1)  # the group waits out a's session timeout (2 s)
    assert len(b.assigned) == 2
    poll_until([b.client], lambda: b.assigned == [0, 1, 2, 3], seconds=10)
    assert current_generation(kafka_server, group, b) > generation_id
    b.client.close()


def test_joingroup_v9_tells_a_restarted_leader_to_keep_the_assignment(kafka_server: KafkaServer) -> None:
    """Kafka's answers to a static leader's restart: from v9 it stays the leader with
    skip_assignment (KIP-814); before v9 it is named a follower, so it does not reassign."""
    group, wire = "static-v9", Wire(kafka_server.bootstrap)

    def join(version: int) -> Any:
        schema = join_v9 if version == 9 else join_v5
        extra = {"reason": None} if version == 9 else {}
        wire.send(schema.JoinGroupRequest(
            group_id=group, session_timeout=timedelta(seconds=10), rebalance_timeout=timedelta(seconds=10),
            member_id="", group_instance_id="w", protocol_type="consumer",
            protocols=(schema.JoinGroupRequestProtocol(name="range", metadata=b"meta"),), **extra), 1)
        return wire.receive(JOIN_GROUP, version)[1]

    first = join(9)
    assert (first.error_code, first.generation_id, first.leader) == (ErrorCode.none, 1, first.member_id)
    wire.send(sync_v5.SyncGroupRequest(group_id=group, generation_id=1, member_id=first.member_id,
                                       group_instance_id="w", protocol_type="consumer", protocol_name="range",
                                       assignments=(sync_v5.SyncGroupRequestAssignment(
                                           member_id=first.member_id, assignment=b"mine"),)), 2)
    assert wire.receive(SYNC_GROUP, 5)[1].error_code == ErrorCode.none
    again = join(9)
    assert (again.generation_id, again.leader, again.skip_assignment) == (1, again.member_id, True)
    assert [m.member_id for m in again.members] == [again.member_id] and again.member_id != first.member_id
    before_v9 = join(5)
    assert (before_v9.generation_id, before_v9.leader, before_v9.members) == (1, again.member_id, ())
    wire.send(sync_v5.SyncGroupRequest(group_id=group, generation_id=1, member_id=before_v9.member_id,
                                       group_instance_id="w", protocol_type="consumer", protocol_name="range",
                                       assignments=()), 3)
    assert wire.receive(SYNC_GROUP, 5)[1].assignment == b"mine"
    wire.close()
