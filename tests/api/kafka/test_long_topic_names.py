"""A topic name as long as Kafka allows (249 characters) through confluent-kafka against
`tierlog serve` on the folder store: created, produced, read back from the bucket once its
local segments are gone, read again on a machine restored from the bucket, and deleted
with an answer (not a dropped connection), locally and in the bucket."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic

from .cluster import KafkaServer
from .test_confluent import admin, consumer, produce, read

LONGEST = "k" * 249
TIERED = ("remote.log.manager.task.interval.ms=100", "log.local.retention.bytes=0")


def wait_for(done: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def local_logs(folder: Path) -> list[int]:
    """Base offsets of the partition's segments on the disk."""
    return sorted(int(name.removesuffix(".log")) for name in os.listdir(folder) if name.endswith(".log"))


def names_under(root: str) -> list[str]:
    return [name for _, dirs, files in os.walk(root) for name in (*dirs, *files)]


def read_all(c: Consumer) -> dict[int, list[bytes]]:
    """Every value of both partitions, from offset 0 to the end."""
    ends = {p: c.get_watermark_offsets(TopicPartition(LONGEST, p), timeout=10)[1] for p in range(2)}
    c.assign([TopicPartition(LONGEST, p, 0) for p in range(2)])
    by_partition: dict[int, list[bytes]] = {0: [], 1: []}
    for message in read(c, sum(ends.values())):
        by_partition[message.partition()].append(message.value())
    c.close()
    return by_partition


def test_a_topic_of_249_characters_is_tiered_restored_and_deleted_over_kafka(tmp_path: Path) -> None:
    values = [f"event {i}".encode().ljust(200, b".") for i in range(300)]
    server = KafkaServer(str(tmp_path / "data"), *TIERED).start()
    try:
        client = admin(server)
        client.create_topics([NewTopic(LONGEST, 2, 1, config={"segment.bytes": "4096", "retention.ms": "-1"})],
                             operation_timeout=10)[LONGEST].result(10)
        reports = [m for start in range(0, len(values), 20) for m in produce(server, LONGEST, values[start:start + 20])]
        sent = {p: [m.value() for m in reports if m.partition() == p] for p in range(2)}
        # Then the bucket alone holds every offset but the active segment's.
        wait_for(lambda: all(len(local_logs(tmp_path / "data" / f"{LONGEST}-{p}")) == 1 for p in range(2)),
                 "sealed segments are tiered and leave the disk")
        tiered_end = [local_logs(tmp_path / "data" / f"{LONGEST}-{p}")[0] for p in range(2)]  # the active segments
        assert read_all(consumer(server)) == sent
    finally:
        assert server.stop() == 0, server.log()

    restored = KafkaServer(str(tmp_path / "fresh"), *TIERED)
    restored.objects_dir = server.objects_dir
    restored.start()
    try:
        # The bucket alone brings back what was tiered: all up to each active segment.
        assert read_all(consumer(restored)) == {p: sent[p][:tiered_end[p]] for p in range(2)}
        assert min(tiered_end) > 100
        client = admin(restored)
        client.delete_topics([LONGEST], operation_timeout=10)[LONGEST].result(10)  # answered: no error
        assert LONGEST not in client.list_topics(timeout=10).topics
        wait_for(lambda: not any(n.startswith("kkk") for n in names_under(restored.objects_dir)),
                 "its objects and record leave the bucket")
        assert not [n for n in os.listdir(tmp_path / "fresh") if n.startswith("kkk")], "and its folders the disk"
        assert "closing connection" not in restored.log()
    finally:
        assert restored.stop() == 0, restored.log()
