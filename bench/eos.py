"""Exactly-once cost: confluent-kafka produce throughput against `tierlog serve` with
idempotence on against off, and transactional (a commit every 100 ms) against
non-transactional, all in one run.

    python bench/eos.py [--mib 512] [--rounds 5] [--message-bytes 1024] [--commit-ms 100] [--dir DIR]

One producer sends --mib MiB of --message-bytes messages (linger.ms=5, batch.size=1 MiB, no
compression, acks=all everywhere: idempotence implies it) to a fresh one-partition topic
per run (deleted after it); the clock starts after a warm-up message (metadata and the
producer id fetched). CPU seconds per GiB are reported for the client (this process,
librdkafka's threads included) and the broker process. Modes: plain
(enable.idempotence=false), idempotent (enable.idempotence=true), transactional (a
transactional.id; the producer commits and begins a new transaction every --commit-ms). Rounds alternate the modes, rotating which goes first; each figure
is the median over the rounds. The server start and topic creation are the ones of
bench/kafka.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_kafka", os.path.join(os.path.dirname(__file__), "kafka.py"))
assert _spec is not None and _spec.loader is not None
bench_kafka = importlib.util.module_from_spec(_spec)
sys.modules["bench_kafka"] = bench_kafka  # dataclasses look their module up
_spec.loader.exec_module(bench_kafka)  # bench/kafka.py, not kafka-python

MODES = ("plain", "idempotent", "transactional")


def producer_config(broker: Any, mode: str, run: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 1024 * 1024,
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


def produce(broker: Any, mode: str, run: str, count: int, message_bytes: int, commit_ms: int) -> Run:
    """Send `count` messages and wait until every one is acknowledged."""
    topic = f"eos-{run}"
    bench_kafka.create_topic(broker, topic)
    producer = Producer(producer_config(broker, mode, run))
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
        while True:
            try:
                producer.produce(topic, value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.001)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=512, help="MiB of messages per produce run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are reported")
    parser.add_argument("--message-bytes", type=int, default=1024, help="size of each message")
    parser.add_argument("--commit-ms", type=int, default=100, help="transaction length in the transactional mode")
    parser.add_argument("--dir", default=None, help="folder on the disk under test (default: a temp folder in .)")
    args = parser.parse_args()
    count = args.mib * 1024 * 1024 // args.message_bytes
    with tempfile.TemporaryDirectory(dir=args.dir or ".", prefix="bench-eos-") as root:
        broker = bench_kafka.start_tierlog(root)
        try:
            runs: dict[str, list[Run]] = {m: [] for m in MODES}
            for round_ in range(args.rounds):
                order = MODES[round_ % len(MODES):] + MODES[: round_ % len(MODES)]
                for mode in order:
                    done = produce(broker, mode, f"{mode}-{round_}", count, args.message_bytes, args.commit_ms)
                    runs[mode].append(done)
                    print(f"round {round_ + 1} {mode:>13}: {args.mib / done.seconds:7.1f} MiB/s, CPU s per GiB: "
                          f"client {done.client_cpu * 1024 / args.mib:.2f}, broker {done.broker_cpu * 1024 / args.mib:.2f}",
                          flush=True)
        finally:
            broker.stop()

    def median(mode: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs[mode])

    rate = {m: args.mib / median(m, "seconds") for m in MODES}
    print(f"\n{args.mib} MiB of {args.message_bytes} B messages, acks=all, median of {args.rounds} rounds")
    print(f"  {'mode':>13}  {'MiB/s':>7}  client CPU s/GiB  broker CPU s/GiB")
    for mode in MODES:
        print(f"  {mode:>13}  {rate[mode]:7.1f}  {median(mode, 'client_cpu') * 1024 / args.mib:16.2f}  "
              f"{median(mode, 'broker_cpu') * 1024 / args.mib:16.2f}")
    print(f"  transactions per transactional run: median {median('transactional', 'commits'):.0f} "
          f"(a commit every {args.commit_ms} ms)")
    print(f"  idempotent / plain:    {rate['idempotent'] / rate['plain']:.2f}  (goal >= 0.9)")
    print(f"  transactional / plain: {rate['transactional'] / rate['plain']:.2f}  (goal >= 0.7)")


if __name__ == "__main__":
    main()
