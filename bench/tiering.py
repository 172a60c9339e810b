"""Upload throughput of the tiering manager against raw uploads of the same bytes to the
same store, and object-store requests per GB uploaded.

    python bench/tiering.py [--stores local,moto] [--mib 512] [--segment-mib 64] [--rounds 3] [--dir DIR]

A log of `--mib` MiB in sealed segments of `--segment-mib` MiB is built once. Each round
uploads all of it twice, to a fresh prefix each time, the two in turn first (so drift
and warm-up hit both):
- tiering: one TieringManager.run_once() (segment files, producer snapshots, metadata
  records; CRC-32C of every object; the same concurrency as the baseline);
- raw: the same files with the plainest calls the store offers: `put_object` (one part)
  or create/upload_part/complete (larger files) through aiobotocore for S3; for a folder,
  shutil.copyfile to a temporary file (sendfile, in the kernel), fsync, rename, fsync the
  folder (the least that makes an object atomic and durable, as a PUT is).
Medians are printed, with the ratio tiering / raw.
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
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from aiobotocore.session import get_session  # noqa: E402
from botocore.config import Config  # noqa: E402

from hotlog.manager import LogManager  # noqa: E402
from hotlog.records import Record, build_batch  # noqa: E402
from testkit.moto_server import FAKE_CREDENTIALS, MotoServer  # noqa: E402
from tiering.local_store import LocalFolderStore  # noqa: E402
from tiering.manager import TieringManager  # noqa: E402
from tiering.s3_store import S3Store  # noqa: E402
from tiering.store import ObjectStore  # noqa: E402
from tiering.uploader import segment_files  # noqa: E402

MIB = 1024 * 1024
PART_BYTES = 8 * MIB
CONCURRENCY = 4  # segments uploading at once, in both contenders
PART_CONCURRENCY = 4  # parts of one multipart upload in flight, in both contenders
SHOW_SAMPLES = False


def build_log(data_dir: str, mib: int, segment_mib: int) -> tuple[LogManager, list[list[str]]]:
    """A topic with `mib` MiB of 1 MiB batches (random, incompressible), all sealed.
    Returns the manager and, per segment, the files tiering will upload."""
    logs = LogManager(data_dir).open()
    logs.create_topic("bench", 1, {
        "segment.bytes": segment_mib * MIB, "retention.ms": -1, "local.retention.ms": -1,
        "max.message.bytes": 2 * MIB, "flush.ms": 2**62,
    })
    plog = logs.log("bench", 0)
    payload = os.urandom(1000)
    for i in range(mib):
        plog.append(build_batch([Record(b"%d-%d" % (i, j), payload) for j in range(1040)]))
    plog.roll()
    plog.flush()
    return logs, [[path for _, path in segment_files(plog, s)] for s in plog.segments if s.sealed]


async def tiering_round(logs: LogManager, store: ObjectStore) -> tuple[float, int]:
    """Seconds for one pass that uploads every sealed segment, and the requests it sent."""
    manager = TieringManager(logs, store, upload_concurrency=CONCURRENCY)
    await manager.open()
    before = sum(store.requests.values())
    began = time.perf_counter()
    await manager.run_once()
    elapsed = time.perf_counter() - began
    status = manager.remote_status("bench", 0)
    assert status.copy_lag_segments == 0 and status.log_end_offset == logs.log("bench", 0).segments[-1].base_offset
    await manager.close()
    return elapsed, sum(store.requests.values()) - before


async def by_segment(segments: list[list[str]], upload: Callable[[str], Awaitable[int]]) -> tuple[float, int]:
    """Upload `CONCURRENCY` segments at once, each one's files together, as tiering does.
    Returns the seconds taken and the requests sent."""
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(files: list[str]) -> int:
        async with slots:
            return sum(await asyncio.gather(*(upload(path) for path in files)))

    began = time.perf_counter()
    requests = sum(await asyncio.gather(*(one(files) for files in segments)))
    return time.perf_counter() - began, requests


# -- raw baselines ---------------------------------------------------------------------------


async def raw_s3_round(endpoint: str, bucket: str, prefix: str, segments: list[list[str]]) -> tuple[float, int]:
    # No checksum at all (botocore would add a CRC32 trailer by default): the plainest PUT.
    config = Config(max_pool_connections=32, retries={"total_max_attempts": 1}, request_checksum_calculation="when_required")
    async with get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                           config=config) as s3:

        async def upload(path: str) -> int:
            key = f"{prefix}/{os.path.basename(path)}"
            size = os.path.getsize(path)
            if size <= PART_BYTES:
                await s3.put_object(Bucket=bucket, Key=key, Body=await asyncio.to_thread(read_range, path, 0, size))
                return 1
            upload_id = (await s3.create_multipart_upload(Bucket=bucket, Key=key))["UploadId"]
            slots = asyncio.Semaphore(PART_CONCURRENCY)

            async def part(number: int, data: bytes) -> dict[str, Any]:
                try:
                    r = await s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)
                    return {"PartNumber": number, "ETag": r["ETag"]}
                finally:
                    slots.release()

            tasks = []
            for number, position in enumerate(range(0, size, PART_BYTES), 1):
                data = await asyncio.to_thread(read_range, path, position, min(PART_BYTES, size - position))
                await slots.acquire()
                tasks.append(asyncio.create_task(part(number, data)))
            parts = await asyncio.gather(*tasks)
            await s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                               MultipartUpload={"Parts": list(parts)})
            return len(parts) + 2

        return await by_segment(segments, upload)


def read_range(path: str, position: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(position)
        return f.read(size)


def raw_file_copy(path: str, target_dir: str) -> int:
    """Copy a file in as an object (shutil.copyfile: sendfile in the kernel), durably."""
    tmp = os.path.join(target_dir, f".{uuid.uuid4().hex}")
    shutil.copyfile(path, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    os.replace(tmp, os.path.join(target_dir, os.path.basename(path)))
    dir_fd = os.open(target_dir, os.O_RDONLY)  # the rename is durable only once its folder is
    os.fsync(dir_fd)
    os.close(dir_fd)
    return 1


async def raw_local_round(target_dir: str, segments: list[list[str]]) -> tuple[float, int]:
    os.makedirs(target_dir)
    return await by_segment(segments, lambda path: asyncio.to_thread(raw_file_copy, path, target_dir))


# -- the comparison ----------------------------------------------------------------------------


def report(name: str, total_bytes: int, tiering: list[tuple[float, int]], raw: list[tuple[float, int]]) -> None:
    t = statistics.median(s for s, _ in tiering)
    r = statistics.median(s for s, _ in raw)
    gb = total_bytes / 1e9
    if SHOW_SAMPLES:
        print("  seconds per round: tiering", " ".join(f"{x:.2f}" for x, _ in tiering),
              "| raw", " ".join(f"{x:.2f}" for x, _ in raw))
    print(f"{name:6} tiering {total_bytes / t / 1e6:7.0f} MB/s  raw {total_bytes / r / 1e6:7.0f} MB/s  "
          f"ratio {r / t:.2f}  requests/GB: tiering {tiering[0][1] / gb:.0f}, raw {raw[0][1] / gb:.0f}")


async def bench_local(logs: LogManager, segments: list[list[str]], work: str, rounds: int, total: int) -> None:
    tiering, raw = [], []
    for i in range(rounds):
        root = os.path.join(work, f"bucket-{i}")
        for contender in (("raw", "tiering") if i % 2 else ("tiering", "raw")):
            os.sync()  # start from a quiet disk: no writeback left from the round before
            if contender == "raw":
                raw.append(await raw_local_round(os.path.join(work, f"raw-{i}"), segments))
            else:
                tiering.append(await tiering_round(logs, LocalFolderStore(root, part_bytes=PART_BYTES)))
        shutil.rmtree(os.path.join(work, f"raw-{i}"))
        shutil.rmtree(root)
    report("local", total, tiering, raw)


async def bench_moto(logs: LogManager, segments: list[list[str]], rounds: int, total: int) -> None:
    os.environ.update(FAKE_CREDENTIALS)
    with MotoServer() as moto:
        bucket = moto.new_bucket()
        tiering, raw = [], []
        for i in range(rounds):
            for contender in (("raw", "tiering") if i % 2 else ("tiering", "raw")):
                if contender == "raw":
                    raw.append(await raw_s3_round(moto.endpoint_url, bucket, f"raw-{i}", segments))
                else:
                    store = S3Store(bucket, f"tiered-{i}", endpoint_url=moto.endpoint_url, part_bytes=PART_BYTES,
                                    part_concurrency=PART_CONCURRENCY)
                    tiering.append(await tiering_round(logs, store))
                    await store.close()
                await clear_bucket(moto, bucket)
        report("moto", total, tiering, raw)


async def clear_bucket(moto: MotoServer, bucket: str) -> None:
    """Free moto's memory between rounds (not timed)."""
    client = moto.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="local,moto")
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--segment-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--samples", action="store_true", help="print every round's time too")
    args = parser.parse_args()
    global SHOW_SAMPLES
    SHOW_SAMPLES = args.samples
    work = tempfile.mkdtemp(prefix="tierlog-bench-", dir=args.dir)
    try:
        logs, segments = build_log(os.path.join(work, "data"), args.mib, args.segment_mib)
        total = sum(os.path.getsize(p) for files in segments for p in files)
        print(f"{total / MIB:.0f} MiB in {len(segments)} segments of {args.segment_mib} MiB, "
              f"{CONCURRENCY} segments x {PART_CONCURRENCY} parts of {PART_BYTES // MIB} MiB at once; "
              f"medians of {args.rounds} rounds")
        for name in args.stores.split(","):
            if name == "local":
                asyncio.run(bench_local(logs, segments, work, args.rounds, total))
            elif name == "moto":
                asyncio.run(bench_moto(logs, segments, args.rounds, total))
            else:
                raise SystemExit(f"unknown store {name!r}: use local and/or moto")
        logs.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
