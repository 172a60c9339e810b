"""Fetch sessions (KIP-227): a full fetch with epoch 0 starts one; incremental fetches
name only what changed and get only partitions with something new; a wrong epoch or an
unknown session is refused as Kafka refuses it; kafka-python (which uses sessions) reads
every record through them."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, TopicPartition
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12 import request as fetch_v12

from hotlog.records import decode_batches

from ..server import http_get
from .cluster import KafkaServer
from .wire import Wire

PARTITIONS = 3


def fetch(wire: Wire, session_id: int, epoch: int, offsets: dict[int, int] | None = None,
          forgotten: tuple[int, ...] = ()) -> Any:
    topics = () if not offsets else (fetch_v12.FetchTopic(topic="s", partitions=tuple(
        fetch_v12.FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=1 << 20)
        for p, o in offsets.items())),)
    gone = () if not forgotten else (fetch_v12.ForgottenTopic(topic="s", partitions=forgotten),)
    wire.send(fetch_v12.FetchRequest(max_wait=timedelta(0), min_bytes=0, max_bytes=1 << 22, session_id=session_id,
                                     session_epoch=epoch, topics=topics, forgotten_topics_data=gone), 1)
    return wire.receive(1, 12)[1]


def told(response: Any) -> dict[int, int]:
    """Partition -> records in the response, for every partition it names."""
    return {p.partition_index: sum(len(b.records) for b in decode_batches(p.records or b""))
            for t in response.responses for p in t.partitions}


def produce(server: KafkaServer, partition: int, n: int, topic: str = "s") -> None:
    producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 0})
    for i in range(n):
        producer.produce(topic, b"v%d" % i, partition=partition)
    assert producer.flush(10) == 0


def test_incremental_fetches_carry_only_what_changed(kafka_server: KafkaServer) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_server.bootstrap})
    admin.create_topics([NewTopic("s", PARTITIONS, 1)])["s"].result(10)
    produce(kafka_server, 0, 2)
    wire = Wire(kafka_server.bootstrap)
    full = fetch(wire, 0, 0, {p: 0 for p in range(PARTITIONS)})
    assert full.error_code == ErrorCode.none and full.session_id > 0
    assert told(full) == {0: 2, 1: 0, 2: 0}  # a full fetch names every partition
    session = full.session_id
    produce(kafka_server, 1, 3)
    # Partition 0's position moved on (2); nothing else named: only partition 1 is new.
    assert told(fetch(wire, session, 1, {0: 2})) == {1: 3}
    assert told(fetch(wire, session, 2, {1: 3})) == {}  # nothing new anywhere
    assert fetch(wire, session, 2).error_code == ErrorCode.invalid_fetch_session_epoch
    assert fetch(wire, session + 1, 1).error_code == ErrorCode.fetch_session_id_not_found
    produce(kafka_server, 2, 1)
    assert told(fetch(wire, session, 3, forgotten=(2,))) == {}  # dropped from the session
    closed = fetch(wire, session, -1, {0: 2})
    assert closed.session_id == 0 and told(closed) == {0: 0}
    assert fetch(wire, session, 4).error_code == ErrorCode.fetch_session_id_not_found
    wire.sock.close()


def test_kafka_python_reads_every_record_through_a_session(kafka_server: KafkaServer) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_server.bootstrap})
    admin.create_topics([NewTopic("s-read", PARTITIONS, 1)])["s-read"].result(10)
    consumer = KafkaConsumer(bootstrap_servers=kafka_server.bootstrap, fetch_max_wait_ms=100)
    consumer.assign([TopicPartition("s-read", p) for p in range(PARTITIONS)])
    consumer.seek_to_beginning()
    got: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for round_ in range(3):  # new records between polls: incremental fetches carry them
        for p in range(PARTITIONS):
            produce(kafka_server, p, round_ + 1, "s-read")
        deadline = time.monotonic() + 15
        while sum(map(len, got.values())) < PARTITIONS * sum(range(1, round_ + 2)):
            assert time.monotonic() < deadline, got
            for tp, records in consumer.poll(200).items():
                got[tp.partition] += [r.value for r in records]
    _, text = http_get(f"{kafka_server.http_url}/metrics")
    held = re.search(r"^tierlog_kafka_fetch_sessions (\S+)$", text, re.MULTILINE)
    assert held and float(held.group(1)) >= 1, "kafka-python should have a fetch session"
    consumer.close()
    expected = [b"v%d" % i for n in (1, 2, 3) for i in range(n)]
    assert got == {p: expected for p in range(PARTITIONS)}
