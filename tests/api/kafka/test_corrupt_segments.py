"""A flipped byte in a sealed local segment, through librdkafka with its default
`check.crcs=false` (it would hand a wrong value to the application): the broker checks
every batch it did not write itself before serving it, answers CORRUPT_MESSAGE for that
partition alone, and serves the bucket's copy where the segment is tiered."""

from __future__ import annotations

import os
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.hotlog.support import split_batches

from .bounds_support import metric
from .cluster import KafkaServer

MESSAGES = 60
SMALL = {"segment.bytes": "2048", "retention.ms": "-1"}  # tiered segments stay local as well


def value(topic: str, partition: int, i: int) -> bytes:
    return f"{topic}/{partition}/{i}/".encode().ljust(100, b".")


def produce_one_batch_per_message(server: KafkaServer, topics: dict[str, int]) -> None:
    producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 0, "batch.num.messages": 1})
    for i in range(MESSAGES):
        for topic, partitions in topics.items():
            for partition in range(partitions):
                producer.produce(topic, value(topic, partition, i), partition=partition)
        producer.flush(10)
    assert producer.flush(10) == 0


def wait_until_tiered(server: KafkaServer) -> None:
    deadline = time.monotonic() + 20
    while metric(server, 'tierlog_tier_bytes{tier="remote"}') == 0 or \
            metric(server, "tierlog_tiering_copy_lag_segments") > 0:
        assert time.monotonic() < deadline, "sealed segments were not tiered"
        time.sleep(0.1)


def flip_byte_in_second_batch(segment_path: str) -> int:
    """Flip a byte in the records of the segment's second batch; returns its base offset."""
    with open(segment_path, "r+b") as f:
        batches = split_batches(f.read())
        position, header = batches[1]
        f.seek(position + 80)
        byte = f.read(1)
        f.seek(position + 80)
        f.write(bytes([byte[0] ^ 0x20]))
    return header.base_offset


def test_a_flipped_byte_gets_corrupt_message_for_its_partition_only_and_the_bucket_copy_when_tiered(tmp_path):
    # The scrubber off: this is the read path's own check (the scrubber would mend the segment first).
    server = KafkaServer(str(tmp_path / "data"), "remote.log.manager.task.interval.ms=200",
                         "log.scrubber.enable=false").start()
    try:
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        futures = admin.create_topics([NewTopic("tiered", 1, 1, config=SMALL),
                                       NewTopic("local", 2, 1, config={**SMALL, "remote.storage.enable": "false"})])
        for future in futures.values():
            future.result(10)
        produce_one_batch_per_message(server, {"tiered": 1, "local": 2})
        wait_until_tiered(server)
        assert server.stop() == 0, server.log()
        first_segment = "00000000000000000000.log"
        corrupt_offsets = {
            ("tiered", 0): flip_byte_in_second_batch(os.path.join(server.data_dir, "tiered-0", first_segment)),
            ("local", 0): flip_byte_in_second_batch(os.path.join(server.data_dir, "local-0", first_segment)),
        }
        server.start()

        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "readers",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 100,
                             "fetch.error.backoff.ms": 50})  # check.crcs stays false, its default
        consumer.assign([TopicPartition("tiered", 0, 0), TopicPartition("local", 0, 0),
                         TopicPartition("local", 1, 0)])
        got: dict[tuple[str, int], list[bytes]] = {("tiered", 0): [], ("local", 0): [], ("local", 1): []}
        errors: list[tuple[str, int, int]] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (len(got["tiered", 0]) < MESSAGES or len(got["local", 1]) < MESSAGES
                                               or not errors):
            for message in consumer.consume(100, 0.2):
                if message.error() is not None:
                    errors.append((message.topic(), message.partition(), message.error().code()))
                    continue
                key = (message.topic(), message.partition())
                assert message.value() == value(*key, message.offset()), "a wrong value was served"
                assert message.offset() == len(got[key]), "offsets must come in order, none skipped"
                got[key].append(message.value())
        consumer.close()
        assert len(got["tiered", 0]) == MESSAGES  # the corrupt batch came from the bucket
        assert len(got["local", 1]) == MESSAGES  # the other partition of the same fetches
        assert len(got["local", 0]) == corrupt_offsets["local", 0]  # up to the corrupt batch, no further
        assert errors and set(errors) == {("local", 0, KafkaError.INVALID_MSG)}  # Kafka's CORRUPT_MESSAGE (2)
        assert metric(server, 'tierlog_fetch_corrupt_local_reads_total{outcome="refused"}') >= 1
        assert metric(server, 'tierlog_fetch_corrupt_local_reads_total{outcome="served_remote"}') >= 1
    finally:
        if server.running:
            assert server.stop() == 0, server.log()


def test_the_scrubber_mends_a_flipped_byte_on_either_tier_from_the_other(tmp_path):
    bucket = tmp_path / "bucket"
    server = KafkaServer(str(tmp_path / "data"), "remote.log.manager.task.interval.ms=200",
                         "log.scrubber.interval.ms=300", object_store=f"file://{bucket}").start()
    try:
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        admin.create_topics([NewTopic("tiered", 1, 1, config=SMALL)])["tiered"].result(10)
        produce_one_batch_per_message(server, {"tiered": 1})
        wait_until_tiered(server)
        local = os.path.join(server.data_dir, "tiered-0", "00000000000000000000.log")
        with open(local, "rb") as f:
            good_local = f.read()
        objects = sorted(bucket.glob("tiered-*/0/*.log"))
        assert len(objects) >= 2
        good_object = objects[1].read_bytes()
        before = {tier: metric(server, f'tierlog_scrub_repaired_total{{tier="{tier}"}}') for tier in ("local", "remote")}
        flip_byte_in_second_batch(local)
        flip_byte_in_second_batch(str(objects[1]))
        deadline = time.monotonic() + 20
        while any(metric(server, f'tierlog_scrub_repaired_total{{tier="{tier}"}}') <= before[tier]
                  for tier in ("local", "remote")):
            assert time.monotonic() < deadline, f"the scrubber mended nothing:\n{server.log()}"
            time.sleep(0.1)
        with open(local, "rb") as f:
            assert f.read() == good_local
        assert objects[1].read_bytes() == good_object

        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "after-scrub",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 100})
        consumer.assign([TopicPartition("tiered", 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < MESSAGES and time.monotonic() < deadline:
            for message in consumer.consume(100, 0.2):
                assert message.error() is None, message.error()
                assert message.value() == value("tiered", 0, len(got))
                got.append(message.value())
        consumer.close()
        assert len(got) == MESSAGES
        assert metric(server, 'tierlog_scrub_corrupt_total{tier="local"}') == 0
    finally:
        if server.running:
            assert server.stop() == 0, server.log()
