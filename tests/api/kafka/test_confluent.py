"""confluent-kafka (librdkafka) against a real tierlog server process."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from .cluster import KafkaServer

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
FAST = {"socket.timeout.ms": 10_000, "topic.metadata.refresh.interval.ms": 1000}


def admin(server: KafkaServer) -> AdminClient:
    return AdminClient({"bootstrap.servers": server.bootstrap})


def create_topic(server: KafkaServer, name: str, partitions: int = 1, **configs: str) -> None:
    client = admin(server)  # kept alive until the answer arrives
    client.create_topics([NewTopic(name, partitions, 1, config=configs)], operation_timeout=10)[name].result(10)


def produce(server: KafkaServer, topic: str, values: list[bytes], **config: Any) -> list[Message]:
    """Produce and flush; returns the delivery reports in order."""
    reports: list[Message] = []
    producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 5, **FAST, **config})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=b"k%d" % i, headers=[("h", b"%d" % i)],
                         on_delivery=lambda err, msg: reports.append(msg))
    assert producer.flush(15) == 0
    return reports


def consumer(server: KafkaServer, **config: Any) -> Consumer:
    settings = {"bootstrap.servers": server.bootstrap, "group.id": f"g-{uuid.uuid4()}", "enable.auto.commit": False,
                "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100, **FAST}
    settings.update(config)
    return Consumer(settings)


def assign(c: Consumer, *partitions: TopicPartition) -> None:
    """c.assign() once the consumer has the partitions' leaders: assigned ahead of its first
    metadata, librdkafka looks a logical start (beginning, end, a reset) up only 500 ms later."""
    for topic in {p.topic for p in partitions}:
        c.list_topics(topic, timeout=10)
    c.assign(list(partitions))


def read(c: Consumer, count: int, seconds: float = 15) -> list[Message]:
    messages: list[Message] = []
    deadline = time.monotonic() + seconds
    while len(messages) < count and time.monotonic() < deadline:
        for message in c.consume(count - len(messages), 0.2):
            assert message.error() is None, message.error()
            messages.append(message)
    return messages


def poll_until(clients: list[Consumer], done: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "condition not met in time"
        for c in clients:
            message = c.poll(0.05)
            assert message is None or message.error() is None or \
                message.error().code() == KafkaError._PARTITION_EOF, message.error()


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_with_every_codec_reads_back_keys_values_headers_and_timestamps(kafka_server: KafkaServer,
                                                                                acks: str) -> None:
    topic = f"ck-produce-{acks}"
    base_ts = 1_700_000_000_000
    expected = []
    for codec in CODECS:
        values = [f"{codec}-{i}-".encode() * 20 for i in range(30)]
        producer = Producer({"bootstrap.servers": kafka_server.bootstrap, "acks": acks, "linger.ms": 5,
                             "compression.type": codec, **FAST})
        reports: list[Message] = []
        for i, value in enumerate(values):
            producer.produce(topic, value=value, key=b"k%d" % i, headers=[("codec", codec.encode())],
                             timestamp=base_ts + i, on_delivery=lambda err, msg: reports.append(msg))
        assert producer.flush(15) == 0
        assert all(r.error() is None for r in reports)
        if acks != "0":  # acks=0 gets no response, so no offsets
            offsets = [r.offset() for r in reports]
            assert offsets == list(range(offsets[0], offsets[0] + len(values)))
        expected += [(b"k%d" % i, v, codec.encode(), base_ts + i) for i, v in enumerate(values)]
    c = consumer(kafka_server)
    assign(c, TopicPartition(topic, 0, OFFSET_BEGINNING))
    got = read(c, len(expected))
    c.close()
    assert [(m.key(), m.value(), dict(m.headers())["codec"], m.timestamp()[1]) for m in got] == expected
    assert [m.offset() for m in got] == list(range(len(expected)))
    assert {m.timestamp()[0] for m in got} == {TIMESTAMP_CREATE_TIME}


def test_log_append_time_topic_stamps_broker_time(kafka_server: KafkaServer) -> None:
    create_topic(kafka_server, "ck-append-time", **{"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": kafka_server.bootstrap, **FAST})
    producer.produce("ck-append-time", value=b"old", timestamp=1_000)
    assert producer.flush(10) == 0
    c = consumer(kafka_server)
    assign(c, TopicPartition("ck-append-time", 0, OFFSET_BEGINNING))
    (message,) = read(c, 1)
    c.close()
    kind, stamp = message.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before <= stamp <= int(time.time() * 1000)


def test_consume_from_beginning_end_offset_tail_and_timestamp(kafka_server: KafkaServer) -> None:
    topic = "ck-start-points"
    base_ts = int(time.time() * 1000) - 60_000
    producer = Producer({"bootstrap.servers": kafka_server.bootstrap, **FAST})
    for i in range(10):
        producer.produce(topic, value=b"m%d" % i, timestamp=base_ts + i * 1000)
    assert producer.flush(10) == 0

    def first_offsets(start: TopicPartition, count: int) -> list[int]:
        c = consumer(kafka_server)
        assign(c, start)
        offsets = [m.offset() for m in read(c, count)]
        c.close()
        return offsets

    assert first_offsets(TopicPartition(topic, 0, OFFSET_BEGINNING), 10) == list(range(10))
    assert first_offsets(TopicPartition(topic, 0, 6), 4) == [6, 7, 8, 9]
    c = consumer(kafka_server)
    (found,) = c.offsets_for_times([TopicPartition(topic, 0, base_ts + 3500)], 10)
    assert found.offset == 4  # the first record at or after the timestamp
    (past_end,) = c.offsets_for_times([TopicPartition(topic, 0, base_ts + 3_600_000)], 10)
    assert past_end.offset == OFFSET_END  # none at or after it: -1, "the end"
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), 10)
    assert (low, high) == (0, 10)
    c.close()
    assert first_offsets(TopicPartition(topic, 0, found.offset), 6) == [4, 5, 6, 7, 8, 9]

    # From the end: only what is produced after the assignment arrives.
    c = consumer(kafka_server, **{"enable.partition.eof": True})
    assign(c, TopicPartition(topic, 0, OFFSET_END))
    deadline = time.monotonic() + 15
    while True:  # the end is resolved and fetched from once EOF is reported
        assert time.monotonic() < deadline
        message = c.poll(0.1)
        if message is not None and message.error() and message.error().code() == KafkaError._PARTITION_EOF:
            assert message.offset() == 10
            break
    producer.produce(topic, value=b"late")
    assert producer.flush(10) == 0
    (late,) = read(c, 1)
    c.close()
    assert (late.offset(), late.value()) == (10, b"late")


def test_group_of_two_rebalances_when_a_member_joins_and_when_one_leaves(kafka_server: KafkaServer) -> None:
    topic, group = "ck-group", "ck-group-g"
    create_topic(kafka_server, topic, partitions=2)
    producer = Producer({"bootstrap.servers": kafka_server.bootstrap, **FAST})
    for i in range(20):
        producer.produce(topic, value=b"%d" % i, partition=i % 2)
    assert producer.flush(10) == 0
    assignments: dict[str, list[int]] = {"a": [], "b": []}

    def member(name: str) -> Consumer:
        c = consumer(kafka_server, **{"group.id": group, "session.timeout.ms": 6000,
                                      "heartbeat.interval.ms": 200})
        c.subscribe([topic], on_assign=lambda _, parts: assignments.__setitem__(name, sorted(p.partition for p in parts)),
                    on_revoke=lambda _, parts: assignments.__setitem__(name, []))
        return c

    a = member("a")
    got = read(a, 20)
    assert sorted(int(m.value()) for m in got) == list(range(20))
    assert assignments["a"] == [0, 1]
    a.commit(asynchronous=False)
    b = member("b")
    poll_until([a, b], lambda: assignments["a"] != [] and assignments["b"] != []
               and sorted(assignments["a"] + assignments["b"]) == [0, 1])
    a.close()  # leaves the group: b takes both partitions
    poll_until([b], lambda: assignments["b"] == [0, 1])
    for i in range(20, 24):
        producer.produce(topic, value=b"%d" % i, partition=i % 2)
    assert producer.flush(10) == 0
    # b starts from a's committed offsets: only the new messages.
    assert sorted(int(m.value()) for m in read(b, 4)) == [20, 21, 22, 23]
    b.close()
    client = admin(kafka_server)
    groups = client.describe_consumer_groups([group])[group].result(10)
    assert groups.members == [] and str(groups.state).endswith("EMPTY")


def test_committed_offsets_survive_a_server_restart(restartable_server: KafkaServer) -> None:
    server, topic, group = restartable_server, "ck-restart", "ck-restart-g"
    produce(server, topic, [b"%d" % i for i in range(10)])
    c = consumer(server, **{"group.id": group})
    c.subscribe([topic])
    assert len(read(c, 6)) == 6
    c.commit(offsets=[TopicPartition(topic, 0, 6)], asynchronous=False)
    c.close()
    server.restart()
    c = consumer(server, **{"group.id": group})
    (committed,) = c.committed([TopicPartition(topic, 0)], 10)
    assert committed.offset == 6
    c.subscribe([topic])
    assert [m.offset() for m in read(c, 4)] == [6, 7, 8, 9]
    c.close()


def test_admin_creates_describes_alters_grows_and_deletes_topics(kafka_server: KafkaServer) -> None:
    client = admin(kafka_server)
    create_topic(kafka_server, "ck-admin", 2, **{"retention.ms": "123456"})
    with pytest.raises(Exception) as exists:
        create_topic(kafka_server, "ck-admin")
    assert exists.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    with pytest.raises(Exception) as bad:
        create_topic(kafka_server, "ck-bad-config", **{"retention.ms": "soon"})
    assert bad.value.args[0].code() == KafkaError.INVALID_CONFIG
    resource = ConfigResource(ConfigResource.Type.TOPIC, "ck-admin")
    configs = client.describe_configs([resource])[resource].result(10)
    assert configs["retention.ms"].value == "123456"
    assert configs["retention.ms"].source == 1  # DYNAMIC_TOPIC_CONFIG
    assert configs["segment.bytes"].is_default
    client.create_partitions([NewPartitions("ck-admin", 4)])["ck-admin"].result(10)
    assert len(client.list_topics(timeout=10).topics["ck-admin"].partitions) == 4
    client.delete_topics(["ck-admin"], operation_timeout=10)["ck-admin"].result(10)
    assert "ck-admin" not in client.list_topics(timeout=10).topics


def test_unknown_topic_is_refused_when_auto_create_is_off(strict_server: KafkaServer) -> None:
    producer = Producer({"bootstrap.servers": strict_server.bootstrap, **FAST})
    metadata = producer.list_topics("ck-nowhere", timeout=10)
    assert metadata.topics["ck-nowhere"].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # The broker refused the topic already; 0.5 s lets the client fail the message on it (a
    # topic made by the broker anyway would be in the metadata and the listing checked here).
    reports = produce(strict_server, "ck-nowhere", [b"x"], **{"message.timeout.ms": 500})
    assert reports[0].error().code() in (KafkaError._MSG_TIMED_OUT, KafkaError._UNKNOWN_TOPIC)
    c = consumer(strict_server)
    c.subscribe(["ck-nowhere"])
    deadline = time.monotonic() + 10
    error = None
    while error is None and time.monotonic() < deadline:
        message = c.poll(0.2)
        error = message.error() if message is not None else None
    c.close()
    assert error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert "ck-nowhere" not in admin(strict_server).list_topics(timeout=10).topics


def test_oversized_message_gets_message_too_large(kafka_server: KafkaServer) -> None:
    create_topic(kafka_server, "ck-small", **{"max.message.bytes": "2048"})
    (too_large,) = produce(kafka_server, "ck-small", [b"x" * 10_000])
    assert too_large.error().code() == KafkaError.MSG_SIZE_TOO_LARGE
    (fits,) = produce(kafka_server, "ck-small", [b"fits"])
    assert fits.error() is None and fits.offset() == 0  # the refused batch took no offset


def test_internal_topics_cannot_be_created_or_deleted_by_clients(kafka_server: KafkaServer) -> None:
    client = admin(kafka_server)
    create = client.create_topics([NewTopic("__transaction_state", 1, 1)], operation_timeout=10)
    with pytest.raises(KafkaException) as refused:
        create["__transaction_state"].result(10)
    assert refused.value.args[0].code() == KafkaError.INVALID_REQUEST
    delete = client.delete_topics(["__consumer_offsets"], operation_timeout=10)
    with pytest.raises(KafkaException) as refused:
        delete["__consumer_offsets"].result(10)
    assert refused.value.args[0].code() == KafkaError.TOPIC_EXCEPTION


def test_a_topic_of_more_partitions_than_the_cap_is_refused(kafka_server: KafkaServer) -> None:
    client = admin(kafka_server)  # kept alive until the answer arrives
    create = client.create_topics([NewTopic("ck-huge", 10_001, 1)], operation_timeout=10)
    with pytest.raises(KafkaException) as refused:
        create["ck-huge"].result(10)
    assert refused.value.args[0].code() == KafkaError.INVALID_PARTITIONS


def test_librdkafkas_default_1mb_batches_fit_a_topic_of_small_segments(kafka_server: KafkaServer) -> None:
    """A batch above segment.bytes (within max.message.bytes) gets a segment of its own."""
    create_topic(kafka_server, "ck-small-segments", **{"segment.bytes": str(256 * 1024)})
    values = [b"%06d" % i + b"v" * 10_000 for i in range(300)]  # ~3 MB in batches of up to 1 MB
    reports = produce(kafka_server, "ck-small-segments", values, **{"linger.ms": 200, "batch.size": 1_000_000})
    assert [r.error() for r in reports] == [None] * len(values)
    assert [r.offset() for r in reports] == list(range(len(values)))
    c = consumer(kafka_server)
    assign(c, TopicPartition("ck-small-segments", 0, OFFSET_BEGINNING))
    assert [m.value() for m in read(c, len(values))] == values
    c.close()
    folder = os.path.join(kafka_server.data_dir, "ck-small-segments-0")
    sizes = [os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder) if name.endswith(".log")]
    assert max(sizes) > 256 * 1024, "librdkafka should have sent batches above segment.bytes"


def test_out_of_range_offset_resets_by_policy(kafka_server: KafkaServer) -> None:
    produce(kafka_server, "ck-range", [b"a", b"b", b"c"])
    c = consumer(kafka_server, **{"auto.offset.reset": "earliest"})
    assign(c, TopicPartition("ck-range", 0, 1000))
    assert [m.offset() for m in read(c, 3)] == [0, 1, 2]
    c.close()
    c = consumer(kafka_server, **{"auto.offset.reset": "error"})
    assign(c, TopicPartition("ck-range", 0, 1000))
    deadline = time.monotonic() + 15
    error = None
    while error is None and time.monotonic() < deadline:
        message = c.poll(0.2)
        if message is not None and message.error():
            error = message.error()
    c.close()
    assert error is not None and error.code() == KafkaError._AUTO_OFFSET_RESET
