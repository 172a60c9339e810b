"""Compacted topics through real Kafka clients: confluent-kafka, kcat and kafka-python read a
compacted topic from the beginning and see the last value of each key, at its own offset,
whether it is kept on local disk (hotlog's cleaner) or tiered (the bucket's cleaner, which
compacts the objects themselves); a server restored from the bucket alone reads the
compacted log back; a reader fetching in small steps while the bucket's cleaner swaps
segments under it sees every offset once, in order; a record without a key is refused; the
internal offsets topic is compacted too."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from hotlog.batch import parse_header

from .bounds_support import metric
from .cluster import KafkaServer
from .test_kcat import END_AT_ONCE

KEYS = 20
VERSIONS = 30
CLEANER = ("log.cleaner.backoff.ms=100",)
# On local disk only: hotlog's cleaner compacts it (a tiered log is the bucket's cleaner's).
COMPACTED = {"cleanup.policy": "compact", "segment.bytes": "4096", "min.cleanable.dirty.ratio": "0.01",
             "delete.retention.ms": "0", "remote.storage.enable": "false"}
# Tiered, and off the disk as soon as a segment is in the bucket: reads from the beginning
# come from the object store.
TIERED = {**COMPACTED, "remote.storage.enable": "true", "local.retention.bytes": "0"}
BUCKET_CLEANER = ("remote.log.manager.task.interval.ms=100", "log.cleaner.backoff.ms=100")
FILLER = b"filler".ljust(900, b".")
VERSION = re.compile(rb"key(\d+)-v(\d+)\.")

Record = tuple[int, bytes | None, bytes | None]  # offset, key, value


def value_of(key: int, version: int) -> bytes:
    return f"key{key}-v{version}.".encode().ljust(80, b".")


def version_of(value: bytes | None) -> int:
    assert value is not None
    found = VERSION.match(value)
    assert found, value
    return int(found[2])


def record_of(message: Message) -> Record | None:
    """A consumed message as a Record; Kafka's EOF notice is None, any other error fails."""
    error = message.error()
    if error is not None:
        assert error.code() == KafkaError._PARTITION_EOF, error
        return None
    offset = message.offset()
    assert offset is not None
    return offset, message.key(), message.value()


def produce_versions(server: KafkaServer, topic: str) -> dict[bytes, tuple[int, bytes | None]]:
    """Every key VERSIONS times, the last version of key 0 a tombstone; returns each key's
    last (offset, value)."""
    last: dict[bytes, tuple[int, bytes | None]] = {}
    producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 0, "batch.num.messages": 5})

    def delivered(err: KafkaError | None, message: Any) -> None:
        assert err is None, err
        last[message.key()] = (message.offset(), message.value())

    for version in range(VERSIONS):
        for k in range(KEYS):
            value = None if (k == 0 and version == VERSIONS - 1) else value_of(k, version)
            producer.produce(topic, value, key=b"key%d" % k, on_delivery=delivered)
        producer.flush(10)
    assert producer.flush(10) == 0
    assert len(last) == KEYS
    return last


def produced_bytes() -> int:
    """Key and value bytes produce_versions writes, record overheads left out."""
    return sum(len(b"key%d" % k) + (0 if (k == 0 and v == VERSIONS - 1) else len(value_of(k, v)))
               for v in range(VERSIONS) for k in range(KEYS))


def read_all(server: KafkaServer, topic: str) -> list[Record]:
    """confluent-kafka, from the beginning to the high watermark as of the start."""
    consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": f"read-{time.monotonic()}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 50})
    end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[Record] = []
    deadline = time.monotonic() + 20
    while (not got or got[-1][0] < end - 1) and time.monotonic() < deadline:
        got += [r for r in map(record_of, consumer.consume(500, 0.2)) if r is not None]
    consumer.close()
    assert got and got[-1][0] == end - 1, f"confluent-kafka did not reach offset {end - 1}"
    return got


def read_kcat(server: KafkaServer, topic: str) -> list[Record]:
    kcat = subprocess.run(["kcat", "-C", "-b", server.bootstrap, "-t", topic, "-p", "0", "-o", "beginning",
                           "-e", *END_AT_ONCE, "-q", "-J"], capture_output=True, timeout=30, check=True)
    lines = [json.loads(line) for line in kcat.stdout.decode().splitlines() if line.strip()]
    return [(line["offset"], None if line["key"] is None else line["key"].encode(),
             None if line["payload"] is None else line["payload"].encode()) for line in lines]


def read_kafka_python(server: KafkaServer, topic: str) -> list[Record]:
    consumer = KafkaConsumer(bootstrap_servers=server.bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_wait_ms=50)
    partition = KafkaTopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    end = consumer.end_offsets([partition])[partition]
    got: list[Record] = []
    deadline = time.monotonic() + 20
    while consumer.position(partition) < end and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            got += [(r.offset, r.key, r.value) for r in records]
    reached = consumer.position(partition)
    consumer.close()
    assert reached >= end, f"kafka-python stopped at offset {reached} of {end}"
    return got


def check_compacted(got: list[Record], last: dict[bytes, tuple[int, bytes | None]]) -> None:
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


def wait_until_compacted(server: KafkaServer, topic: str, seconds: float = 15) -> list[Record]:
    """Read from the beginning until at most half of produce_versions' records are left."""
    total = KEYS * VERSIONS
    deadline = time.monotonic() + seconds
    while len(got := read_all(server, topic)) > total // 2:
        assert time.monotonic() < deadline, f"not compacted: {len(got)} of {total} records left\n{server.log()[-3000:]}"
        time.sleep(0.2)
    return got


def log_objects(server: KafkaServer, topic: str) -> list[Path]:
    """The `.log` objects of the topic's segments in the server's bucket (a folder)."""
    return sorted(p for folder in Path(server.objects_dir).glob(f"{topic}-*") for p in folder.rglob("*.log"))


def bucket_records(server: KafkaServer, topic: str) -> tuple[int, int]:
    """(records, bytes) the topic's `.log` objects in the bucket hold, by their batch headers."""
    records = size = 0
    for path in log_objects(server, topic):
        data = path.read_bytes()
        size += len(data)
        position = 0
        while position < len(data):
            header = parse_header(data, position)
            records += header.record_count
            position += header.size
    return records, size


def create(server: KafkaServer, topic: str, config: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(10)


def compact_in_the_bucket(server: KafkaServer, topic: str) -> dict[bytes, tuple[int, bytes | None]]:
    """produce_versions into a tiered compacted topic, then wait until reads from the
    beginning and the bucket's objects are both compacted (at most half of the records, and
    of the key and value bytes, left). Returns each key's last (offset, value)."""
    create(server, topic, TIERED)
    last = produce_versions(server, topic)
    check_compacted(wait_until_compacted(server, topic), last)
    total = KEYS * VERSIONS
    deadline = time.monotonic() + 15
    while (held := bucket_records(server, topic))[0] > total // 2 or held[1] > produced_bytes() // 2:
        assert time.monotonic() < deadline, (f"the bucket holds {held[0]} of {total} records, {held[1]} bytes "
                                             f"for {produced_bytes()} produced\n{server.log()[-3000:]}")
        time.sleep(0.2)
    assert held[0] >= KEYS - 1, f"the bucket holds {held[0]} records, fewer than the keys left"
    assert metric(server, "tierlog_remote_cleans_total") >= 1
    return last


def test_a_compacted_topic_reads_back_the_last_value_of_each_key_through_confluent_kafka_and_kcat(
        tmp_path: Path) -> None:
    server = KafkaServer(str(tmp_path / "data"), *CLEANER).start()
    try:
        create(server, "table", COMPACTED)
        last = produce_versions(server, "table")
        check_compacted(wait_until_compacted(server, "table"), last)
        # kcat reads later: the cleaner may have cleaned more meanwhile, never differently.
        check_compacted(read_kcat(server, "table"), last)
        assert not log_objects(server, "table"), "a topic with remote.storage.enable=false was tiered"
    finally:
        assert server.stop() == 0, server.log()


def test_a_record_without_a_key_is_refused_by_a_compacted_topic(tmp_path: Path) -> None:
    server = KafkaServer(str(tmp_path / "data")).start()
    try:
        create(server, "table", COMPACTED)
        # Compacted and tiered, and written through the WAL: both are accepted now.
        create(server, "tiered-table", TIERED)
        create(server, "wal-table", {**TIERED, "remote.wal.enable": "true"})
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        resources = [ConfigResource("topic", name) for name in ("tiered-table", "wal-table")]
        described = {r.name: f.result(10) for r, f in admin.describe_configs(resources).items()}
        assert described["tiered-table"]["cleanup.policy"].value == "compact"
        assert described["tiered-table"]["remote.storage.enable"].value == "true"
        assert described["wal-table"]["remote.wal.enable"].value == "true"
        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "g"})
        for topic in ("table", "tiered-table", "wal-table"):
            errors: list[KafkaError | None] = []
            producer = Producer({"bootstrap.servers": server.bootstrap, "message.send.max.retries": 0})
            producer.produce(topic, b"no key", on_delivery=lambda err, _: errors.append(err))
            producer.flush(10)
            assert errors and errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, (topic, errors)
            assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 0), topic
        # One batch, one record in ten without a key: the answer names those (KIP-467's record
        # errors), so librdkafka fails them with INVALID_RECORD and the others with
        # _INVALID_DIFFERENT_RECORD, free to send again (librdkafka's test 0011).
        outcomes: dict[int, int] = {}
        # A long linger, so a stall of this loop cannot split the batch; flush sends it at once.
        # A warm-up first: records produced while the leader is unknown are sent one per
        # request once it is (librdkafka, seen in its debug log), which splits the batch.
        producer = Producer({"bootstrap.servers": server.bootstrap, "message.send.max.retries": 0,
                             "linger.ms": 5000})
        producer.produce("table", b"warm-up", key=b"warm-up", partition=0)
        assert producer.flush(10) == 0
        for i in range(50):
            producer.produce("table", b"v%d" % i, key=None if i % 10 == 0 else b"k%d" % i, partition=0,
                             on_delivery=lambda err, _, i=i: outcomes.__setitem__(
                                 i, KafkaError.NO_ERROR if err is None else err.code()))
        assert producer.flush(10) == 0
        assert {i for i, code in outcomes.items() if code == KafkaError.INVALID_RECORD} == set(range(0, 50, 10))
        assert sum(code == KafkaError._INVALID_DIFFERENT_RECORD for code in outcomes.values()) == 45, outcomes
        consumer.close()
    finally:
        assert server.stop() == 0, server.log()


def test_a_compacted_topic_in_the_bucket_is_compacted_there_and_reads_back_through_three_clients(
        tmp_path: Path) -> None:
    # Replaced objects go 200 ms after a clean: the bucket's folder shrinks with it.
    server = KafkaServer(str(tmp_path / "data"), *BUCKET_CLEANER, "log.segment.delete.delay.ms=200").start()
    try:
        last = compact_in_the_bucket(server, "table")
        assert metric(server, 'tierlog_fetch_bytes_total{tier="remote"}') > 0, "nothing was read from the bucket"
        check_compacted(read_kcat(server, "table"), last)
        check_compacted(read_kafka_python(server, "table"), last)
        assert "Traceback" not in server.log(), server.log()
    finally:
        assert server.stop() == 0, server.log()


def tier_everything(server: KafkaServer, topic: str) -> int:
    """Append filler (its own key) until every earlier record is in the bucket and off the
    disk (local.retention.bytes=0: the partition's folder holds the active segment alone);
    returns the bucket's end, the active segment's base offset. That segment, filler only,
    is not uploaded (no WAL): a restore from the bucket ends where it starts."""
    consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "g"})
    end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    consumer.close()
    filler = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 0})
    for _ in range(6):  # 6 x 900 bytes: the segment holding `end - 1` rolls (segment.bytes 4096)
        filler.produce(topic, FILLER, key=b"filler")
    assert filler.flush(10) == 0
    folder = Path(server.data_dir) / f"{topic}-0"
    deadline = time.monotonic() + 15
    while len(local := sorted(folder.glob("*.log"))) != 1 or int(local[0].stem) < end:
        assert time.monotonic() < deadline, f"{topic} not tiered up to {end}: {local}\n{server.log()[-3000:]}"
        time.sleep(0.1)
    return int(local[0].stem)


def test_a_server_restored_from_the_bucket_reads_the_compacted_log_and_continues_its_offsets(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = KafkaServer(str(data), *BUCKET_CLEANER, "log.segment.delete.delay.ms=200").start()
    try:
        last = compact_in_the_bucket(server, "table")
        bucket_end = tier_everything(server, "table")
    finally:
        assert server.stop() == 0, server.log()

    # A new machine: no data folder, the same bucket.
    shutil.rmtree(data)
    server.start()
    try:
        got = read_all(server, "table")
        check_compacted(got, last)
        assert len(got) <= KEYS * VERSIONS // 2, f"{len(got)} records read back: the restore is not compacted"
        assert got[-1][0] == bucket_end - 1
        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "g"})
        assert consumer.get_watermark_offsets(TopicPartition("table", 0), timeout=10) == (0, bucket_end)
        consumer.close()
        offsets: list[int | None] = []

        def delivered(err: KafkaError | None, message: Any) -> None:
            assert err is None, err
            offsets.append(message.offset())

        producer = Producer({"bootstrap.servers": server.bootstrap})
        producer.produce("table", value_of(1, VERSIONS), key=b"key1", on_delivery=delivered)
        assert producer.flush(10) == 0
        assert offsets == [bucket_end], f"the first record after the restore got offset {offsets}, not {bucket_end}"
        assert "Traceback" not in server.log(), server.log()
    finally:
        assert server.stop() == 0, server.log()


def test_a_reader_fetching_in_small_steps_while_the_bucket_cleaner_swaps_segments_sees_each_offset_once(
        tmp_path: Path) -> None:
    """A producer keeps writing new versions of each key, the bucket's cleaner keeps
    replacing segments (their objects deleted 500 ms later, under readers), and a consumer
    reads from the beginning again and again, about a kilobyte per fetch."""
    server = KafkaServer(str(tmp_path / "data"), *BUCKET_CLEANER, "log.segment.delete.delay.ms=500").start()
    try:
        create(server, "table", TIERED)
        produced: dict[int, tuple[bytes, bytes]] = {}  # offset: (key, value), as delivered
        failures: list[object] = []
        producing = threading.Event()
        producing.set()

        def produce() -> None:
            producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 0, "batch.num.messages": 5})

            def delivered(err: KafkaError | None, message: Any) -> None:
                if err is not None:
                    failures.append(err)
                else:
                    produced[message.offset()] = (message.key(), message.value())

            try:
                deadline = time.monotonic() + 6
                version = 0
                while time.monotonic() < deadline:
                    for k in range(KEYS):
                        producer.produce("table", value_of(k, version), key=b"key%d" % k, on_delivery=delivered)
                    producer.flush(10)
                    version += 1
                    time.sleep(0.03)  # about 600 records a second: a segment every 0.2 s
                if producer.flush(10):
                    failures.append("records left unsent")
            except BaseException as exc:  # the test thread reports it
                failures.append(exc)
            finally:
                producing.clear()

        writer = threading.Thread(target=produce, daemon=True)
        # 1 KiB fetches, never more: librdkafka fails a partition with MSG_SIZE_TOO_LARGE when
        # fetches hold no record up to fetch.max.bytes, as runs of header-only batches longer
        # than a fetch once did (cleans kept one each; now fetches read past them).
        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "small-steps",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 20, "fetch.max.bytes": 1024,
                             "max.partition.fetch.bytes": 1024, "message.max.bytes": 1000})
        cleans_before = deleted_before = -1.0
        passes: list[list[Record]] = []
        writer.start()
        try:
            deadline = time.monotonic() + 15
            while True:
                final = not producing.is_set()  # the writer is done: this pass reads to the very end
                end = consumer.get_watermark_offsets(TopicPartition("table", 0), timeout=10)[1]
                if end == 0:
                    assert time.monotonic() < deadline, "nothing produced"
                    time.sleep(0.05)
                    continue
                if cleans_before < 0:
                    cleans_before = metric(server, "tierlog_remote_cleans_total")
                    deleted_before = metric(server, "tierlog_tiering_remote_deleted_segments_total")
                passes.append(read_pass(consumer, end, deadline))
                if final:
                    break
        finally:
            consumer.close()
            writer.join(15)
        assert not writer.is_alive() and not failures, failures
        assert len(passes) >= 3, f"only {len(passes)} passes over the log"
        assert metric(server, "tierlog_remote_cleans_total") > cleans_before, "no clean while the consumer read"
        assert metric(server, "tierlog_tiering_remote_deleted_segments_total") > deleted_before, \
            "no replaced segment was deleted while the consumer read"
        assert metric(server, 'tierlog_fetch_bytes_total{tier="remote"}') > 0, "nothing was read from the bucket"

        for got in passes:
            offsets = [offset for offset, _, _ in got]
            assert all(a < b for a, b in zip(offsets, offsets[1:])), "offsets must strictly increase"
            versions: dict[bytes, int] = {}
            for offset, key, value in got:
                assert produced.get(offset) == (key, value), f"offset {offset}: read {key!r}, {value!r}"
                assert key is not None
                version = version_of(value)
                assert version > versions.get(key, -1), f"{key!r}: version {version} after {versions[key]}"
                versions[key] = version
        last: dict[bytes, bytes] = {}
        for offset in sorted(produced):
            key, value = produced[offset]
            last[key] = value
        seen_last = {key: value for _, key, value in passes[-1] if key is not None}
        assert seen_last == last, "the last pass must end at each key's last value"
        assert passes[-1][-1][0] == max(produced)
        assert "Traceback" not in server.log(), server.log()
    finally:
        assert server.stop() == 0, server.log()


def read_pass(consumer: Consumer, end: int, deadline: float) -> list[Record]:
    """One read from the beginning up to `end` (a high watermark): the records fetched."""
    consumer.assign([TopicPartition("table", 0, OFFSET_BEGINNING)])
    got: list[Record] = []
    while not got or got[-1][0] < end - 1:
        assert time.monotonic() < deadline, f"a pass stopped at {got[-1][0] if got else None} of {end}"
        got += [r for r in map(record_of, consumer.consume(100, 0.1)) if r is not None]
    consumer.unassign()
    return got


def test_the_offsets_topic_is_compacted_and_a_restart_reads_back_each_groups_last_commit(tmp_path: Path) -> None:
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
