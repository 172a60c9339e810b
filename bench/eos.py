"""Exactly-once cost: produce throughput against `tierlog serve` with idempotence on
against off, and transactional (a commit every 100 ms) against non-transactional, all in
one run.

    python bench/eos.py [--mib 512] [--rounds 5] [--message-bytes 1024] [--batch-bytes 1048576]
                        [--commit-ms 100] [--clients confluent-kafka,wire] [--dir DIR]

One producer sends --mib MiB of --message-bytes messages (linger.ms=5,
batch.size=--batch-bytes, no compression, acks=all everywhere: idempotence implies it) to
a fresh one-partition topic per run (deleted after it). Modes: plain
(enable.idempotence=false), idempotent (enable.idempotence=true), transactional (a
transactional.id; commit and begin a new transaction every --commit-ms). Clients:
confluent-kafka (the clock starts after a warm-up message: metadata and producer id
fetched), and "wire", a bare protocol client that pipelines pre-built batches (at most 5
in flight) and sends InitProducerId, AddPartitionsToTxn and EndTxn itself, so the
broker's share is measured without the client library's. CPU seconds per GiB are
reported for the client (this process, librdkafka's threads included) and the broker.
Rounds alternate the modes, rotating which goes first; figures are medians over the
rounds. The server start and topic creation are bench/kafka.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from crc32c import crc32c  # noqa: E402
from kio.index import load_response_schema  # noqa: E402
from kio.schema.add_partitions_to_txn.v3.request import (  # noqa: E402
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
)
from kio.schema.end_txn.v3.request import EndTxnRequest  # noqa: E402
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest  # noqa: E402
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData  # noqa: E402
from kio.serial import entity_reader  # noqa: E402

from bench import kafka_wire  # noqa: E402
from hotlog.batch import TRANSACTIONAL_BIT  # noqa: E402
from hotlog.records import Record, build_batch  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_kafka", os.path.join(os.path.dirname(__file__), "kafka.py"))
assert _spec is not None and _spec.loader is not None
bench_kafka = importlib.util.module_from_spec(_spec)
sys.modules["bench_kafka"] = bench_kafka  # dataclasses look their module up
_spec.loader.exec_module(bench_kafka)  # bench/kafka.py, not kafka-python

MODES = ("plain", "idempotent", "transactional")
SIZE = struct.Struct(">i")
HEADER_FIELDS = struct.Struct(">qhi")  # producer id, epoch, base sequence: at byte 43 of a batch


def producer_config(broker: Any, mode: str, run: str, batch_bytes: int) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5, "batch.size": batch_bytes,
        "batch.num.messages": 100_000, "compression.type": "none", "queue.buffering.max.messages": 2_000_000,
        "queue.buffering.max.kbytes": 2_000_000, "message.max.bytes": 8 * 1024 * 1024,
        "enable.idempotence": mode != "plain",
    }
    if mode == "transactional":
        config["transactional.id"] = f"bench-{run}"
    return config


@dataclass
class Run:
    seconds: float
    commits: int
    client_cpu: float  # this process, librdkafka's threads included
    broker_cpu: float


def produce(broker: Any, mode: str, run: str, count: int, message_bytes: int, commit_ms: int,
            batch_bytes: int) -> Run:
    """Send `count` messages and wait until every one is acknowledged."""
    topic = f"eos-{run}"
    bench_kafka.create_topic(broker, topic)
    producer = Producer(producer_config(broker, mode, run, batch_bytes))
    transactional = mode == "transactional"
    failures: list[str] = []

    def delivered(err: object, _: object) -> None:
        if err is not None:
            failures.append(str(err))

    value = os.urandom(message_bytes)
    # Warm-up outside the clock: metadata, the producer id (InitProducerId), a first batch.
    if transactional:
        producer.init_transactions(30)
        producer.begin_transaction()
    producer.produce(topic, value, on_delivery=delivered)
    producer.flush(30)
    commits = 0
    start, client_cpu, broker_cpu = time.perf_counter(), time.process_time(), broker.cpu_seconds()
    next_commit = time.perf_counter() + commit_ms / 1000
    for i in range(count):
        bench_kafka.send(producer, topic, value, delivered)
        if i % 1000 == 0:
            producer.poll(0)
            if transactional and time.perf_counter() >= next_commit:
                producer.commit_transaction(60)  # flushes what the transaction holds, then EndTxn
                producer.begin_transaction()
                commits += 1
                next_commit = time.perf_counter() + commit_ms / 1000
    if transactional:
        producer.commit_transaction(60)
        commits += 1
    if producer.flush(120) != 0 or failures:
        raise SystemExit(f"{mode}: produce failed: {failures[:3]}")
    done = Run(time.perf_counter() - start, commits, time.process_time() - client_cpu,
               broker.cpu_seconds() - broker_cpu)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_topics([topic])[topic].result(30)  # frees the disk for the next run
    return done


class WireProducer:
    """The protocol without a client library: pipelined Produce requests, each one batch
    of --batch-bytes built once and re-stamped (producer id, epoch, sequence, transactional bit,
    CRC) per request, so what is measured is the broker's side of exactly-once."""

    IN_FLIGHT = 5  # as an idempotent client keeps at most

    def __init__(self, broker: Any, message_bytes: int, batch_bytes: int) -> None:
        self.address = ("127.0.0.1", broker.port)
        value = os.urandom(message_bytes)
        self.records = max(1, batch_bytes // message_bytes)
        self.batch = bytearray(build_batch([Record(None, value)] * self.records))
        self.correlation_id = 0

    async def request(self, request: Any) -> None:
        self.correlation_id += 1
        self.writer.write(kafka_wire.frame(request, self.correlation_id))

    async def response(self, api_key: int, version: int) -> Any:
        (size,) = SIZE.unpack(await self.reader.readexactly(4))
        frame = await self.reader.readexactly(size)
        response_type = load_response_schema(api_key, version)
        _, used = entity_reader(response_type.__header_schema__)(frame, 0)
        return entity_reader(response_type)(frame, used)[0]

    async def call(self, request: Any, api_key: int) -> Any:
        await self.request(request)
        return await self.response(api_key, request.__version__)

    def stamped(self, producer_id: int, epoch: int, sequence: int, transactional: bool) -> bytes:
        HEADER_FIELDS.pack_into(self.batch, 43, producer_id, epoch, sequence)
        attributes = TRANSACTIONAL_BIT if transactional else 0
        struct.pack_into(">h", self.batch, 21, attributes)
        struct.pack_into(">I", self.batch, 17, crc32c(memoryview(self.batch)[21:]))
        return bytes(self.batch)

    async def run(self, topic: str, mode: str, run: str, count: int, commit_ms: int) -> int:
        """Send `count` messages; returns the transactions committed."""
        self.reader, self.writer = await asyncio.open_connection(*self.address)
        transactional_id = f"bench-wire-{run}" if mode == "transactional" else None
        producer_id, epoch = -1, -1
        if mode != "plain":
            answer = await self.call(InitProducerIdRequest(
                transactional_id=transactional_id, transaction_timeout=timedelta(seconds=60),
                producer_id=-1, producer_epoch=-1), 22)
            producer_id, epoch = answer.producer_id, answer.producer_epoch
        batches = -(-count // self.records)
        in_flight = commits = 0
        in_txn = False
        next_commit = time.perf_counter() + commit_ms / 1000
        for n in range(batches + 1):
            ending = n == batches or (transactional_id is not None and time.perf_counter() >= next_commit)
            while in_flight and (in_flight >= self.IN_FLIGHT or ending):
                answer = await self.response(0, 9)
                code = answer.responses[0].partition_responses[0].error_code
                if code:
                    raise SystemExit(f"wire {mode}: produce failed: {code}")
                in_flight -= 1
            if transactional_id is not None and in_txn and ending:
                answer = await self.call(EndTxnRequest(transactional_id=transactional_id, producer_id=producer_id,
                                                       producer_epoch=epoch, committed=True), 26)
                if answer.error_code:
                    raise SystemExit(f"wire {mode}: EndTxn failed: {answer.error_code}")
                commits, in_txn = commits + 1, False
                next_commit = time.perf_counter() + commit_ms / 1000
            if n == batches:
                break
            if transactional_id is not None and not in_txn:
                answer = await self.call(AddPartitionsToTxnRequest(
                    v3_and_below_transactional_id=transactional_id, v3_and_below_producer_id=producer_id,
                    v3_and_below_producer_epoch=epoch,
                    v3_and_below_topics=(AddPartitionsToTxnTopic(name=topic, partitions=(0,)),)), 24)
                code = answer.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
                if code:
                    raise SystemExit(f"wire {mode}: AddPartitionsToTxn failed: {code}")
                in_txn = True
            records = self.stamped(producer_id, epoch, n * self.records if producer_id >= 0 else -1,
                                   transactional_id is not None)
            await self.request(ProduceRequest(
                transactional_id=transactional_id, acks=-1, timeout=timedelta(seconds=30), topic_data=(
                    TopicProduceData(name=topic, partition_data=(PartitionProduceData(index=0, records=records),)),)))
            in_flight += 1
        self.writer.close()
        return commits


def wire_produce(broker: Any, mode: str, run: str, count: int, message_bytes: int, commit_ms: int,
                 batch_bytes: int) -> Run:
    topic = f"eos-wire-{run}"
    bench_kafka.create_topic(broker, topic)
    producer = WireProducer(broker, message_bytes, batch_bytes)
    start, client_cpu, broker_cpu = time.perf_counter(), time.process_time(), broker.cpu_seconds()
    commits = asyncio.run(producer.run(topic, mode, run, count, commit_ms))
    done = Run(time.perf_counter() - start, commits, time.process_time() - client_cpu,
               broker.cpu_seconds() - broker_cpu)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_topics([topic])[topic].result(30)
    return done


CLIENTS: dict[str, Callable[..., Run]] = {"confluent-kafka": produce, "wire": wire_produce}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=512, help="MiB of messages per produce run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are reported")
    parser.add_argument("--message-bytes", type=int, default=1024, help="size of each message")
    parser.add_argument("--batch-bytes", type=int, default=1024 * 1024, help="batch.size (at most 8 MiB)")
    parser.add_argument("--commit-ms", type=int, default=100, help="transaction length in the transactional mode")
    parser.add_argument("--clients", default="confluent-kafka,wire", help="comma-separated: confluent-kafka, wire")
    parser.add_argument("--dir", default=None, help="folder on the disk under test (default: a temp folder in .)")
    args = parser.parse_args()
    count = args.mib * 1024 * 1024 // args.message_bytes
    clients = args.clients.split(",")
    runs: dict[tuple[str, str], list[Run]] = {(c, m): [] for c in clients for m in MODES}
    with tempfile.TemporaryDirectory(dir=args.dir or ".", prefix="bench-eos-") as root:
        broker = bench_kafka.start_tierlog(root)
        try:
            for round_ in range(args.rounds):
                order = MODES[round_ % len(MODES):] + MODES[: round_ % len(MODES)]
                for client in clients:
                    for mode in order:
                        done = CLIENTS[client](broker, mode, f"{mode}-{round_}", count, args.message_bytes,
                                               args.commit_ms, args.batch_bytes)
                        runs[(client, mode)].append(done)
                        print(f"round {round_ + 1} {client:>15} {mode:>13}: {args.mib / done.seconds:7.1f} MiB/s, "
                              f"CPU s per GiB: client {done.client_cpu * 1024 / args.mib:.2f}, "
                              f"broker {done.broker_cpu * 1024 / args.mib:.2f}", flush=True)
        finally:
            broker.stop()

    def median(client: str, mode: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs[(client, mode)])

    print(f"\n{args.mib} MiB of {args.message_bytes} B messages, acks=all, median of {args.rounds} rounds")
    for client in clients:
        rate = {m: args.mib / median(client, m, "seconds") for m in MODES}
        print(f"\n{client}:\n  {'mode':>13}  {'MiB/s':>7}  client CPU s/GiB  broker CPU s/GiB")
        for mode in MODES:
            print(f"  {mode:>13}  {rate[mode]:7.1f}  {median(client, mode, 'client_cpu') * 1024 / args.mib:16.2f}  "
                  f"{median(client, mode, 'broker_cpu') * 1024 / args.mib:16.2f}")
        print(f"  transactions per transactional run: median {median(client, 'transactional', 'commits'):.0f} "
              f"(a commit every {args.commit_ms} ms)")
        print(f"  idempotent / plain:    {rate['idempotent'] / rate['plain']:.2f}  (goal >= 0.9)")
        print(f"  transactional / plain: {rate['transactional'] / rate['plain']:.2f}  (goal >= 0.7)")


if __name__ == "__main__":
    main()
