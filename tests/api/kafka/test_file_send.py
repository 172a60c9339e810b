"""Fetched batches go from the segment files to a plain TCP socket by sendfile: what a
client receives is byte for byte what was produced, however slowly it reads, and a
response under way outlives the deletion of the files it sends from."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12 import request as fetch_v12

from api.kafka.file_send import DELETED_SEGMENT_GRACE_S, FileSend, SegmentGoneError
from hotlog.manager import LogManager
from hotlog.records import decode_batches

from .bounds_support import metric
from .cluster import KafkaServer, own_kafka_server
from .test_protocol import batch
from .wire import Wire

kafka_server = own_kafka_server()  # this module's own: it counts the broker's sendfile bytes

PARTITIONS = 2
PER_PARTITION = 1500  # records of 4 KiB: about 6 MiB a partition, more than a socket buffer holds
SENT = "tierlog_kafka_fetch_sendfile_bytes_total"


def value(partition: int, i: int) -> bytes:
    return (b"%d-%d:" % (partition, i)) * 512


def fill(server: KafkaServer, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 5})
    for i in range(PER_PARTITION):
        for p in range(PARTITIONS):
            producer.produce(topic, value(p, i)[:4096], partition=p)
        producer.poll(0)
    assert producer.flush(30) == 0


def slow_reader(server: KafkaServer) -> Wire:
    """A connection whose socket takes little at a time, so the broker's fills up."""
    wire = Wire(server.bootstrap)
    wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return wire


def ask(wire: Wire, topic: str) -> None:
    wire.send(fetch_v12.FetchRequest(
        max_wait=timedelta(0), min_bytes=0, max_bytes=64 << 20, session_id=0, session_epoch=-1,
        topics=(fetch_v12.FetchTopic(topic=topic, partitions=tuple(
            fetch_v12.FetchPartition(partition=p, fetch_offset=0, partition_max_bytes=32 << 20)
            for p in range(PARTITIONS))),), forgotten_topics_data=()), 7)


def values_of(response: Any) -> dict[int, list[bytes]]:
    found: dict[int, list[bytes]] = {}
    for topic in response.responses:
        for part in topic.partitions:
            assert part.error_code == ErrorCode.none
            found[part.partition_index] = [r.value for b in decode_batches(part.records or b"") for r in b.records]
    return found


def expected() -> dict[int, list[bytes]]:
    return {p: [value(p, i)[:4096] for i in range(PER_PARTITION)] for p in range(PARTITIONS)}


def test_a_slow_reader_gets_every_produced_byte_by_sendfile(kafka_server: KafkaServer) -> None:
    fill(kafka_server, "big")
    before = metric(kafka_server, SENT)
    wire = slow_reader(kafka_server)
    ask(wire, "big")
    correlation_id, response = wire.receive(1, 12)
    assert correlation_id == 7
    got = values_of(response)
    assert got == expected()
    fetched = sum(len(part.records) for t in response.responses for part in t.partitions)
    # Nearly all of it went by sendfile: only the pieces that waited for room (16 KiB
    # each time the socket was full) went through the transport.
    assert fetched * 0.9 < metric(kafka_server, SENT) - before < fetched
    wire.close()


def test_a_response_under_way_outlives_its_deleted_topic(kafka_server: KafkaServer) -> None:
    data = kafka_server.data_dir
    fill(kafka_server, "doomed")
    wire = slow_reader(kafka_server)
    ask(wire, "doomed")
    first = wire.sock.recv(4096)  # the response has begun; the rest waits in the broker
    assert first
    admin = AdminClient({"bootstrap.servers": kafka_server.bootstrap})
    admin.delete_topics(["doomed"], operation_timeout=10)["doomed"].result(10)
    deadline = time.monotonic() + 10
    while [n for n in os.listdir(data) if n.startswith("doomed")] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [n for n in os.listdir(data) if n.startswith("doomed")]
    wire.unread(first)
    assert values_of(wire.receive(1, 12)[1]) == expected()
    wire.close()


def test_a_slow_reader_cannot_keep_a_deleted_segment_past_the_grace(tmp_path: Path) -> None:
    """A response under way goes on from a segment deleted under it, for a while (the test
    above); past DELETED_SEGMENT_GRACE_S it is cut, so no reader, however slow, keeps a
    deleted segment's disk space and descriptor."""
    logs = LogManager(str(tmp_path / "data")).open()
    try:
        logs.create_topic("gone", 1)
        plog = logs.log("gone", 0)
        plog.append(batch(b"kept a while"))
        piece = plog.read(0, 1 << 20)
        assert piece is not None and piece.checked
        piece.segment.delete()
        server_side, client_side = socket.socketpair()
        with server_side, client_side:
            assert FileSend(piece).sendfile(server_side.fileno()) == piece.size  # within the grace
            assert piece.segment.deleted_at is not None
            piece.segment.deleted_at -= DELETED_SEGMENT_GRACE_S + 1
            with pytest.raises(SegmentGoneError):
                FileSend(piece).sendfile(server_side.fileno())
            with pytest.raises(SegmentGoneError):
                FileSend(piece).take(1024)  # the copy path (TLS) alike
    finally:
        logs.close()
