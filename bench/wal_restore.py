"""Restore time after losing the machine with unfolded data in the bucket's WAL, against
reading the same WAL objects straight from the store.

    python bench/wal_restore.py [--mib 1024] [--partitions 16] [--latency-model 30,90]

A `tierlog serve` with the WAL on for every topic and folding held off (nothing reaches
tiered segments) takes `--mib` MiB of 1 KiB messages with acks=all from confluent-kafka;
then it is SIGKILLed and its data folder deleted, and a new one is started on the same
store. Its start (until /healthz answers and the Kafka port takes connections) restores
every batch from the WAL objects. Baselines, in the same run: the start of a server with
nothing to restore (the interpreter and imports), and GETs of the WAL objects through the
same store (8 at a time, as the restore does), with nothing appended. With
`--latency-model MS,MB/S` the store is behind the S3 latency model over the local folder.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from api.bench.server import BenchServer, LatencyModel  # noqa: E402
from broker.wal.objects import WAL_PREFIX  # noqa: E402
from tiering.local_store import LocalFolderStore  # noqa: E402
from tiering.store import ObjectStore  # noqa: E402
from tiering.wrappers import LatencyModelStore  # noqa: E402

TOPIC = "restored"
CONF = {
    "log.remote.wal.enable": "true",
    "log.remote.wal.fold.ms": str(24 * 3600 * 1000),  # hold folding off: everything stays in WAL objects
    "remote.log.manager.task.interval.ms": "600000",
}


def produce(bootstrap: str, partitions: int, mib: int) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, partitions, 1)], operation_timeout=30)[TOPIC].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "batch.size": 1_000_000, "queue.buffering.max.kbytes": 1_048_576})
    value = os.urandom(1024)
    count = mib * 1024
    failed = []
    for i in range(count):
        while True:
            try:
                producer.produce(TOPIC, value=value, key=b"%d" % i,
                                 on_delivery=lambda err, _: failed.append(err) if err else None)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(600)
    if failed:
        raise SystemExit(f"{len(failed)} messages not acknowledged: {failed[0]}")
    return count


def messages_in(bootstrap: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "wal-restore-bench"})
    total = sum(consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=30)[1] for p in range(partitions))
    consumer.close()
    return total


async def raw_gets(store: ObjectStore) -> tuple[int, int, float]:
    """(objects, bytes, seconds) for GETs of every WAL object, 8 at a time."""
    keys = [info.key for info in await store.list(WAL_PREFIX)]
    slots = asyncio.Semaphore(8)

    async def get(key: str) -> int:
        async with slots:
            return len(await store.get(key))

    began = time.perf_counter()
    sizes = await asyncio.gather(*(get(key) for key in keys))
    seconds = time.perf_counter() - began
    await store.close()
    return len(keys), sum(sizes), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--latency-model", default=None, help="FIRST_BYTE_MS,MB_PER_S (default: the folder as it is)")
    args = parser.parse_args()
    latency = None
    if args.latency_model:
        first_byte_ms, mb_per_s = (float(v) for v in args.latency_model.split(","))
        latency = LatencyModel(first_byte_ms, mb_per_s)
    began = time.perf_counter()
    with BenchServer(None, CONF, latency):
        empty_start_s = time.perf_counter() - began
    with BenchServer(None, CONF, latency) as server:
        began = time.perf_counter()
        produced = produce(server.bootstrap, args.partitions, args.mib)
        produce_s = time.perf_counter() - began
        assert server.process is not None
        server.process.kill()
        server.process.wait()
        shutil.rmtree(os.path.join(server.folder, "data"))
        began = time.perf_counter()
        server.__enter__()  # a new machine: an empty data folder, the same bucket
        restore_s = time.perf_counter() - began
        restored = messages_in(server.bootstrap, args.partitions)
        store: ObjectStore = LocalFolderStore(server.object_store.removeprefix("file://"))
        if latency is not None:
            store = LatencyModelStore(store, first_byte_s=latency.first_byte_ms / 1000,
                                      bandwidth_bytes_per_s=latency.mb_per_s * 1e6)
        objects, size, get_s = asyncio.run(raw_gets(store))
    assert restored == produced, f"{produced} acknowledged, {restored} restored"
    print(f"produced {produced} messages ({args.mib} MiB, acks=all) in {produce_s:.1f} s")
    print(f"WAL objects in the bucket: {objects}, {size / 2**20:.0f} MiB")
    print(f"restore on an empty data folder (start until serving): {restore_s:.2f} s; every one of the "
          f"{restored} messages back")
    print(f"start with nothing to restore: {empty_start_s:.2f} s; so the restore itself: "
          f"{restore_s - empty_start_s:.2f} s, {size / 1e6 / (restore_s - empty_start_s):.0f} MB/s")
    print(f"GETs of the same objects, 8 at a time: {get_s:.2f} s, {size / 1e6 / get_s:.0f} MB/s; "
          f"restore / raw GETs: {get_s / (restore_s - empty_start_s):.2f} of the store's read rate")


if __name__ == "__main__":
    main()
