"""Ten thousand partitions under the usual descriptor limit of 1,024: segment files are
opened on demand and the least recently used closed, so creating, writing, restarting and
reading them all never runs the broker out of descriptors."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from .cluster import KafkaServer

LIMIT = 1024
PARTITIONS = 10_000
WRITTEN = range(0, PARTITIONS, 5)  # every fifth partition gets a message


@contextlib.contextmanager
def soft_nofile_limit(limit: int) -> Iterator[None]:
    """RLIMIT_NOFILE's soft limit for processes started inside (they inherit it), as a
    distribution sets it by default; this process gets its own back afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def memory_folder(tmp_path) -> Iterator[str]:
    """A folder in memory where there is one: 30,000 files made and fsynced take seconds
    on a disk, and this test is about descriptors."""
    if not os.path.isdir("/dev/shm"):
        yield str(tmp_path)
        return
    folder = tempfile.mkdtemp(dir="/dev/shm", prefix="tierlog-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def process_limit(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as f:
        row = next(line for line in f if line.startswith("Max open files"))
    return int(row.split()[3])


def test_ten_thousand_partitions_are_written_restarted_and_read_under_1024_descriptors(memory_folder):
    with soft_nofile_limit(LIMIT):
        server = KafkaServer(os.path.join(memory_folder, "data")).start()
    try:
        assert process_limit(server.process.pid) == LIMIT
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        admin.create_topics([NewTopic("wide", PARTITIONS, 1)], request_timeout=60)["wide"].result(60)
        producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 20})
        for partition in WRITTEN:
            producer.produce("wide", b"value-%d" % partition, partition=partition)
        assert producer.flush(60) == 0
        assert open_descriptors(server.process.pid) < LIMIT

        assert server.stop() == 0, server.log()
        with soft_nofile_limit(LIMIT):
            server.start()
        metadata = AdminClient({"bootstrap.servers": server.bootstrap}).list_topics("wide", timeout=30)
        assert len(metadata.topics["wide"].partitions) == PARTITIONS
        consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "wide-reader",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition("wide", p, 0) for p in WRITTEN])
        seen: dict[int, bytes] = {}
        for _ in range(60):
            for message in consumer.consume(len(WRITTEN), 0.5):
                assert message.error() is None, message.error()
                seen[message.partition()] = message.value()
            if len(seen) == len(WRITTEN):
                break
        consumer.close()
        assert seen == {p: b"value-%d" % p for p in WRITTEN}
        assert open_descriptors(server.process.pid) < LIMIT
    finally:
        if server.running:
            assert server.stop() == 0, server.log()
    assert "Too many open files" not in server.log() and "Traceback" not in server.log()


def test_log_segment_open_files_max_bounds_the_segment_files_held_open(memory_folder):
    server = KafkaServer(os.path.join(memory_folder, "data"), "log.segment.open.files.max=20").start()
    try:
        idle = open_descriptors(server.process.pid)
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        admin.create_topics([NewTopic("bounded", 300, 1)], request_timeout=30)["bounded"].result(30)
        producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 20})
        for partition in range(300):
            producer.produce("bounded", b"v", partition=partition)
        assert producer.flush(30) == 0
        # 300 active segments written, 20 of them still open (the client's connection: one more).
        assert idle + 20 <= open_descriptors(server.process.pid) <= idle + 22
    finally:
        assert server.stop() == 0, server.log()
