"""Produce latency while the log cleaner works, against the same broker idle.

    python bench/cleaner_latency.py [--table-mib 256] [--seconds 20] [--tiered]

A `tierlog serve` holds a topic of `--table-mib` MiB of 1 KiB records (a tenth as many
keys as records). A confluent-kafka producer (acks=all, one 1 KiB message every 2 ms,
linger.ms=0) writes another topic for `--seconds` and its delivery latencies are
recorded: first with the table left as it is (the cleaner idle), then on a second broker
over the same kind of table switched to `cleanup.policy=compact` as the producer starts,
so the cleaner works through it meanwhile. p50, p99 and the maximum of each, and how much
the cleaner cleaned meanwhile (the table's size on disk before and after). The table is
local only (`remote.storage.enable=false`: hotlog's cleaner); with `--tiered` it is tiered,
and the bucket's cleaner compacts it there and swaps the cleaned segments in locally.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic  # noqa: E402

from api.bench.server import BenchServer  # noqa: E402

TABLE = {"segment.bytes": str(64 * 1024 * 1024), "retention.ms": "-1", "min.cleanable.dirty.ratio": "0.01"}
VALUE = os.urandom(1024)


def fill(bootstrap: str, mib: int, tiered: bool) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    table = NewTopic("table", 1, 1, config={**TABLE, "remote.storage.enable": str(tiered).lower()})
    for future in admin.create_topics([table, NewTopic("events", 1, 1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1_000_000,
                         "queue.buffering.max.kbytes": 1_048_576})
    records = mib * 1024
    for i in range(records):
        while True:
            try:
                producer.produce("table", VALUE, key=b"key-%d" % (i % (records // 10)))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(300) == 0


def wait_until_tiered(server: BenchServer) -> None:
    """Until every sealed segment of the table is in the bucket (the folder store's)."""
    local = os.path.join(server.folder, "data", "table-0")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        sealed = len(glob.glob(os.path.join(local, "*.log"))) - 1
        uploaded = len(glob.glob(os.path.join(server.folder, "objects", "table-*", "0", "*.log")))
        if uploaded >= sealed:
            return
        time.sleep(0.5)
    raise TimeoutError("the table's segments did not reach the bucket")


def table_bytes(server: BenchServer) -> int:
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(server.folder, "data", "table-0", "*.log")))


def produce_latencies(bootstrap: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sent = time.perf_counter()
        producer.produce("events", VALUE, on_delivery=lambda err, _, sent=sent: latencies.append(
            time.perf_counter() - sent) if err is None else None)
        producer.poll(0.002)
    assert producer.flush(30) == 0
    return latencies


def run(mib: int, seconds: float, cleaning: bool, tiered: bool) -> None:
    with BenchServer(None, {"log.cleaner.backoff.ms": "100", "remote.log.manager.task.interval.ms": "500"}) as server:
        fill(server.bootstrap, mib, tiered)
        if tiered:
            wait_until_tiered(server)
        before = table_bytes(server)
        if cleaning:
            admin = AdminClient({"bootstrap.servers": server.bootstrap})
            compact = ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)
            table = ConfigResource(ConfigResource.Type.TOPIC, "table", incremental_configs=[compact])
            admin.incremental_alter_configs([table])[table].result(30)
        latencies = sorted(produce_latencies(server.bootstrap, seconds))
        after = table_bytes(server)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    who = "bucket cleaner" if tiered else "cleaner"
    print(f"{who} {'running' if cleaning else 'idle   '}: {len(latencies)} produces, p50 {p50:.2f} ms, "
          f"p99 {p99:.2f} ms, max {latencies[-1] * 1000:.1f} ms; table {before / 2**20:.0f} -> "
          f"{after / 2**20:.0f} MiB meanwhile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table-mib", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--tiered", action="store_true", help="the table in the bucket: its cleaner at work")
    args = parser.parse_args()
    run(args.table_mib, args.seconds, cleaning=False, tiered=args.tiered)
    run(args.table_mib, args.seconds, cleaning=True, tiered=args.tiered)


if __name__ == "__main__":
    main()
