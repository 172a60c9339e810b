"""A Fetch response keeps to the request's max_bytes (librdkafka's 0082_fetch_max_bytes):
only the first partition with data may pass it, by its first batch (KIP-74); the others get
what fits in what is left, possibly nothing. librdkafka refuses a larger response ("Invalid
response size") and its consumer stalls."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.fetch.v12 import request as fetch_v12

from hotlog.records import decode_batches

from .cluster import KafkaServer
from .wire import Wire

PARTITIONS = 3
PER_PARTITION = 4
MESSAGE = 900 * 1024
MAX_BYTES = 1_000_000


def fill(server: KafkaServer, configs: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    admin.create_topics([NewTopic("big", PARTITIONS, 1, config=configs or {})])["big"].result(10)
    producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 0})
    for n in range(PER_PARTITION):
        for p in range(PARTITIONS):
            producer.produce("big", bytes([n]) * MESSAGE, partition=p)
        producer.flush(30)
    assert producer.flush(30) == 0


@pytest.mark.parametrize("tier", ["local", "bucket"])
def test_a_consumer_with_fetch_max_bytes_below_three_big_messages_reads_them_all(tmp_path: Path, tier: str) -> None:
    server = KafkaServer(str(tmp_path / "data"), "remote.log.manager.task.interval.ms=100").start()
    try:
        if tier == "bucket":  # one message a segment, each uploaded and its local copy dropped
            fill(server, {"segment.bytes": str(MESSAGE), "local.retention.bytes": "0"})
            deadline = time.monotonic() + 20
            while len(list((tmp_path / "data").glob("big-*/*.log"))) > PARTITIONS:  # the active ones only
                assert time.monotonic() < deadline, "the segments did not leave the local disk"
                time.sleep(0.2)
        else:
            fill(server)
        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "0082", "fetch.max.bytes": MAX_BYTES,
                             "receive.message.max.bytes": MAX_BYTES + 512,  # as 0082 sets it
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.assign([TopicPartition("big", p, 0) for p in range(PARTITIONS)])
        got: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while sum(got.values()) < PARTITIONS * PER_PARTITION:
            assert time.monotonic() < deadline, f"stalled after {got}"
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            assert len(message.value()) == MESSAGE
            got[message.partition()] = got.get(message.partition(), 0) + 1
        consumer.close()
        assert got == {p: PER_PARTITION for p in range(PARTITIONS)}
    finally:
        assert server.stop() == 0, server.log()


def test_only_the_first_partition_with_data_passes_max_bytes(kafka_server: KafkaServer) -> None:
    fill(kafka_server)
    wire = Wire(kafka_server.bootstrap)
    sizes = _fetch(wire, MAX_BYTES, {p: 0 for p in range(PARTITIONS)})
    assert sizes[0] > 0 and sum(sizes.values()) <= max(MAX_BYTES, sizes[0]), sizes
    assert sizes[1] == sizes[2] == 0  # a 900 KiB batch does not fit in the ~80 KB left
    # Room for two whole batches, the first partition at its last: the second gets one, the third nothing.
    sizes = _fetch(wire, 2 * MESSAGE + 1000, {0: PER_PARTITION - 1, 1: 0, 2: 0})
    assert MESSAGE < sizes[0] < 2 * MESSAGE and MESSAGE < sizes[1] < 2 * MESSAGE and sizes[2] == 0, sizes
    # A first partition with nothing to read leaves the exception to the next one.
    sizes = _fetch(wire, 1000, {0: PER_PARTITION, 1: 0, 2: 0})
    assert sizes[0] == 0 and sizes[1] > MESSAGE and sizes[2] == 0, sizes
    wire.sock.close()


def _fetch(wire: Wire, max_bytes: int, offsets: dict[int, int]) -> dict[int, int]:
    """Record bytes per partition of one Fetch v12 (whole batches only)."""
    wire.send(fetch_v12.FetchRequest(
        max_wait=timedelta(0), min_bytes=1, max_bytes=max_bytes, forgotten_topics_data=(),
        topics=(fetch_v12.FetchTopic(topic="big", partitions=tuple(
            fetch_v12.FetchPartition(partition=p, fetch_offset=offset, partition_max_bytes=1 << 21)
            for p, offset in offsets.items())),)), 7)
    _, response = wire.receive(1, 12)
    sizes: dict[int, int] = {}
    for topic in response.responses:
        for part in topic.partitions:
            assert part.error_code == 0, part
            records: Any = part.records or b""
            list(decode_batches(records))  # whole batches
            sizes[part.partition_index] = len(records)
    return sizes
