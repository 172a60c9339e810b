"""What a clean of a compacted topic's segments in the bucket costs, against the raw object
store: a sequential download and re-upload of the same `.log` bytes through the same
store, in the same run.

    python bench/remote_cleaner.py [--mib 256] [--size 1024] [--live 0.1] [--latency-model 30,90]

Writes `--mib` MiB of `--size`-byte records in uncompressed batches of 100 into a tiered
compacted partition of 32 MiB segments (keys drawn from `--live` * records keys, so about
that share of the records is the last of its key), uploads it, and drops the local
copies (local.retention.bytes=0), so the table lives in the bucket. Then the raw copy
(every `.log` read in 8 MiB ranged GETs, four segments at a time as the clean does, then
each PUT anew) and one clean (download, clean, upload, commit). `--latency-model FIRST_BYTE_MS,MB_PER_S` puts the
bucket (a local folder) behind the S3 latency model of tiering/wrappers.py; without it,
the folder's own speed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from prometheus_client import REGISTRY  # noqa: E402

from hotlog.manager import LogManager  # noqa: E402
from hotlog.records import Record, build_batch  # noqa: E402
from tiering.download import object_crc32c  # noqa: E402
from tiering.local_store import LocalFolderStore  # noqa: E402
from tiering.manager import TieringManager  # noqa: E402
from tiering.metadata import RemoteSegment  # noqa: E402
from tiering.store import ObjectStore  # noqa: E402
from tiering.wrappers import LatencyModelStore  # noqa: E402

SEGMENT_BYTES = 32 * 1024 * 1024
CONFIGS = {"cleanup.policy": "compact", "remote.storage.enable": True, "min.cleanable.dirty.ratio": 0.0,
           "segment.bytes": SEGMENT_BYTES, "local.retention.bytes": 0, "retention.ms": -1}


async def write_table(logs: LogManager, mib: int, size: int, live: float) -> int:
    records = mib * 1024 * 1024 // (size + 20)
    rng = random.Random(1)
    keys = max(1, int(records * live))
    value = os.urandom(size - 12)
    logs.create_topic("table", 1, CONFIGS)
    plog = logs.log("table", 0)
    now = int(time.time() * 1000)
    for start in range(0, records, 100):
        plog.append(build_batch([Record(b"key-%07d" % rng.randrange(keys), value, (), now)
                                 for _ in range(min(100, records - start))]))
    plog.seal_active_segment()
    await plog.flush_async()
    return records


def requests() -> dict[str, float]:
    return {s.labels["operation"]: s.value for m in REGISTRY.collect() if m.name == "tierlog_object_store_requests"
            for s in m.samples if s.name.endswith("_total")}


async def raw_copy(manager: TieringManager, store: ObjectStore, scratch: str, concurrency: int) -> tuple[float, float]:
    """Seconds to download every remote `.log` to a file, `concurrency` at a time (as the
    clean downloads), and seconds to upload them all again under new keys after that."""
    slots = asyncio.Semaphore(concurrency)
    segments = manager.remote_segments("table", 0)
    paths = [os.path.join(scratch, f"copy-{n}.log") for n in range(len(segments))]

    async def download(segment: RemoteSegment, path: str) -> None:
        async with slots:
            with open(path, "wb") as out:
                await object_crc32c(store, segment.files["log"], out)

    async def upload(n: int, path: str) -> None:
        async with slots:
            fd = os.open(path, os.O_RDONLY)
            try:
                await store.put_file(f"raw-copy/{n}.log", fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)

    started = time.perf_counter()
    await asyncio.gather(*(download(s, p) for s, p in zip(segments, paths)))
    downloaded = time.perf_counter() - started
    await asyncio.gather(*(upload(n, p) for n, p in enumerate(paths)))
    copied = time.perf_counter() - started
    for path in paths:
        os.unlink(path)
    return downloaded, copied


async def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root = tempfile.mkdtemp(prefix="bench-remote-clean-")
    try:
        logs = LogManager(os.path.join(root, "data")).open()
        records = await write_table(logs, args.mib, args.size, args.live)
        store: ObjectStore = LocalFolderStore(os.path.join(root, "bucket"))
        if args.latency_model:
            first_byte_ms, mb_per_s = (float(v) for v in args.latency_model.split(","))
            store = LatencyModelStore(store, first_byte_s=first_byte_ms / 1000, bandwidth_bytes_per_s=mb_per_s * 1e6)
        manager = TieringManager(logs, store)
        await manager.open()
        await manager.run_once()
        before = sum(s.size_bytes for s in manager.remote_segments("table", 0))
        downloaded, raw = await raw_copy(manager, store, root, manager.upload_concurrency)
        counted = requests()
        started = time.perf_counter()
        result = await manager.clean_once()
        took = time.perf_counter() - started
        assert result is not None
        used = {op: n - counted.get(op, 0) for op, n in requests().items() if n - counted.get(op, 0)}
        after = sum(s.size_bytes for s in manager.remote_segments("table", 0))
        print(f"{records} records of {args.size} B, {before / 2**20:.0f} MiB in "
              f"{len(manager.remote_segments('table', 0))} remote segments after the clean "
              f"({after / 2**20:.1f} MiB), store: {args.latency_model or 'local folder'}")
        print(f"raw copy ({manager.upload_concurrency} at a time): GET of every .log {downloaded:.2f} s, "
              f"then PUT of each again: {raw:.2f} s in all ({before / raw / 1e6:.0f} MB/s)")
        print(f"clean in the bucket: {took:.2f} s ({records / took:,.0f} records/s, {before / took / 1e6:.0f} MB/s), "
              f"{result.stats.records_kept} records kept; against the raw copy {raw / took:.2f}, "
              f"against its GETs alone {downloaded / took:.2f}")
        print("requests of the clean:", ", ".join(f"{op} {int(n)}" for op, n in sorted(used.items())))
        await manager.close()
        await store.close()
        logs.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--live", type=float, default=0.1)
    parser.add_argument("--latency-model", default="", help="FIRST_BYTE_MS,MB_PER_S")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
