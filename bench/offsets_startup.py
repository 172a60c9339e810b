"""Start-up time against the number of offset commits ever made: `__consumer_offsets`
compacted or not.

    python bench/offsets_startup.py [--commits 1000000] [--groups 100] [--segment-kib 1024]

A broker in process (no listeners) takes `--commits` offset commits from `--groups`
groups (each commit one partition of a 10-partition topic, as a consumer committing
after every poll does), written through the offset store as the Kafka and gRPC handlers
write them. It is stopped cleanly and started again: the time of `Broker.start()` (open
the logs, read the offsets back) is measured as written, then after the cleaner has
compacted every sealed segment of `__consumer_offsets`, and the offsets read back are
checked each time. `--segment-kib` is `offsets.topic.segment.bytes`: the cleaner never
touches a partition's active segment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from broker.groups.offset_store import CommittedOffset, TopicPartition  # noqa: E402
from broker.internal_topics import OFFSETS_TOPIC  # noqa: E402
from broker.node import Broker  # noqa: E402
from broker.settings import BrokerSettings  # noqa: E402

TOPIC_PARTITIONS = 10
IN_FLIGHT = 2000  # commits written at once: they share fsyncs, as concurrent clients do


def settings(segment_kib: int, cleaner: bool) -> BrokerSettings:
    return BrokerSettings.parse({"offsets.topic.segment.bytes": str(segment_kib * 1024),
                                 "log.cleaner.enable": str(cleaner).lower(), "log.cleaner.backoff.ms": "100"})


def expected(commits: int, groups: int) -> dict[str, dict[TopicPartition, int]]:
    """Each group's last committed offset per partition: commit i is group i % groups,
    partition i // groups % partitions, offset i."""
    last: dict[str, dict[TopicPartition, int]] = {}
    for i in range(max(0, commits - groups * TOPIC_PARTITIONS), commits):
        last.setdefault(f"group-{i % groups}", {})[TopicPartition("events", i // groups % TOPIC_PARTITIONS)] = i
    return last


async def write(folder: str, commits: int, groups: int, segment_kib: int) -> None:
    broker = Broker(folder, settings(segment_kib, cleaner=False))
    await broker.start()
    broker.create_topic("events", TOPIC_PARTITIONS, {})
    store = broker.groups.offsets.store
    now = int(time.time() * 1000)
    for start in range(0, commits, IN_FLIGHT):
        waits = []
        for i in range(start, min(commits, start + IN_FLIGHT)):
            tp = TopicPartition("events", i // groups % TOPIC_PARTITIONS)
            waits.append(store.append(f"group-{i % groups}", {tp: CommittedOffset(i, -1, "", now)}))
        await asyncio.gather(*(wait() for wait in waits))
    await broker.stop()


async def start_and_check(folder: str, commits: int, groups: int, segment_kib: int) -> float:
    broker = Broker(folder, settings(segment_kib, cleaner=False))
    began = time.perf_counter()
    await broker.start()
    seconds = time.perf_counter() - began
    for group, offsets in expected(commits, groups).items():
        committed = broker.groups.offsets.committed(group, list(offsets))
        assert {tp: c.offset for tp, c in committed.items() if c is not None} == offsets, group
    await broker.stop()
    return seconds


async def compact(folder: str, segment_kib: int) -> int:
    """Clean every due log of the offsets topic; returns its bytes on disk after."""
    broker = Broker(folder, settings(segment_kib, cleaner=False))
    await broker.start()
    while await broker.logs.clean_once() is not None:
        pass
    size = sum(plog.size_bytes for (topic, _), plog in broker.logs.logs.items() if topic == OFFSETS_TOPIC)
    await broker.stop()
    return size


def offsets_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder)
               if os.path.basename(root).startswith(OFFSETS_TOPIC) for name in names if name.endswith(".log"))


async def run(folder: str, commits: int, groups: int, segment_kib: int) -> None:
    began = time.perf_counter()
    await write(folder, commits, groups, segment_kib)
    print(f"{commits} commits by {groups} groups written in {time.perf_counter() - began:.1f} s; "
          f"__consumer_offsets: {offsets_bytes(folder) / 2**20:.1f} MiB")
    as_written = await start_and_check(folder, commits, groups, segment_kib)
    print(f"start, as written: {as_written:.2f} s")
    began = time.perf_counter()
    size = await compact(folder, segment_kib)
    print(f"compacted in {time.perf_counter() - began:.1f} s to {size / 2**20:.1f} MiB")
    compacted = await start_and_check(folder, commits, groups, segment_kib)
    print(f"start, compacted: {compacted:.2f} s ({as_written / compacted:.1f}x faster); every group's "
          f"last commit read back both times")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--segment-kib", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tierlog-offsets-") as folder:
        asyncio.run(run(folder, args.commits, args.groups, args.segment_kib))


if __name__ == "__main__":
    main()
