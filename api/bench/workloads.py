"""The bench's clients, confluent-kafka as users run it: producers at a target or maximum
rate, tail readers measuring end-to-end latency, and a catch-up reader replaying a range.

Each producer stamps the first 8 bytes of a value with the send time (ns since the
epoch); a reader subtracts it from its clock on receipt, so the end-to-end latency of
every message is known without headers."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

STAMP_BYTES = 8
POLL_BATCH = 1000  # messages produced between polls, and read per consume() call


class WorkloadError(Exception):
    """A client could not do its part (topic not created, broker unreachable)."""


def create_topic(bootstrap: str, topic: str, partitions: int, configs: dict[str, str], timeout_s: float = 30) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    future = admin.create_topics([NewTopic(topic, partitions, 1, config=configs)],
                                 operation_timeout=timeout_s, request_timeout=timeout_s)[topic]
    try:
        future.result(timeout=timeout_s)
    except KafkaException as exc:
        raise WorkloadError(f"cannot create topic {topic!r} on {bootstrap}: {exc.args[0]}") from None


@dataclass
class Meter:
    """Bytes and messages counted by one thread, latencies in seconds."""

    bytes: int = 0
    messages: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def take(self) -> Meter:
        """What was counted since the last take (the counting thread only appends and adds)."""
        taken = Meter(self.bytes, self.messages, self.errors, self.latencies)
        self.bytes = self.messages = self.errors = 0
        self.latencies = []
        return taken


def merge(meters: list[Meter]) -> Meter:
    total = Meter()
    for meter in meters:
        total.bytes += meter.bytes
        total.messages += meter.messages
        total.errors += meter.errors
        total.latencies += meter.latencies
    return total


class Producers:
    """`count` producer threads sharing a target rate (messages/s; 0 = as fast as they can)."""

    def __init__(self, bootstrap: str, topic: str, count: int, message_bytes: int, acks: str,
                 linger_ms: int, batch_bytes: int) -> None:
        self.topic = topic
        self.message_bytes = message_bytes
        self.tail = os.urandom(max(0, message_bytes - STAMP_BYTES))  # incompressible, as most payloads
        self.config = {"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": linger_ms,
                       "batch.size": batch_bytes, "compression.type": "none", "enable.idempotence": False}
        self.count = count
        self.meters = [Meter() for _ in range(count)]
        self._rate = 0.0
        self._rate_changed = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]
        self.failure: BaseException | None = None
        self.last_error: str | None = None  # of a delivery, for the report

    def start(self, rate_per_s: float) -> None:
        self._rate = rate_per_s
        for thread in self._threads:
            thread.start()

    def set_rate(self, rate_per_s: float) -> None:
        self._rate = rate_per_s
        self._rate_changed.set()

    def take(self) -> Meter:
        return merge([meter.take() for meter in self.meters])

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:  # started
                thread.join(60)

    def _run(self, index: int) -> None:
        try:
            self._produce(index)
        except BaseException as exc:  # noqa: BLE001 - reported by the run, which stops
            self.failure = exc

    def _produce(self, index: int) -> None:
        meter = self.meters[index]
        producer = Producer(self.config)

        def delivered(err: KafkaError | None, msg: object) -> None:
            if err is not None:
                meter.errors += 1
                self.last_error = str(err)
                return
            meter.bytes += len(msg)  # type: ignore[arg-type]
            meter.messages += 1
            meter.latencies.append(msg.latency())  # type: ignore[attr-defined]

        started, sent = time.monotonic(), 0
        while not self._stop.is_set():
            if self._rate_changed.is_set():
                self._rate_changed.clear()
                started, sent = time.monotonic(), 0
            rate = self._rate / self.count
            batch = POLL_BATCH
            if rate > 0:
                batch = min(POLL_BATCH, int((time.monotonic() - started) * rate) - sent)
                if batch <= 0:
                    producer.poll(0.001)
                    continue
            for _ in range(batch):
                try:
                    value = time.time_ns().to_bytes(STAMP_BYTES, "little") + self.tail
                    producer.produce(self.topic, value, on_delivery=delivered)
                    sent += 1
                except BufferError:  # librdkafka's queue is full: let deliveries drain it
                    producer.poll(0.005)
                    break
            producer.poll(0)
        producer.flush(30)


def _consumer(bootstrap: str, fetch_wait_ms: int) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"tierlog-bench-{os.getpid()}-{time.monotonic_ns()}",
        "enable.auto.commit": False, "fetch.wait.max.ms": fetch_wait_ms,
        "max.partition.fetch.bytes": 4 * 1024 * 1024, "enable.partition.eof": False,
    })


class TailReaders:
    """`fan_out` readers, each reading every partition from its end as messages arrive."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, fan_out: int) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.meters = [Meter() for _ in range(fan_out)]
        self._stop = threading.Event()
        self._ready = threading.Barrier(fan_out + 1)
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(fan_out)]
        self.failure: BaseException | None = None

    def start(self, timeout_s: float = 30) -> None:
        for thread in self._threads:
            thread.start()
        try:
            self._ready.wait(timeout_s)  # assigned at the end before producers start
        except threading.BrokenBarrierError:
            raise WorkloadError(f"a tail reader failed to start: {self.failure or 'timed out'}") from None

    def take(self) -> Meter:
        return merge([meter.take() for meter in self.meters])

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(30)

    def _run(self, index: int) -> None:
        meter = self.meters[index]
        consumer = _consumer(self.bootstrap, fetch_wait_ms=10)
        try:
            ends = [consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                    for p in range(self.partitions)]
            consumer.assign([TopicPartition(self.topic, p, end) for p, end in enumerate(ends)])
            self._ready.wait(30)
            while not self._stop.is_set():
                # consume() waits for its count or its timeout, which would add to the latency
                # measured: a short wait while messages flow, one message at a time when idle.
                messages = consumer.consume(POLL_BATCH, 0.001) or [m for m in (consumer.poll(0.05),) if m]
                received = time.time_ns()
                for message in messages:
                    if message.error():
                        meter.errors += 1
                        continue
                    value = message.value() or b""
                    meter.bytes += len(value)
                    meter.latencies.append((received - int.from_bytes(value[:STAMP_BYTES], "little")) / 1e9)
                meter.messages += len(messages)
        except BaseException as exc:  # noqa: BLE001 - reported by the run, which stops
            self.failure = exc
            self._ready.abort()
        finally:
            consumer.close()


@dataclass
class Replay:
    bytes: int
    messages: int
    seconds: float
    complete: bool  # every partition reached the end it was given


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    consumer = _consumer(bootstrap, fetch_wait_ms=100)
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    except KafkaException as exc:
        raise WorkloadError(f"cannot read the end offsets of {topic!r}: {exc.args[0]}") from None
    finally:
        consumer.close()


def replay(bootstrap: str, topic: str, ends: list[int], seconds: float, stop: threading.Event,
           on_progress: Callable[[int], None] | None = None) -> Replay:
    """Read every partition from its start to `ends` (a catch-up reader), for at most `seconds`."""
    consumer = _consumer(bootstrap, fetch_wait_ms=100)
    remaining = {p: end for p, end in enumerate(ends) if end > 0}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in remaining])
    total_bytes = total_messages = 0
    began = time.monotonic()
    try:
        while remaining and time.monotonic() - began < seconds and not stop.is_set():
            for message in consumer.consume(POLL_BATCH, 0.2):
                if message.error():
                    continue
                partition, offset = message.partition(), message.offset()
                if partition is None or offset is None or partition not in remaining:
                    continue
                total_bytes += len(message.value() or b"")
                total_messages += 1
                if offset + 1 >= remaining[partition]:
                    del remaining[partition]
                    consumer.pause([TopicPartition(topic, partition)])
            if on_progress is not None:
                on_progress(total_bytes)
    finally:
        consumer.close()
    return Replay(total_bytes, total_messages, time.monotonic() - began, complete=not remaining)
