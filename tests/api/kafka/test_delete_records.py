"""DeleteRecords through confluent-kafka's AdminClient: the records below an offset are
gone for consumers (they start at the new low watermark), whole segments go from disk and
from the bucket, the start survives a restart and a restore from the bucket; a compacted
topic (POLICY_VIOLATION) and an offset past the high watermark are refused."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from .cluster import KafkaServer

MESSAGES = 100
SMALL = {"segment.bytes": "4096"}


def produce(server: KafkaServer, topic: str) -> None:
    producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 0, "batch.num.messages": 5})
    for i in range(MESSAGES):
        producer.produce(topic, b"message %03d" % i + b"." * 100, key=b"k%d" % (i % 10), partition=0)
        producer.poll(0)
    assert producer.flush(10) == 0


def delete_before(admin: AdminClient, topic: str, offset: int) -> int:
    [future] = admin.delete_records([TopicPartition(topic, 0, offset)]).values()
    return future.result(10).low_watermark


def first_offsets(server: KafkaServer, topic: str) -> tuple[int, list[int]]:
    """(earliest offset, the offsets a consumer from the beginning reads)."""
    consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": f"g{time.monotonic()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, 0)])  # below the start: reset to the earliest
    seen: list[int] = []
    deadline = time.monotonic() + 20
    while (not seen or seen[-1] < high - 1) and time.monotonic() < deadline:
        for message in consumer.consume(100, 0.2):
            assert message.error() is None, message.error()
            seen.append(message.offset())
    consumer.close()
    return low, seen


def offset_for_time(server: KafkaServer, topic: str, timestamp: int) -> int:
    """ListOffsets by timestamp: the first record at or after it."""
    consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "times"})
    try:
        [found] = consumer.offsets_for_times([TopicPartition(topic, 0, timestamp)], timeout=10)
        return int(found.offset)
    finally:
        consumer.close()


def test_records_below_an_offset_are_gone_and_stay_gone_after_a_restart(tmp_path: Path) -> None:
    server = KafkaServer(str(tmp_path / "data"), "remote.log.storage.system.enable=false").start()
    try:
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        admin.create_topics([NewTopic("purge", 1, 1, config=SMALL)])["purge"].result(10)
        produce(server, "purge")
        segments = len(list((tmp_path / "data" / "purge-0").glob("*.log")))
        assert delete_before(admin, "purge", 60) == 60
        assert len(list((tmp_path / "data" / "purge-0").glob("*.log"))) < segments  # whole segments went
        low, seen = first_offsets(server, "purge")
        assert low == 60 and seen == list(range(60, MESSAGES))
        assert delete_before(admin, "purge", 63) == 63  # mid-segment: 60-62 stay on disk, deleted
        assert offset_for_time(server, "purge", 0) == 63  # a time before every record names no deleted one
        assert delete_before(admin, "purge", 30) == 63  # never back
        with pytest.raises(KafkaException) as refused:
            delete_before(admin, "purge", MESSAGES + 1)
        assert refused.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
        server.restart()
        assert first_offsets(server, "purge")[0] == 63
        # A new client, as after any broker restart: the old one's leader lookup may still
        # see the connection it lost and answer "No leaders found".
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        assert delete_before(admin, "purge", -1) == MESSAGES  # -1: the high watermark
        admin.create_topics([NewTopic("table", 1, 1, config={"cleanup.policy": "compact"})])["table"].result(10)
        produce(server, "table")
        with pytest.raises(KafkaException) as refused:
            delete_before(admin, "table", 10)
        assert refused.value.args[0].code() == KafkaError.POLICY_VIOLATION
    finally:
        assert server.stop() == 0, server.log()


def test_deleted_records_leave_the_bucket_and_a_restore_does_not_bring_them_back(tmp_path: Path) -> None:
    server = KafkaServer(str(tmp_path / "data"), "remote.log.manager.task.interval.ms=100").start()
    try:
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        admin.create_topics([NewTopic("purge", 1, 1, config={**SMALL, "local.retention.bytes": "0"})])["purge"].result(10)
        produce(server, "purge")
        objects = Path(server.objects_dir)
        deadline = time.monotonic() + 20
        while len(list((tmp_path / "data" / "purge-0").glob("*.log"))) > 1:  # all but the active one tiered
            assert time.monotonic() < deadline, "the segments were not tiered"
            time.sleep(0.1)
        tiered = len(list(objects.glob("purge-*/0/*.log")))
        assert delete_before(admin, "purge", 63) == 63
        while len(list(objects.glob("purge-*/0/*.log"))) >= tiered:
            assert time.monotonic() < deadline, "no segment left the bucket"
            time.sleep(0.1)
        assert first_offsets(server, "purge") == (63, list(range(63, MESSAGES)))
        assert offset_for_time(server, "purge", 0) == 63  # the search in the bucket skips them too
        server.stop()
        shutil.rmtree(tmp_path / "data")  # a new machine, the same bucket
        server.start()
        low, seen = first_offsets(server, "purge")
        assert low == 63 and seen[0] == 63
    finally:
        if server.running:
            assert server.stop() == 0, server.log()
