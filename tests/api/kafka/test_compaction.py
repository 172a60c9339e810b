"""Compacted topics through real Kafka clients: confluent-kafka and kcat read a compacted
topic from the beginning and see the last value of each key, at its own offset; a record
without a key is refused; the internal offsets topic is compacted too."""

from __future__ import annotations

import json
import subprocess
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from .cluster import KafkaServer

KEYS = 20
VERSIONS = 30
CLEANER = ("log.cleaner.backoff.ms=100",)
COMPACTED = {"cleanup.policy": "compact", "segment.bytes": "4096", "min.cleanable.dirty.ratio": "0.01",
             "delete.retention.ms": "0"}


def produce_versions(server: KafkaServer, topic: str) -> dict[bytes, tuple[int, bytes | None]]:
    """Every key VERSIONS times, the last version of key 0 a tombstone; returns each key's
    last (offset, value)."""
    last: dict[bytes, tuple[int, bytes | None]] = {}
    producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 0, "batch.num.messages": 5})

    def delivered(err, message) -> None:  # type: ignore[no-untyped-def]
        assert err is None, err
        last[message.key()] = (message.offset(), message.value())

    for version in range(VERSIONS):
        for k in range(KEYS):
            value = None if (k == 0 and version == VERSIONS - 1) else f"key{k}-v{version}".encode().ljust(80, b".")
            producer.produce(topic, value, key=b"key%d" % k, on_delivery=delivered)
        producer.flush(10)
    assert producer.flush(10) == 0
    return last


def read_all(server: KafkaServer, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": f"read-{time.monotonic()}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 50})
    end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[tuple[int, bytes | None, bytes | None]] = []
    deadline = time.monotonic() + 20
    while (not got or got[-1][0] < end - 1) and time.monotonic() < deadline:
        for message in consumer.consume(500, 0.2):
            if message.error() is None:
                got.append((message.offset(), message.key(), message.value()))
            else:
                assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
    consumer.close()
    return got


def check_compacted(got: list[tuple[int, bytes | None, bytes | None]],
                    last: dict[bytes, tuple[int, bytes | None]]) -> None:
    """Offsets increase, none twice; each key's last record is its last version, at the
    offset it was written at (sealed segments hold one record per key; the active one may
    still hold history); a key whose last version is a tombstone may be gone."""
    offsets = [offset for offset, _, _ in got]
    assert offsets == sorted(set(offsets)), "offsets must increase, none twice"
    seen: dict[bytes, tuple[int, bytes | None]] = {}
    for offset, key, value in got:
        assert key is not None
        seen[key] = (offset, value)
    for key, (offset, value) in last.items():
        if value is None:
            assert key not in seen or seen[key] == (offset, None)
        else:
            assert seen[key] == (offset, value)


def test_a_compacted_topic_reads_back_the_last_value_of_each_key_through_confluent_kafka_and_kcat(tmp_path):
    server = KafkaServer(str(tmp_path / "data"), *CLEANER).start()
    try:
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        admin.create_topics([NewTopic("table", 1, 1, config=COMPACTED)])["table"].result(10)
        last = produce_versions(server, "table")
        total = KEYS * VERSIONS
        deadline = time.monotonic() + 30
        while len(got := read_all(server, "table")) > total // 2:
            assert time.monotonic() < deadline, f"not compacted: {len(got)} of {total} records left"
            time.sleep(0.3)
        check_compacted(got, last)
        # kcat reads later: the cleaner may have cleaned more meanwhile, never differently.
        kcat = subprocess.run(["kcat", "-C", "-b", server.bootstrap, "-t", "table", "-p", "0", "-o", "beginning",
                               "-e", "-q", "-J"], capture_output=True, timeout=30, check=True)
        lines = [json.loads(line) for line in kcat.stdout.decode().splitlines() if line.strip()]
        check_compacted([(line["offset"], line["key"].encode(),
                          None if line["payload"] is None else line["payload"].encode()) for line in lines], last)
    finally:
        assert server.stop() == 0, server.log()


def test_a_record_without_a_key_is_refused_by_a_compacted_topic(tmp_path):
    server = KafkaServer(str(tmp_path / "data")).start()
    try:
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        admin.create_topics([NewTopic("table", 1, 1, config=COMPACTED)])["table"].result(10)
        errors = []
        producer = Producer({"bootstrap.servers": server.bootstrap, "message.send.max.retries": 0})
        producer.produce("table", b"no key", on_delivery=lambda err, _: errors.append(err))
        producer.flush(10)
        assert errors and errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors
        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "g"})
        assert consumer.get_watermark_offsets(TopicPartition("table", 0), timeout=10) == (0, 0)
        consumer.close()
        for name in ("remote.storage.enable", "remote.wal.enable"):
            refused = admin.create_topics([NewTopic("tiered-table", 1, 1, config={**COMPACTED, name: "true"})])
            try:
                refused["tiered-table"].result(10)
                raise AssertionError(f"a compacted topic with {name} was created")
            except KafkaException as exc:
                assert "not tiered yet" in str(exc)
    finally:
        assert server.stop() == 0, server.log()


def test_the_offsets_topic_is_compacted_and_a_restart_reads_back_each_groups_last_commit(tmp_path):
    server = KafkaServer(str(tmp_path / "data"), *CLEANER, "offsets.topic.segment.bytes=4096").start()
    try:
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        admin.create_topics([NewTopic("events", 2, 1)])["events"].result(10)
        consumers = [Consumer({"bootstrap.servers": server.bootstrap, "group.id": f"group{g}",
                               "enable.auto.commit": False}) for g in range(3)]
        commits = 300
        for n in range(1, commits + 1):
            for g, consumer in enumerate(consumers):
                consumer.commit(offsets=[TopicPartition("events", p, n * 10 + g) for p in range(2)],
                                asynchronous=False)
        for consumer in consumers:
            consumer.close()
        offsets_dirs = sorted(p for p in (tmp_path / "data").glob("__consumer_offsets-*"))
        deadline = time.monotonic() + 30
        while sum(f.stat().st_size for d in offsets_dirs for f in d.glob("*.log")) > commits * 3 * 2 * 100 // 4:
            assert time.monotonic() < deadline, "__consumer_offsets was not compacted"
            time.sleep(0.3)
        server.restart()
        for g in range(3):
            consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": f"group{g}"})
            committed = consumer.committed([TopicPartition("events", p) for p in range(2)], timeout=10)
            assert [tp.offset for tp in committed] == [commits * 10 + g] * 2
            consumer.close()
    finally:
        assert server.stop() == 0, server.log()
