"""kafka-python against a real tierlog server process.

kafka-python 3 makes producers idempotent by default (as the Java client does); the
producers here say enable_idempotence=False, and tests/api/kafka/test_idempotence.py
runs the default."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.admin import ConfigResource, NewPartitions, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
)

from .cluster import KafkaServer

CODECS = (None, "gzip", "snappy", "lz4", "zstd")


def producer(server: KafkaServer, **config: Any) -> KafkaProducer:
    settings = {"bootstrap_servers": server.bootstrap, "enable_idempotence": False, "linger_ms": 5}
    settings.update(config)
    return KafkaProducer(**settings)


def consumer(server: KafkaServer, *topics: str, **config: Any) -> KafkaConsumer:
    settings = {"bootstrap_servers": server.bootstrap, "group_id": None, "auto_offset_reset": "earliest",
                "enable_auto_commit": False, "fetch_max_wait_ms": 100}
    settings.update(config)
    return KafkaConsumer(*topics, **settings)


def read(c: KafkaConsumer, count: int, seconds: float = 15) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + seconds
    while len(records) < count and time.monotonic() < deadline:
        for batch in c.poll(timeout_ms=200, max_records=count - len(records)).values():
            records += batch
    return records


def admin(server: KafkaServer) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=server.bootstrap)


def wait_for(condition: Callable[[], bool], step: Callable[[], None], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        step()


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_produce_with_every_codec_reads_back(kafka_server: KafkaServer, acks: int | str) -> None:
    topic = f"kp-produce-{acks}"
    expected = []
    for codec in CODECS:
        p = producer(kafka_server, acks=acks, compression_type=codec)
        futures = [p.send(topic, key=b"k%d" % i, value=f"{codec}-{i}".encode() * 10, headers=[("c", b"%d" % i)],
                          timestamp_ms=1_700_000_000_000 + i)
                   for i in range(25)]
        p.flush(15)
        metadata = [f.get(10) for f in futures]
        if acks != 0:
            assert [m.offset for m in metadata] == list(range(metadata[0].offset, metadata[0].offset + 25))
        p.close()
        expected += [(b"k%d" % i, f"{codec}-{i}".encode() * 10, 1_700_000_000_000 + i) for i in range(25)]
    c = consumer(kafka_server)
    c.assign([TopicPartition(topic, 0)])
    got = read(c, len(expected))
    c.close()
    assert [(r.key, r.value, r.timestamp) for r in got] == expected
    assert [r.offset for r in got] == list(range(len(expected)))


def test_consume_from_beginning_end_offset_and_timestamp(kafka_server: KafkaServer) -> None:
    topic = "kp-start-points"
    tp = TopicPartition(topic, 0)
    base_ts = int(time.time() * 1000) - 60_000
    p = producer(kafka_server)
    for i in range(10):
        p.send(topic, value=b"m%d" % i, timestamp_ms=base_ts + i * 1000)
    p.flush(10)
    c = consumer(kafka_server)
    c.assign([tp])
    c.seek_to_beginning(tp)
    assert [r.offset for r in read(c, 10)] == list(range(10))
    c.seek(tp, 7)
    assert [r.offset for r in read(c, 3)] == [7, 8, 9]
    found = c.offsets_for_times({tp: base_ts + 5500})[tp]
    assert found.offset == 6 and found.timestamp == base_ts + 6000
    assert c.offsets_for_times({tp: base_ts + 3_600_000})[tp] is None
    assert c.beginning_offsets([tp])[tp] == 0 and c.end_offsets([tp])[tp] == 10
    c.seek(tp, found.offset)
    assert [r.offset for r in read(c, 4)] == [6, 7, 8, 9]
    c.seek_to_end(tp)
    assert c.position(tp) == 10
    p.send(topic, value=b"late")
    p.flush(10)
    (late,) = read(c, 1)
    assert (late.offset, late.value) == (10, b"late")
    c.close()
    p.close()


def test_group_of_two_rebalances_when_a_member_joins_and_when_one_leaves(kafka_server: KafkaServer) -> None:
    topic, group = "kp-group", "kp-group-g"
    admin(kafka_server).create_topics([NewTopic(topic, 2, 1)])
    p = producer(kafka_server)
    for i in range(20):
        p.send(topic, value=b"%d" % i, partition=i % 2)
    p.flush(10)
    settings = {"group_id": group, "session_timeout_ms": 6000, "heartbeat_interval_ms": 200}
    a = consumer(kafka_server, topic, **settings)
    assert sorted(int(r.value) for r in read(a, 20)) == list(range(20))
    assert {tp.partition for tp in a.assignment()} == {0, 1}
    a.commit()
    b = consumer(kafka_server, topic, **settings)

    def both_poll() -> None:
        a.poll(timeout_ms=50)
        b.poll(timeout_ms=50)

    wait_for(lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1, both_poll)
    assert {tp.partition for tp in a.assignment() | b.assignment()} == {0, 1}
    a.close()  # leaves the group
    wait_for(lambda: len(b.assignment()) == 2, lambda: b.poll(timeout_ms=50))
    for i in range(20, 24):
        p.send(topic, value=b"%d" % i, partition=i % 2)
    p.flush(10)
    assert sorted(int(r.value) for r in read(b, 4)) == [20, 21, 22, 23]
    b.close()
    groups = admin(kafka_server).describe_groups([group])
    assert groups[group]["group_state"] == "Empty" and groups[group]["members"] == []
    p.close()


def test_committed_offsets_survive_a_server_restart(restartable_server: KafkaServer) -> None:
    server, topic, group = restartable_server, "kp-restart", "kp-restart-g"
    tp = TopicPartition(topic, 0)
    p = producer(server)
    for i in range(10):
        p.send(topic, value=b"%d" % i)
    p.flush(10)
    p.close()
    c = consumer(server, topic, group_id=group)
    assert len(read(c, 10)) == 10
    c.commit({tp: OffsetAndMetadata(4, "note", -1)})
    c.close()
    server.restart()
    c = consumer(server, topic, group_id=group)
    assert c.committed(tp) == 4
    assert [r.offset for r in read(c, 6)] == [4, 5, 6, 7, 8, 9]
    c.close()
    assert admin(server).list_group_offsets(group)[group][tp].metadata == "note"


def test_admin_topics_configs_and_groups(kafka_server: KafkaServer) -> None:
    client = admin(kafka_server)
    client.create_topics([NewTopic("kp-admin", 2, 1, topic_configs={"retention.ms": "777777"})])
    with pytest.raises(TopicAlreadyExistsError):
        client.create_topics([NewTopic("kp-admin", 1, 1)], raise_errors=True)
    resource = [ConfigResource("TOPIC", "kp-admin", configs={"segment.ms": "3600000"})]
    client.alter_configs(resource)  # IncrementalAlterConfigs: the other overrides stay
    configs = client.describe_configs([ConfigResource("TOPIC", "kp-admin")])["topic"]["kp-admin"]
    assert configs["segment.ms"]["value"] == "3600000" and configs["retention.ms"]["value"] == "777777"
    client.reset_configs([ConfigResource("TOPIC", "kp-admin", configs={"retention.ms": None})])
    client.alter_configs([ConfigResource("TOPIC", "kp-admin", configs={"flush.ms": "500"})], incremental=False)
    configs = client.describe_configs([ConfigResource("TOPIC", "kp-admin")])["topic"]["kp-admin"]
    assert {name: c["value"] for name, c in configs.items()} == {"segment.ms": "3600000", "flush.ms": "500"}
    client.create_partitions({"kp-admin": NewPartitions(3)})
    assert len(client.describe_topics(["kp-admin"])[0]["partitions"]) == 3
    client.delete_topics(["kp-admin"])
    assert "kp-admin" not in client.list_topics()


def test_unknown_topic_with_auto_create_off(strict_server: KafkaServer) -> None:
    p = producer(strict_server, max_block_ms=500)  # the listing below shows the topic was not made
    with pytest.raises(KafkaTimeoutError):
        p.send("kp-nowhere", b"x").get(5)
    p.close()
    assert "kp-nowhere" not in admin(strict_server).list_topics()


def test_oversized_message_gets_message_too_large(kafka_server: KafkaServer) -> None:
    admin(kafka_server).create_topics([NewTopic("kp-small", 1, 1, topic_configs={"max.message.bytes": "2048"})])
    p = producer(kafka_server, retries=0)
    with pytest.raises(MessageSizeTooLargeError):
        p.send("kp-small", b"x" * 10_000).get(10)
    assert p.send("kp-small", b"fits").get(10).offset == 0
    p.close()


def test_out_of_range_offset_resets_by_policy(kafka_server: KafkaServer) -> None:
    tp = TopicPartition("kp-range", 0)
    p = producer(kafka_server)
    for value in (b"a", b"b", b"c"):
        p.send("kp-range", value)
    p.flush(10)
    p.close()
    c = consumer(kafka_server)
    c.assign([tp])
    c.seek(tp, 1000)
    assert [r.offset for r in read(c, 3)] == [0, 1, 2]
    c.close()
    c = consumer(kafka_server, auto_offset_reset="none")
    c.assign([tp])
    c.seek(tp, 1000)
    with pytest.raises(OffsetOutOfRangeError):
        read(c, 1, seconds=10)
    c.close()
