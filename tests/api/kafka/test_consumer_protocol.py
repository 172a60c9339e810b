"""The consumer group protocol (KIP-848) with confluent-kafka consumers speaking it
(`group.protocol=consumer`): the broker assigns, partitions move only once revoked, offsets
commit with member epochs, and classic groups live beside these ones."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import OFFSET_INVALID, ConsumerGroupState, ConsumerGroupType, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka.admin import NewPartitions
from kafka import TopicPartition as KTopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import GroupSubscribedToTopicError, NoError
from kio.schema.consumer_group_heartbeat.v1 import request as heartbeat_v1
from kio.schema.errors import ErrorCode
from kio.schema.offset_commit.v8 import request as commit_v8
from kio.schema.offset_commit.v9 import request as commit_v9
from kio.schema.offset_fetch.v9 import request as fetch_v9
from kio.schema.types import GroupId, TopicName
from kio.static.primitive import i32, i32Timedelta

from ..server import http_get
from .cluster import KafkaServer
from .test_confluent import admin, consumer, create_topic, produce
from .wire import Wire

HEARTBEAT_MS = 200
CONSUMER_GROUP_HEARTBEAT, OFFSET_COMMIT, OFFSET_FETCH = 68, 8, 9
FAST_CONSUMER_GROUPS = (f"group.consumer.heartbeat.interval.ms={HEARTBEAT_MS}",
                        "group.consumer.session.timeout.ms=6000")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    server = KafkaServer(str(tmp_path_factory.mktemp("kip848") / "data"), *FAST_CONSUMER_GROUPS).start()
    yield server
    if server.running:
        assert server.stop() == 0, server.log()


@dataclass
class Member:
    """A `group.protocol=consumer` consumer and what its rebalance callbacks saw."""

    client: KafkaConsumer
    owned: set[int] = field(default_factory=set)
    events: list[tuple[str, frozenset[int]]] = field(default_factory=list)  # ("assign"/"revoke", partitions)
    # Shared by the members of a test: every member's callbacks in the order they ran.
    timeline: list[tuple[Member, str, frozenset[int]]] = field(default_factory=list, repr=False)

    def on_assign(self, _: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        # The consumer protocol is incremental: each callback names what changes.
        added = {p.partition for p in partitions}
        self.owned |= added
        self.events.append(("assign", frozenset(added)))
        self.timeline.append((self, "assign", frozenset(added)))

    def on_revoke(self, _: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        gone = {p.partition for p in partitions}
        self.owned -= gone
        self.events.append(("revoke", frozenset(gone)))
        self.timeline.append((self, "revoke", frozenset(gone)))


def never_owned_twice(timeline: list[tuple[Member, str, frozenset[int]]]) -> None:
    """Replay the callbacks: no partition is assigned to one member while another owns it.
    A member's revocation callback runs before its heartbeat says it let go, and the broker
    hands a partition on only after that heartbeat."""
    owners: dict[int, Member] = {}
    for who, kind, partitions in timeline:
        for partition in partitions:
            if kind == "revoke":
                del owners[partition]
            else:
                assert owners.setdefault(partition, who) is who, f"partition {partition} owned twice"


def member(server: KafkaServer, topic: str, group: str,
           timeline: list[tuple[Member, str, frozenset[int]]] | None = None,
           config: Mapping[str, str] | None = None) -> Member:
    client = consumer(server, **{"group.id": group, "group.protocol": "consumer", **(config or {})})
    joined = Member(client) if timeline is None else Member(client, timeline=timeline)
    client.subscribe([topic], on_assign=joined.on_assign, on_revoke=joined.on_revoke)
    return joined


def poll_until(members: list[Member], done: Callable[[], bool], seconds: float = 15,
               read: list[int] | None = None) -> None:
    """Poll every member until `done`, adding the values of the records they read to `read`."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, [m.owned for m in members]
        for m in members:
            message = m.client.poll(0.02)
            if message is not None:
                assert message.error() is None, message.error()
                if read is not None:
                    read.append(int(message.value() or b""))


def split(members: list[Member], partitions: int) -> Callable[[], bool]:
    """Whether the members own every partition between them, each once, all evenly."""
    def done() -> bool:
        owned = [p for m in members for p in m.owned]
        sizes = {len(m.owned) for m in members}
        return sorted(owned) == list(range(partitions)) and max(sizes) - min(sizes) <= 1
    return done


def fresh(server: KafkaServer, partitions: int = 4) -> str:
    name = f"kip848-{uuid.uuid4().hex[:8]}"
    create_topic(server, name, partitions=partitions)
    return name


def test_two_members_share_four_partitions_and_a_third_gets_its_share_only_after_revocation(
        server: KafkaServer) -> None:
    topic = fresh(server)
    timeline: list[tuple[Member, str, frozenset[int]]] = []
    a, b = member(server, topic, topic, timeline), member(server, topic, topic, timeline)
    poll_until([a, b], split([a, b], 4))
    assert len(a.owned) == len(b.owned) == 2
    c = member(server, topic, topic, timeline)
    poll_until([a, b, c], split([a, b, c], 4))
    # What c was given, its earlier owner had revoked first: at no moment do two own one.
    never_owned_twice(timeline)
    assert any(who is not c and kind == "revoke" for who, kind, _ in timeline)
    for m in (a, b, c):
        m.client.close()


def test_a_member_that_closes_leaves_and_its_partitions_go_to_the_others(server: KafkaServer) -> None:
    topic = fresh(server)
    a, b = member(server, topic, topic), member(server, topic, topic)
    poll_until([a, b], split([a, b], 4))
    started = time.monotonic()
    a.client.close()  # a leave heartbeat (epoch -1): no session timeout to wait out
    poll_until([b], lambda: b.owned == {0, 1, 2, 3})
    assert time.monotonic() - started < 5
    b.client.close()


def test_every_record_is_read_once_and_a_restarted_member_resumes_after_its_commit(server: KafkaServer) -> None:
    topic = fresh(server)
    a, b = member(server, topic, topic), member(server, topic, topic)
    poll_until([a, b], split([a, b], 4))
    produce(server, topic, [b"%d" % i for i in range(100)])
    read: list[int] = []
    poll_until([a, b], lambda: len(read) >= 100, read=read)
    assert sorted(read) == list(range(100))  # none consumed twice, none left out
    for m in (a, b):
        m.client.commit(asynchronous=False)  # OffsetCommit v9 with the member epoch
        m.client.close()
    produce(server, topic, [b"%d" % i for i in range(100, 110)])
    again = member(server, topic, topic)
    later: list[int] = []
    poll_until([again], lambda: len(later) >= 10, read=later)
    assert sorted(later) == list(range(100, 110))
    again.client.close()


def test_a_static_member_restarting_gets_its_partitions_back_and_the_other_keeps_its_own(
        server: KafkaServer) -> None:
    topic = fresh(server)
    a = member(server, topic, topic, config={"group.instance.id": "a"})
    b = member(server, topic, topic, config={"group.instance.id": "b"})
    poll_until([a, b], split([a, b], 4))
    a_partitions, b_events = set(a.owned), len(b.events)
    a.client.close()  # a static member leaves with epoch -2: its partitions wait for it
    again = member(server, topic, topic, config={"group.instance.id": "a"})
    poll_until([again, b], lambda: again.owned == a_partitions)
    deadline = time.monotonic() + 5 * HEARTBEAT_MS / 1000
    poll_until([again, b], lambda: time.monotonic() > deadline)  # heartbeats go by: nothing moves
    assert len(b.events) == b_events and again.owned == a_partitions
    client = admin(server)  # kept alive until the answer arrives
    described = client.describe_consumer_groups([topic])[topic].result(10)
    assert {m.group_instance_id for m in described.members} == {"a", "b"}
    for m in (again, b):
        m.client.close()


def test_a_classic_consumer_cannot_join_a_consumer_protocol_group(server: KafkaServer) -> None:
    topic = fresh(server)
    new = member(server, topic, topic)
    poll_until([new], lambda: new.owned == {0, 1, 2, 3})
    classic = consumer(server, **{"group.id": topic})
    classic.subscribe([topic])
    deadline = time.monotonic() + 15
    error = None
    while error is None:
        assert time.monotonic() < deadline
        message = classic.poll(0.1)
        new.client.poll(0.01)
        if message is not None and message.error() is not None:
            error = message.error()
    assert error.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL
    classic.close()
    new.client.close()


def test_a_consumer_protocol_member_cannot_join_a_classic_group_with_members(server: KafkaServer) -> None:
    topic = fresh(server)
    classic = consumer(server, **{"group.id": topic})
    classic.subscribe([topic])
    deadline = time.monotonic() + 15
    while not classic.assignment():
        assert time.monotonic() < deadline
        classic.poll(0.05)
    new = member(server, topic, topic)
    error = None
    while error is None:
        assert time.monotonic() < deadline
        message = new.client.poll(0.1)
        classic.poll(0.01)
        if message is not None and message.error() is not None:
            error = message.error()
    # Kafka's answer with online upgrades off: fatal to librdkafka.
    assert error.code() == KafkaError._FATAL and "group id does not exist" in str(error), error
    assert new.owned == set()
    new.client.close()
    classic.close()


def test_a_regex_subscription_gets_the_matching_topics_and_one_created_later(server: KafkaServer) -> None:
    prefix = f"kip848re-{uuid.uuid4().hex[:8]}"
    create_topic(server, f"{prefix}-a", partitions=2)
    create_topic(server, "kip848-unmatched", partitions=1)
    client = consumer(server, **{"group.id": prefix, "group.protocol": "consumer"})
    client.subscribe([f"^{prefix}-.*"])
    regex = Member(client)

    def topics() -> set[str]:
        return {tp.topic for tp in client.assignment()}
    poll_until([regex], lambda: len(client.assignment()) == 2)
    assert topics() == {f"{prefix}-a"}
    create_topic(server, f"{prefix}-b", partitions=3)
    poll_until([regex], lambda: len(client.assignment()) == 5)  # the next heartbeat sees it
    assert topics() == {f"{prefix}-a", f"{prefix}-b"}
    client.close()


def test_admin_lists_and_describes_the_group_as_a_consumer_group(server: KafkaServer) -> None:
    topic = fresh(server)
    a, b = member(server, topic, topic), member(server, topic, topic)
    poll_until([a, b], split([a, b], 4))
    client = admin(server)
    listed = client.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(10)
    assert topic in {g.group_id for g in listed.valid}
    [mine] = [g for g in listed.valid if g.group_id == topic]
    assert mine.type == ConsumerGroupType.CONSUMER
    classic_only = client.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result(10)
    assert topic not in {g.group_id for g in classic_only.valid}
    deadline = time.monotonic() + 10
    while topic not in {g.group_id for g in client.list_consumer_groups(
            states={ConsumerGroupState.STABLE}, types={ConsumerGroupType.CONSUMER}).result(10).valid}:
        assert time.monotonic() < deadline  # Reconciling until both members reach the group's epoch
        poll_until([a, b], lambda: True)
    described = client.describe_consumer_groups([topic])[topic].result(10)
    assert described.type == ConsumerGroupType.CONSUMER
    assert described.partition_assignor == "uniform"
    assigned = sorted(tp.partition for m in described.members for tp in m.assignment.topic_partitions)
    assert assigned == [0, 1, 2, 3]
    status, metrics = http_get(f"{server.http_url}/metrics")
    assert status == 200
    members = next(line for line in metrics.splitlines()
                   if line.startswith('tierlog_group_members{protocol="consumer"}'))
    assert float(members.split()[-1]) >= 2  # this group's two, and any other test's still here
    for m in (a, b):
        m.client.close()


def test_members_naming_the_range_assignor_get_contiguous_ranges(server: KafkaServer) -> None:
    topic = fresh(server)
    ranged = {"group.remote.assignor": "range"}
    a, b = member(server, topic, topic, config=ranged), member(server, topic, topic, config=ranged)
    poll_until([a, b], split([a, b], 4))
    assert sorted([sorted(a.owned), sorted(b.owned)]) == [[0, 1], [2, 3]]
    client = admin(server)
    assert client.describe_consumer_groups([topic])[topic].result(10).partition_assignor == "range"
    unknown = member(server, topic, topic, config={"group.remote.assignor": "sticky"})
    deadline = time.monotonic() + 10
    while (message := unknown.client.poll(0.1)) is None or (error := message.error()) is None:
        assert time.monotonic() < deadline
    # UNSUPPORTED_ASSIGNOR, fatal to librdkafka.
    assert error.code() == KafkaError._FATAL and "assignor" in str(error), error
    for m in (a, b, unknown):
        m.client.close()


def test_a_consumer_group_is_deleted_only_once_its_members_left(server: KafkaServer) -> None:
    topic = fresh(server)
    produce(server, topic, [b"%d" % i for i in range(8)])
    a = member(server, topic, topic)
    read: list[int] = []
    poll_until([a], lambda: len(read) >= 8, read=read)
    a.client.commit(asynchronous=False)
    client = admin(server)
    with pytest.raises(KafkaException) as refused:
        client.delete_consumer_groups([topic])[topic].result(10)
    assert refused.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    a.client.close()
    client.delete_consumer_groups([topic])[topic].result(10)
    again = member(server, topic, topic)  # its commits went with the group: from the start again
    reread: list[int] = []
    poll_until([again], lambda: len(reread) >= 8, read=reread)
    assert sorted(reread) == list(range(8))
    again.client.close()


def test_offset_delete_keeps_the_offsets_of_topics_the_members_subscribe_to(server: KafkaServer) -> None:
    live, old = fresh(server, partitions=1), fresh(server, partitions=1)
    a = member(server, live, live)
    poll_until([a], lambda: a.owned == {0})
    a.client.commit(offsets=[TopicPartition(old, 0, 7), TopicPartition(live, 0, 9)], asynchronous=False)
    client = KafkaAdminClient(bootstrap_servers=server.bootstrap)
    try:
        result = client.delete_group_offsets(live, [KTopicPartition(old, 0), KTopicPartition(live, 0)])
    finally:
        client.close()
    assert result == {KTopicPartition(old, 0): NoError, KTopicPartition(live, 0): GroupSubscribedToTopicError}
    committed = a.client.committed([TopicPartition(old, 0), TopicPartition(live, 0)], timeout=10)
    assert [tp.offset for tp in committed] == [OFFSET_INVALID, 9]
    a.client.close()


def test_new_partitions_are_assigned_to_the_members(server: KafkaServer) -> None:
    topic = fresh(server, partitions=2)
    a, b = member(server, topic, topic), member(server, topic, topic)
    poll_until([a, b], split([a, b], 2))
    client = admin(server)
    client.create_partitions([NewPartitions(topic, 4)])[topic].result(10)
    poll_until([a, b], split([a, b], 4), seconds=20)  # librdkafka sees them at its metadata refresh
    for m in (a, b):
        m.client.close()


def test_members_rejoin_after_a_broker_restart_and_resume_from_their_commits(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    server = KafkaServer(str(tmp_path_factory.mktemp("kip848-restart") / "data"), *FAST_CONSUMER_GROUPS).start()
    topic = fresh(server, partitions=2)
    produce(server, topic, [b"%d" % i for i in range(20)])
    a = member(server, topic, topic)
    read: list[int] = []
    poll_until([a], lambda: len(read) >= 20, read=read)
    a.client.commit(asynchronous=False)
    server.restart()  # member state is in memory: the group is forgotten, its offsets are not
    produce(server, topic, [b"%d" % i for i in range(20, 30)])
    later: list[int] = []
    poll_until([a], lambda: len(later) >= 10, seconds=30, read=later)
    assert sorted(later) == list(range(20, 30))
    client = admin(server)
    described = client.describe_consumer_groups([topic])[topic].result(10)
    assert described.type == ConsumerGroupType.CONSUMER and len(described.members) == 1
    a.client.close()
    assert server.stop() == 0, server.log()


def test_offset_commits_and_fetches_carry_the_member_epoch(server: KafkaServer) -> None:
    """On the wire: OffsetCommit v9 and OffsetFetch v9 name the member and its epoch."""
    topic = fresh(server)
    wire = Wire(server.bootstrap)
    try:
        wire.send(heartbeat_v1.ConsumerGroupHeartbeatRequest(
            group_id=GroupId(topic), member_id="m", member_epoch=i32(0),
            rebalance_timeout=i32Timedelta.parse(timedelta(seconds=30)), subscribed_topic_names=(TopicName(topic),),
            topic_partitions=()), 1)
        joined = wire.receive(CONSUMER_GROUP_HEARTBEAT, 1)[1]
        assert joined.error_code == ErrorCode.none and joined.member_epoch == 1

        def commit(module: Any, version: int, epoch: int) -> ErrorCode:
            partition = module.OffsetCommitRequestPartition(partition_index=0, committed_offset=5,
                                                            committed_metadata=None)
            wire.send(module.OffsetCommitRequest(
                group_id=topic, generation_id_or_member_epoch=epoch, member_id="m",
                topics=(module.OffsetCommitRequestTopic(name=topic, partitions=(partition,)),)), 2)
            return wire.receive(OFFSET_COMMIT, version)[1].topics[0].partitions[0].error_code

        def fetch(epoch: int) -> tuple[ErrorCode, tuple[Any, ...]]:
            wire.send(fetch_v9.OffsetFetchRequest(groups=(fetch_v9.OffsetFetchRequestGroup(
                group_id=GroupId(topic), member_id="m", member_epoch=i32(epoch), topics=None),)), 3)
            group = wire.receive(OFFSET_FETCH, 9)[1].groups[0]
            return group.error_code, group.topics

        assert commit(commit_v9, 9, 0) == ErrorCode.stale_member_epoch
        assert commit(commit_v8, 8, 1) == ErrorCode.unsupported_version  # members of this protocol use v9
        assert fetch(1) == (ErrorCode.none, ())  # nothing committed yet
        assert commit(commit_v9, 9, 1) == ErrorCode.none
        assert fetch(2)[0] == ErrorCode.stale_member_epoch
        error, topics = fetch(1)
        assert error == ErrorCode.none and topics[0].partitions[0].committed_offset == 5
    finally:
        wire.close()


def test_a_consumer_outside_group_management_commits_to_an_empty_group(server: KafkaServer) -> None:
    """librdkafka's 0030: a `group.protocol=consumer` consumer that never subscribed commits
    with epoch -1 and the member id it made itself; Kafka accepts that for a group with no
    members (a "simple" group), checking each partition (UNKNOWN_TOPIC_OR_PART for a topic
    that is not there)."""
    topic, group = f"simple-{uuid.uuid4().hex[:8]}", f"simple-{uuid.uuid4().hex[:8]}"
    create_topic(server, topic, 2)
    client = KafkaConsumer({"bootstrap.servers": server.bootstrap, "group.id": group,
                            "group.protocol": "consumer", "enable.auto.commit": False})
    try:
        client.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7)], asynchronous=False)
        committed = client.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        assert [p.offset for p in committed] == [5, 7]
        with pytest.raises(KafkaException) as refused:
            client.commit(offsets=[TopicPartition("no-such-topic", 0, 1)], asynchronous=False)
        assert refused.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        client.close()
