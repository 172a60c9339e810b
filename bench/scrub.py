"""What a scrub pass costs: MB/s and CPU-seconds per GB, against reading the same bytes
and computing one CRC over them.

    python bench/scrub.py [--mib 512] [--latency-model 30,90]

Writes `--mib` MiB of 16 KiB batches into one partition of 64 MiB segments, uploads the
sealed ones to a folder store (behind the S3 latency model with `--latency-model
MS,MB/S`), then runs one unpaced scrub pass: every uploaded file against its record's CRC
and every sealed local segment batch by batch. Baselines in the same run: the same
objects read by sequential 8 MiB GETs with one CRC-32C over them, and the local files
read with one CRC-32C over them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from typing import NamedTuple

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from crc32c import crc32c  # noqa: E402

from hotlog.manager import LogManager  # noqa: E402
from hotlog.records import Record, build_batch  # noqa: E402
from tiering.local_store import LocalFolderStore  # noqa: E402
from tiering.manager import TieringManager  # noqa: E402
from tiering.scrubber import READ_BYTES, Scrubber  # noqa: E402
from tiering.store import ObjectStore  # noqa: E402
from tiering.wrappers import LatencyModelStore  # noqa: E402

SEGMENT_BYTES = 64 * 1024 * 1024
BATCH = build_batch([Record(b"k%d" % i, os.urandom(1000), (), int(time.time() * 1000)) for i in range(16)])


class Cost(NamedTuple):
    seconds: float
    cpu_seconds: float  # of this process, every thread


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def timed(call) -> Cost:  # type: ignore[no-untyped-def]
    began, cpu = time.perf_counter(), cpu_now()
    await call
    return Cost(time.perf_counter() - began, cpu_now() - cpu)


def fill(logs: LogManager, mib: int) -> None:
    logs.create_topic("scrubbed", 1, {"segment.bytes": SEGMENT_BYTES})
    plog = logs.log("scrubbed", 0)
    for _ in range(mib * 1024 * 1024 // len(BATCH)):
        plog.append(BATCH)
    plog.roll()
    plog.flush()


async def raw_remote(store: ObjectStore, keys: list[tuple[str, int]]) -> None:
    for key, size in keys:
        crc = 0
        for start in range(0, size, READ_BYTES):
            crc = crc32c(await store.get(key, start, min(size, start + READ_BYTES)), crc)


async def raw_local(paths: list[str]) -> None:
    def read(path: str) -> None:
        crc = 0
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(READ_BYTES):
                crc = crc32c(chunk, crc)
    for path in paths:
        await asyncio.to_thread(read, path)


def report(what: str, size: int, ours: Cost, raw: Cost) -> None:
    gb = size / 1e9
    print(f"{what}: {size / 1e6 / ours.seconds:.0f} MB/s, {ours.cpu_seconds / gb:.2f} CPU-s/GB; "
          f"read + one CRC: {size / 1e6 / raw.seconds:.0f} MB/s, {raw.cpu_seconds / gb:.2f} CPU-s/GB; "
          f"scrub / raw rate: {raw.seconds / ours.seconds:.2f}")


async def run(folder: str, mib: int, latency: tuple[float, float] | None) -> None:
    logs = LogManager(os.path.join(folder, "data")).open()
    fill(logs, mib)
    store: ObjectStore = LocalFolderStore(os.path.join(folder, "bucket"))
    if latency is not None:
        store = LatencyModelStore(store, first_byte_s=latency[0] / 1000, bandwidth_bytes_per_s=latency[1] * 1e6)
    tiering = TieringManager(logs, store)
    await tiering.open()
    while await tiering.run_once():
        pass
    remote = tiering.remote_segments("scrubbed", 0)
    keys = [(f.key, f.size) for segment in remote for f in segment.files.values()]
    remote_bytes = sum(size for _, size in keys)
    sealed = [s for s in logs.log("scrubbed", 0).segments if s.sealed]
    local_bytes = sum(s.size for s in sealed)
    found = []

    async def scrub(over: TieringManager | None) -> None:
        found.append(await Scrubber(logs, over, bytes_per_second=0, interval_ms=1).scrub_once())

    local_only = await timed(scrub(None))
    both = await timed(scrub(tiering))
    raw = await timed(raw_remote(store, keys))
    raw_disk = await timed(raw_local([s.log_path for s in sealed]))
    assert found[1].remote_bytes == remote_bytes and found[1].local_bytes == local_bytes
    assert found[1].remote_corrupt == found[1].local_corrupt == 0
    print(f"{len(remote)} segments, {remote_bytes / 2**20:.0f} MiB in the bucket (all files), "
          f"{local_bytes / 2**20:.0f} MiB sealed locally; batches of {len(BATCH)} bytes")
    report("local segments, batch by batch", local_bytes, local_only, raw_disk)
    report("uploaded objects, file by file", remote_bytes,
           Cost(both.seconds - local_only.seconds, both.cpu_seconds - local_only.cpu_seconds), raw)
    await tiering.close()
    await store.close()
    logs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--latency-model", default=None, help="FIRST_BYTE_MS,MB_PER_S (default: the folder as it is)")
    args = parser.parse_args()
    latency = None
    if args.latency_model:
        first_byte_ms, mb_per_s = (float(v) for v in args.latency_model.split(","))
        latency = (first_byte_ms, mb_per_s)
    with tempfile.TemporaryDirectory(prefix="tierlog-scrub-") as folder:
        asyncio.run(run(folder, args.mib, latency))


if __name__ == "__main__":
    main()
