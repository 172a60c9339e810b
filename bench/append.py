"""Append throughput of the hot log against raw writes of the same bytes to the same disk.

    python bench/append.py [--dir DIR] [--mib 256]

Four figures per batch size (1 MiB and 16 KiB):
- no fsync: PartitionLog.append vs os.write;
- fsync before ack: 8 concurrent appenders sharing fsyncs (group commit) vs one
  append + fsync per batch, and the raw os.write + fdatasync per batch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from hotlog.config import LogConfig  # noqa: E402
from hotlog.log import PartitionLog  # noqa: E402
from hotlog.records import Record, build_batch  # noqa: E402


def make_batch(batch_bytes: int, record_bytes: int = 1024) -> bytes:
    count = max(1, batch_bytes // (record_bytes + 16))
    payload = os.urandom(record_bytes)
    return build_batch([Record(b"key-%d" % i, payload) for i in range(count)])


def open_log(directory: str) -> PartitionLog:
    config = LogConfig.build({"flush.ms": 2**62, "max.message.bytes": 8 * 1024 * 1024}, {})
    return PartitionLog.open(directory, "bench", 0, config, clean=True)


def raw_write(directory: str, batch: bytes, count: int, fsync: bool) -> float:
    path = os.path.join(directory, "raw.log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start = time.perf_counter()
    for _ in range(count):
        os.write(fd, batch)
        if fsync:
            os.fdatasync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    os.unlink(path)
    return elapsed


def log_append(directory: str, batch: bytes, count: int) -> float:
    plog = open_log(directory)
    start = time.perf_counter()
    for _ in range(count):
        plog.append(batch)
    elapsed = time.perf_counter() - start
    plog.close()
    return elapsed


async def log_append_durable(directory: str, batch: bytes, count: int, appenders: int) -> float:
    """`appenders` tasks each append then wait for fsync; fsyncs are shared (group commit)."""
    plog = open_log(directory)
    per_task = count // appenders

    async def appender() -> None:
        for _ in range(per_task):
            info = plog.append(batch)
            await plog.flush_async(info.last_offset + 1)

    start = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(appenders)))
    elapsed = time.perf_counter() - start
    plog.close()
    return elapsed


def fresh(root: str, name: str) -> str:
    path = os.path.join(root, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    os.sync()  # let earlier runs' writeback and discards settle before timing
    return path


def mbps(total_bytes: int, seconds: float) -> float:
    return total_bytes / seconds / 1e6


def median_of_rounds(rounds: int, *runs: Callable[[], float]) -> list[float]:
    """Alternate the runs `rounds` times (so drift hits all alike); median time of each."""
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, run_once in enumerate(runs):
            times[i].append(run_once())
    return [statistics.median(t) for t in times]


def run(root: str, batch_bytes: int, total_mib: int, fsync_count: int, rounds: int) -> list[str]:
    batch = make_batch(batch_bytes)
    size = len(batch)
    count = max(8, total_mib * 1024 * 1024 // size)
    label = f"{size / 1024:.0f} KiB"
    raw, ours = median_of_rounds(
        rounds,
        lambda: raw_write(fresh(root, "raw"), batch, count, fsync=False),
        lambda: log_append(fresh(root, "log"), batch, count),
    )
    raw_sync, one, group = median_of_rounds(
        rounds,
        lambda: raw_write(fresh(root, "raw"), batch, fsync_count, fsync=True),
        lambda: asyncio.run(log_append_durable(fresh(root, "log"), batch, fsync_count, appenders=1)),
        lambda: asyncio.run(log_append_durable(fresh(root, "log"), batch, fsync_count, appenders=8)),
    )
    total, total_sync = size * count, size * fsync_count
    return [
        f"| {label} | no fsync | {mbps(total, ours):.0f} MB/s, {count / ours:.0f} batches/s "
        f"| os.write {mbps(total, raw):.0f} MB/s | **{raw / ours:.2f}** of raw |",
        f"| {label} | fsync per batch, 1 appender | {mbps(total_sync, one):.0f} MB/s, {fsync_count / one:.0f} batches/s "
        f"| os.write + fdatasync {mbps(total_sync, raw_sync):.0f} MB/s | {raw_sync / one:.2f} of raw |",
        f"| {label} | fsync before ack, 8 appenders (group commit) | {mbps(total_sync, group):.0f} MB/s, "
        f"{fsync_count / group:.0f} batches/s | 1 appender {mbps(total_sync, one):.0f} MB/s "
        f"| **{one / group:.2f}x** one fsync per batch |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=None, help="folder on the disk under test (default: a temp folder in .)")
    parser.add_argument("--mib", type=int, default=256, help="MiB written per no-fsync run")
    parser.add_argument("--fsyncs", type=int, default=400, help="batches per fsync run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are reported")
    args = parser.parse_args()
    root = args.dir or tempfile.mkdtemp(prefix="tierlog-bench-", dir=".")
    try:
        print("| batch | mode | tierlog | baseline | ratio |")
        print("| --- | --- | --- | --- | --- |")
        for batch_bytes in (1024 * 1024, 16 * 1024):
            for row in run(root, batch_bytes, args.mib, args.fsyncs, args.rounds):
                print(row, flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
