"""aiokafka against a real tierlog server process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource
from aiokafka.errors import (
    MessageSizeTooLargeError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from aiokafka.structs import OffsetAndMetadata

from .cluster import KafkaServer

CODECS = (None, "gzip", "snappy", "lz4", "zstd")


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 60))


async def started(client: Any) -> Any:
    await client.start()
    return client


def consumer(server: KafkaServer, *topics: str, **config: Any) -> AIOKafkaConsumer:
    settings = {"bootstrap_servers": server.bootstrap, "group_id": None, "auto_offset_reset": "earliest",
                "enable_auto_commit": False, "fetch_max_wait_ms": 100}
    settings.update(config)
    return AIOKafkaConsumer(*topics, **settings)


async def read(c: AIOKafkaConsumer, count: int, seconds: float = 15) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + seconds
    while len(records) < count and time.monotonic() < deadline:
        for batch in (await c.getmany(timeout_ms=200, max_records=count - len(records))).values():
            records += batch
    return records


async def admin(server: KafkaServer) -> AIOKafkaAdminClient:
    return await started(AIOKafkaAdminClient(bootstrap_servers=server.bootstrap))


async def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_produce_with_every_codec_reads_back(kafka_server: KafkaServer, acks: int | str) -> None:
    topic = f"aio-produce-{acks}"

    async def scenario() -> None:
        expected = []
        for codec in CODECS:
            p = await started(AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap, acks=acks,
                                               compression_type=codec, linger_ms=5))
            futures = [await p.send(topic, key=b"k%d" % i, value=f"{codec}-{i}".encode() * 10,
                                    headers=[("c", b"%d" % i)], timestamp_ms=1_700_000_000_000 + i)
                       for i in range(25)]
            metadata = await asyncio.gather(*futures)
            if acks != 0:
                assert [m.offset for m in metadata] == list(range(metadata[0].offset, metadata[0].offset + 25))
            await p.stop()
            expected += [(b"k%d" % i, f"{codec}-{i}".encode() * 10, 1_700_000_000_000 + i) for i in range(25)]
        c = consumer(kafka_server)
        await c.start()
        c.assign([TopicPartition(topic, 0)])
        got = await read(c, len(expected))
        await c.stop()
        assert [(r.key, r.value, r.timestamp) for r in got] == expected
        assert [r.offset for r in got] == list(range(len(expected)))

    run(scenario())


def test_consume_from_beginning_end_offset_and_timestamp(kafka_server: KafkaServer) -> None:
    topic = "aio-start-points"
    tp = TopicPartition(topic, 0)
    base_ts = int(time.time() * 1000) - 60_000

    async def scenario() -> None:
        p = await started(AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap))
        for i in range(10):
            await p.send_and_wait(topic, value=b"m%d" % i, timestamp_ms=base_ts + i * 1000)
        c = consumer(kafka_server)
        await c.start()
        c.assign([tp])
        await c.seek_to_beginning(tp)
        assert [r.offset for r in await read(c, 10)] == list(range(10))
        c.seek(tp, 8)
        assert [r.offset for r in await read(c, 2)] == [8, 9]
        found = (await c.offsets_for_times({tp: base_ts + 2500}))[tp]
        assert (found.offset, found.timestamp) == (3, base_ts + 3000)
        assert (await c.beginning_offsets([tp]))[tp] == 0 and (await c.end_offsets([tp]))[tp] == 10
        c.seek(tp, found.offset)
        assert [r.offset for r in await read(c, 7)] == list(range(3, 10))
        await c.seek_to_end(tp)
        assert await c.position(tp) == 10
        await p.send_and_wait(topic, value=b"late")
        (late,) = await read(c, 1)
        assert (late.offset, late.value) == (10, b"late")
        await c.stop()
        await p.stop()

    run(scenario())


def test_long_poll_wakes_a_consumer_at_the_end_when_data_arrives(kafka_server: KafkaServer) -> None:
    async def scenario() -> None:
        p = await started(AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap))
        await p.send_and_wait("aio-long-poll", b"first")
        c = consumer(kafka_server, fetch_max_wait_ms=10_000)
        await c.start()
        tp = TopicPartition("aio-long-poll", 0)
        c.assign([tp])
        await c.seek_to_end(tp)
        assert await c.position(tp) == 1
        waiting = asyncio.ensure_future(read(c, 1, seconds=20))
        await asyncio.sleep(1.0)  # the consumer's fetch is now parked at the end of the log
        sent = time.monotonic()
        await p.send_and_wait("aio-long-poll", b"second")
        (record,) = await waiting
        assert record.value == b"second"
        assert time.monotonic() - sent < 3  # woken by the append, not by the 10 s wait
        await c.stop()
        await p.stop()

    run(scenario())


def test_group_of_two_rebalances_when_a_member_joins_and_when_one_leaves(kafka_server: KafkaServer) -> None:
    topic, group = "aio-group", "aio-group-g"

    async def scenario() -> None:
        client = await admin(kafka_server)
        await client.create_topics([NewTopic(topic, 2, 1)])
        p = await started(AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap))
        for i in range(20):
            await p.send(topic, value=b"%d" % i, partition=i % 2)
        await p.flush()
        settings = {"group_id": group, "session_timeout_ms": 6000, "heartbeat_interval_ms": 200}
        a = await started(consumer(kafka_server, topic, **settings))
        assert sorted(int(r.value) for r in await read(a, 20)) == list(range(20))
        assert {tp.partition for tp in a.assignment()} == {0, 1}
        await a.commit()
        b = await started(consumer(kafka_server, topic, **settings))
        # aiokafka rebalances in the background; members need not poll.
        await wait_for(lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1)
        assert {tp.partition for tp in a.assignment() | b.assignment()} == {0, 1}
        await a.stop()  # leaves the group
        await wait_for(lambda: len(b.assignment()) == 2)
        for i in range(20, 24):
            await p.send(topic, value=b"%d" % i, partition=i % 2)
        await p.flush()
        assert sorted(int(r.value) for r in await read(b, 4)) == [20, 21, 22, 23]
        (described,) = await client.describe_consumer_groups([group])
        assert described.groups[0][2] == "Stable" and len(described.groups[0][5]) == 1  # state, members
        await b.stop()
        assert (group, "consumer") in await client.list_consumer_groups()
        await client.close()
        await p.stop()

    run(scenario())


def test_committed_offsets_survive_a_server_restart(restartable_server: KafkaServer) -> None:
    server, topic, group = restartable_server, "aio-restart", "aio-restart-g"
    tp = TopicPartition(topic, 0)

    async def before() -> None:
        p = await started(AIOKafkaProducer(bootstrap_servers=server.bootstrap))
        for i in range(10):
            await p.send(topic, value=b"%d" % i)
        await p.stop()
        c = await started(consumer(server, topic, group_id=group))
        assert len(await read(c, 10)) == 10
        await c.commit({tp: OffsetAndMetadata(7, "seven")})
        await c.stop()

    async def after() -> None:
        c = await started(consumer(server, topic, group_id=group))
        assert await c.committed(tp) == 7
        assert [r.offset for r in await read(c, 3)] == [7, 8, 9]
        await c.stop()
        client = await admin(server)
        assert (await client.list_consumer_group_offsets(group))[tp] == OffsetAndMetadata(7, "seven")
        await client.close()

    run(before())
    server.restart()
    run(after())


def test_admin_topics_and_configs(kafka_server: KafkaServer) -> None:
    async def scenario() -> None:
        client = await admin(kafka_server)
        await client.create_topics([NewTopic("aio-admin", 1, 1, topic_configs={"retention.bytes": "1048576"})])
        (described,) = await client.describe_configs([ConfigResource("TOPIC", "aio-admin")])
        entries = {entry[0]: entry[1] for entry in described.resources[0][4]}
        assert entries["retention.bytes"] == "1048576" and entries["cleanup.policy"] == "delete"
        await client.create_partitions({"aio-admin": NewPartitions(2)})
        (topic,) = await client.describe_topics(["aio-admin"])
        assert len(topic["partitions"]) == 2
        await client.delete_topics(["aio-admin"])
        assert "aio-admin" not in await client.list_topics()
        await client.close()

    run(scenario())


def test_unknown_topic_with_auto_create_off(strict_server: KafkaServer) -> None:
    async def scenario() -> None:
        p = await started(AIOKafkaProducer(bootstrap_servers=strict_server.bootstrap, request_timeout_ms=500))
        with pytest.raises(UnknownTopicOrPartitionError):
            await p.send_and_wait("aio-nowhere", b"x")
        await p.stop()
        client = await admin(strict_server)
        assert "aio-nowhere" not in await client.list_topics()
        await client.close()

    run(scenario())


def test_oversized_message_gets_message_too_large(kafka_server: KafkaServer) -> None:
    async def scenario() -> None:
        client = await admin(kafka_server)
        await client.create_topics([NewTopic("aio-small", 1, 1, topic_configs={"max.message.bytes": "2048"})])
        await client.close()
        p = await started(AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap))
        with pytest.raises(MessageSizeTooLargeError):
            await p.send_and_wait("aio-small", b"x" * 10_000)
        assert (await p.send_and_wait("aio-small", b"fits")).offset == 0
        await p.stop()

    run(scenario())


def test_out_of_range_offset_resets_by_policy(kafka_server: KafkaServer) -> None:
    tp = TopicPartition("aio-range", 0)

    async def scenario() -> None:
        p = await started(AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap))
        for value in (b"a", b"b", b"c"):
            await p.send_and_wait("aio-range", value)
        await p.stop()
        c = await started(consumer(kafka_server))
        c.assign([tp])
        c.seek(tp, 1000)
        assert [r.offset for r in await read(c, 3)] == [0, 1, 2]
        await c.stop()
        c = await started(consumer(kafka_server, auto_offset_reset="none"))
        c.assign([tp])
        c.seek(tp, 1000)
        with pytest.raises(OffsetOutOfRangeError):
            await read(c, 1, seconds=10)
        await c.stop()

    run(scenario())
