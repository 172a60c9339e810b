"""kcat against a real tierlog server process. kcat is part of the test setup
(tests/run.sh installs it): when it is missing these tests fail, they do not skip."""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ..server import http_get
from ..test_grpc import _sample
from .cluster import KafkaServer

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
# For `kcat -C -e`: it exits at the end of the partitions, which shows as an empty fetch the
# broker holds for fetch.wait.max.ms (librdkafka's 500 ms); 10 ms shows it at once.
END_AT_ONCE = ("-X", "fetch.wait.max.ms=10")


@pytest.fixture(scope="module")
def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not on PATH: install it (Debian package kcat; tests/run.sh does)")
    return path


def run(kcat: str, server: KafkaServer, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kcat, "-b", server.bootstrap, *args], input=stdin, capture_output=True, text=True,
                          timeout=30)


def consume(kcat: str, server: KafkaServer, topic: str, *args: str) -> list[str]:
    done = run(kcat, server, "-C", "-t", topic, "-e", *END_AT_ONCE, "-q", "-f", "%k|%s|%o\n", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def create_topic(server: KafkaServer, name: str, partitions: int = 1, **configs: str) -> None:
    client = AdminClient({"bootstrap.servers": server.bootstrap})
    client.create_topics([NewTopic(name, partitions, 1, config=configs)])[name].result(10)


class Member:
    """A `kcat -G` balanced consumer, its output and rebalance notices read as they come."""

    def __init__(self, kcat: str, server: KafkaServer, group: str, topic: str) -> None:
        self.process = subprocess.Popen(
            [kcat, "-b", server.bootstrap, "-u", "-G", group, "-f", "%p %s\n", "-X", "auto.offset.reset=earliest",
             "-X", "heartbeat.interval.ms=200", "-X", "session.timeout.ms=6000",
             "-X", "auto.commit.interval.ms=200", topic],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.messages: queue.Queue[tuple[int, str]] = queue.Queue()
        self.assigned: list[int] | None = None
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._read_messages, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(target=self._read_notices, args=(self.process.stderr,), daemon=True).start()

    def _read_messages(self, stream: Iterator[str]) -> None:
        for line in stream:
            partition, value = line.split()
            self.messages.put((int(partition), value))

    def _read_notices(self, stream: Iterator[str]) -> None:
        for line in stream:
            if "rebalanced" in line and "assigned:" in line:
                parts = line.split("assigned:")[1].split(",")
                self.assigned = sorted(int(p.strip().split("[")[1].rstrip("]")) for p in parts)
            elif "rebalanced" in line and "revoked:" in line:
                self.assigned = []

    def take(self, count: int, seconds: float = 20) -> list[tuple[int, str]]:
        got = []
        deadline = time.monotonic() + seconds
        while len(got) < count:
            got.append(self.messages.get(timeout=max(0.01, deadline - time.monotonic())))
        return got

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)  # kcat closes the consumer: final commit, LeaveGroup
        assert self.process.wait(15) == 0


def wait_for(condition: Callable[[], object], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_metadata_lists_broker_and_topics(kcat: str, kafka_server: KafkaServer) -> None:
    create_topic(kafka_server, "kcat-listed", 3)
    done = run(kcat, kafka_server, "-L")
    assert done.returncode == 0, done.stderr
    assert f"broker 0 at {kafka_server.bootstrap}" in done.stdout
    assert 'topic "kcat-listed" with 3 partitions' in done.stdout


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_with_every_codec_and_consume_from_the_beginning(kcat: str, kafka_server: KafkaServer,
                                                                  acks: str) -> None:
    topic = f"kcat-produce-{acks}"
    expected = []
    for codec in CODECS:
        lines = [f"{codec}{i}:value-{codec}-{i}" for i in range(20)]
        done = run(kcat, kafka_server, "-P", "-t", topic, "-K:", "-z", codec, "-X", f"acks={acks}",
                   stdin="\n".join(lines) + "\n")
        assert done.returncode == 0, done.stderr
        expected += [line.replace(":", "|") for line in lines]
    got = consume(kcat, kafka_server, topic, "-o", "beginning")
    assert [line.rsplit("|", 1)[0] for line in got] == expected
    assert [int(line.rsplit("|", 1)[1]) for line in got] == list(range(len(expected)))


def test_consume_from_an_offset_the_tail_and_a_timestamp(kcat: str, kafka_server: KafkaServer) -> None:
    topic = "kcat-start-points"
    base_ts = int(time.time() * 1000) - 60_000
    producer = Producer({"bootstrap.servers": kafka_server.bootstrap})
    for i in range(10):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i, timestamp=base_ts + i * 1000)
    assert producer.flush(10) == 0
    assert [line.split("|")[2] for line in consume(kcat, kafka_server, topic, "-o", "7")] == ["7", "8", "9"]
    assert [line.split("|")[1] for line in consume(kcat, kafka_server, topic, "-o", "-3")] == ["v7", "v8", "v9"]
    from_ts = consume(kcat, kafka_server, topic, "-o", f"s@{base_ts + 4500}")
    assert [line.split("|")[2] for line in from_ts] == ["5", "6", "7", "8", "9"]
    assert consume(kcat, kafka_server, topic, "-o", "end") == []


def test_group_of_two_rebalances_and_committed_offsets_survive_a_restart(kcat: str,
                                                                          restartable_server: KafkaServer) -> None:
    server, topic, group = restartable_server, "kcat-group", "kcat-group-g"
    create_topic(server, topic, 2)
    producer = Producer({"bootstrap.servers": server.bootstrap})

    def send(first: int, count: int) -> None:
        for i in range(first, first + count):
            producer.produce(topic, value=b"%d" % i, partition=i % 2)
        assert producer.flush(10) == 0

    send(0, 10)
    a = Member(kcat, server, group, topic)
    assert sorted(int(v) for _, v in a.take(10)) == list(range(10))
    b = Member(kcat, server, group, topic)
    wait_for(lambda: a.assigned and b.assigned and len(a.assigned) == 1 and len(b.assigned) == 1)
    assert sorted((a.assigned or []) + (b.assigned or [])) == [0, 1]
    send(10, 4)
    for member in (a, b):
        (partition,) = member.assigned or []
        assert sorted(member.take(2)) == [(partition, str(i)) for i in range(10 + partition, 14, 2)]
    a.stop()  # leaves: b takes over both partitions
    wait_for(lambda: b.assigned == [0, 1])
    send(14, 4)
    assert sorted(int(v) for _, v in b.take(4)) == [14, 15, 16, 17]
    b.stop()
    server.restart()
    send(18, 2)
    c = Member(kcat, server, group, topic)
    # The group resumes from its committed offsets, read back from __consumer_offsets.
    assert sorted(int(v) for _, v in c.take(2)) == [18, 19]
    time.sleep(0.5)
    assert c.messages.empty()
    c.stop()


def test_unknown_topic_with_auto_create_off(kcat: str, strict_server: KafkaServer) -> None:
    done = run(kcat, strict_server, "-P", "-t", "kcat-nowhere", "-X", "message.timeout.ms=500", stdin="x\n")
    assert "Unknown topic" in done.stderr or "Message timed out" in done.stderr
    listing = run(kcat, strict_server, "-L", "-t", "kcat-nowhere")
    assert "Broker: Unknown topic or partition" in listing.stdout


def test_oversized_message_gets_message_too_large(kcat: str, kafka_server: KafkaServer) -> None:
    create_topic(kafka_server, "kcat-small", **{"max.message.bytes": "2048"})
    done = run(kcat, kafka_server, "-P", "-t", "kcat-small", stdin="x" * 10_000 + "\n")
    assert "Message size too large" in done.stderr
    assert consume(kcat, kafka_server, "kcat-small", "-o", "beginning") == []


def test_out_of_range_offset_resets_to_the_earliest(kcat: str, kafka_server: KafkaServer) -> None:
    done = run(kcat, kafka_server, "-P", "-t", "kcat-range", stdin="a\nb\nc\n")
    assert done.returncode == 0, done.stderr
    got = consume(kcat, kafka_server, "kcat-range", "-o", "1000", "-X", "auto.offset.reset=earliest")
    assert [line.split("|")[1] for line in got] == ["a", "b", "c"]


def test_bytes_in_and_out_are_metered_for_kafka_clients(kcat: str, kafka_server: KafkaServer) -> None:
    def sample(name: str) -> float:
        code, body = http_get(f"{kafka_server.http_url}/metrics")
        assert code == 200
        try:
            return _sample(body, name, protocol="kafka")
        except AssertionError:  # no Kafka traffic yet in this server
            return 0.0

    before_in, before_out = sample("tierlog_bytes_in_total"), sample("tierlog_bytes_out_total")
    values = [f"metered-{i}-" + "v" * 200 for i in range(50)]
    done = run(kcat, kafka_server, "-P", "-t", "kcat-metered", stdin="\n".join(values) + "\n")
    assert done.returncode == 0, done.stderr
    assert consume(kcat, kafka_server, "kcat-metered", "-o", "beginning") == \
        [f"|{v}|{i}" for i, v in enumerate(values)]
    payload = sum(len(v) for v in values)
    assert sample("tierlog_bytes_in_total") - before_in >= payload
    assert sample("tierlog_bytes_out_total") - before_out >= payload
