"""Replay from offset 0 of a partition whose history is in the object store, through the
read path (fetch.Reader), against raw reads of the same bytes; and what a replay does to
the produce latency of a partition beside it.

    python bench/replay.py [--mib 512] [--segment-mib 64] [--batch-kib 64] [--fetch-kib 1024]
                           [--rounds 3] [--model-mib 256] [--produce-seconds 4] [--moto] [--dir DIR]

A partition of `--mib` MiB in batches of `--batch-kib` KiB (1 KiB records, incompressible)
is tiered to a local-folder store and its local copies deleted; the same batches are kept
in a second, untiered log for the local baseline. A replay reads from offset 0 to the end
as a consumer does: `Reader.read(offset, --fetch-kib)` in a loop (1 MiB is Kafka's
max.partition.fetch.bytes). Chunks, prefetch and GET concurrency are the broker's defaults.
In one run, medians of `--rounds` rounds, the contenders taking turns:

1. local folder store: cold replay (a new, empty chunk cache) against raw sequential GETs
   of the segments' `.log` objects from the same store (whole objects, one after another);
   warm replay (every chunk cached) against a replay of the untiered log (the local tier).
2. S3 latency model (LatencyModelStore over the folder: 30 ms to first byte, 90 MB/s per
   connection), the first `--model-mib` MiB: the default reader (prefetch, parallel GETs),
   and one reading twice as far ahead, against one that fetches one chunk at a time (no
   prefetch, one GET at a time).
3. produce latency on the same event loop, as in the server: one batch every 5 ms to
   another partition of the same log manager, each appended and acknowledged once fsynced
   (acks=all, Kafka clients' default), with no replay and while cold replays run, from the
   folder (flat out) and under the S3 model. The replay yields to the loop between reads,
   as a consumer's fetches arrive as separate requests.
4. with --moto: cold replay from moto's S3 server against raw whole-object GETs through
   the same store (both bound by moto, not by S3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from broker.settings import BrokerSettings  # noqa: E402
from fetch.chunk_cache import ChunkCache  # noqa: E402
from fetch.index_cache import RemoteIndexCache  # noqa: E402
from fetch.reader import Reader  # noqa: E402
from fetch.remote import RemoteReader  # noqa: E402
from hotlog.batch import peek_offset_and_size  # noqa: E402
from hotlog.log import PartitionLog  # noqa: E402
from hotlog.manager import LogManager  # noqa: E402
from hotlog.records import Record, build_batch  # noqa: E402
from tiering.local_store import LocalFolderStore  # noqa: E402
from tiering.manager import TieringManager  # noqa: E402
from tiering.store import ObjectStore  # noqa: E402
from tiering.wrappers import LatencyModelStore  # noqa: E402

MIB = 1024 * 1024
TOPIC = "replay"
HISTORY, LIVE = 0, 1  # partitions: the replayed history, and the one the producer writes
DEFAULTS = BrokerSettings()  # chunk size, prefetch and GET concurrency as the broker has them
S3_FIRST_BYTE_S = 0.030
S3_BYTES_PER_S = 90e6
PRODUCE_INTERVAL_S = 0.005
LAST_OFFSET_DELTA_AT = 23


@dataclass
class History:
    work: str
    logs: LogManager  # the tiered topic: history in the store, the live partition local
    local_logs: LogManager  # the same history, untiered: the local-tier baseline
    store: LocalFolderStore
    tiering: TieringManager
    keys: list[str]  # the history's `.log` objects, in offset order
    total: int  # bytes of the history
    end_offset: int
    batch: bytes  # one batch as a producer sends it
    fetch_bytes: int


def make_batches(batch_kib: int, distinct: int = 16) -> list[bytes]:
    """Batches of 1 KiB records, each batch with its own random payload (incompressible)."""
    count = max(1, batch_kib * 1024 // 1040)
    return [build_batch([Record(b"key-%d" % i, os.urandom(1000)) for i in range(count)]) for _ in range(distinct)]


async def build(work: str, mib: int, segment_mib: int, batch_kib: int, fetch_kib: int) -> History:
    """Write the history into both logs, tier the tiered one and delete its local copies."""
    configs = {"segment.bytes": segment_mib * MIB, "retention.ms": -1, "local.retention.bytes": 0,
               "max.message.bytes": max(2 * batch_kib * 1024, MIB)}
    logs = LogManager(os.path.join(work, "data")).open()
    logs.create_topic(TOPIC, 2, configs)
    local_logs = LogManager(os.path.join(work, "local")).open()
    local_logs.create_topic(TOPIC, 1, {**configs, "remote.storage.enable": False})
    batches = make_batches(batch_kib)
    history, local = logs.log(TOPIC, HISTORY), local_logs.log(TOPIC, HISTORY)
    written, i = 0, 0
    while written < mib * MIB:
        batch = batches[i % len(batches)]
        history.append(batch)
        local.append(batch)
        written += len(batch)
        i += 1
    for plog in (history, local):
        plog.roll()  # the whole history sealed, so all of it goes to the store
        plog.flush()
    store = LocalFolderStore(os.path.join(work, "bucket"))
    tiering = TieringManager(logs, store)
    await tiering.open()
    await tiering.run_once()
    segments = tiering.remote_segments(TOPIC, HISTORY)
    assert segments and history.log_start_offset == segments[-1].next_offset == history.log_end_offset, \
        "every segment should be tiered and its local copy deleted"
    return History(work, logs, local_logs, store, tiering, [s.key("log") for s in segments],
                   sum(s.files["log"].size for s in segments), history.log_end_offset, batches[0], fetch_kib * 1024)


def remote_reader(h: History, store: ObjectStore, name: str, *, prefetch: int = DEFAULTS.remote_log_prefetch_chunks,
                  max_gets: int = DEFAULTS.remote_log_max_concurrent_gets) -> Reader:
    """A Reader over the tiered log with a new, empty chunk cache that holds all of it."""
    chunk = DEFAULTS.remote_log_chunk_bytes
    cache = ChunkCache.for_store(os.path.join(h.work, f"cache-{name}"), store, chunk_bytes=chunk,
                       max_bytes=h.total + chunk, max_concurrent_gets=max_gets)
    return Reader(h.logs, h.tiering, RemoteReader(cache, RemoteIndexCache(store), readahead_chunks=prefetch))


def next_offset(records: bytes) -> int:
    """The offset after the last of the whole batches in `records` (a consumer walks them)."""
    position, size = 0, len(records)
    while True:
        _, batch_size = peek_offset_and_size(records, position)
        if position + batch_size >= size:
            break
        position += batch_size
    base, _ = peek_offset_and_size(records, position)
    return base + int.from_bytes(records[position + LAST_OFFSET_DELTA_AT:position + LAST_OFFSET_DELTA_AT + 4]) + 1


async def replay(reader: Reader, h: History, until_bytes: int | None = None) -> tuple[float, int]:
    """Read from offset 0 to the end (or past `until_bytes`) as a consumer loops.
    Returns the seconds taken and the bytes read."""
    offset, served = 0, 0
    began = time.perf_counter()
    while offset < h.end_offset and (until_bytes is None or served < until_bytes):
        records = (await reader.read(TOPIC, HISTORY, offset, h.fetch_bytes)).records
        assert records, f"no progress at offset {offset}"
        served += len(records)
        offset = next_offset(records)
        # A consumer's next fetch is a new request: the server's loop runs other work between.
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - began
    assert until_bytes is not None or (offset == h.end_offset and served == h.total), "the replay lost bytes"
    return elapsed, served


async def raw_gets(store: ObjectStore, keys: list[str]) -> tuple[float, int]:
    """Sequential whole-object GETs: what one reader of the store gets without a read path."""
    began = time.perf_counter()
    total = 0
    for key in keys:
        total += len(await store.get(key))
    return time.perf_counter() - began, total


async def close_reader(reader: Reader) -> None:
    assert reader.remote is not None
    await reader.remote.close()
    # Off the event loop: deleting 100s of MiB of chunk files would stall the producer.
    await asyncio.to_thread(shutil.rmtree, reader.remote.cache.directory, ignore_errors=True)


# -- 1. cold and warm replay from a local folder ------------------------------------------


async def bench_folder(h: History, rounds: int) -> dict[str, list[float]]:
    """Seconds per round of each contender."""
    times: dict[str, list[float]] = {"raw": [], "cold": [], "warm": [], "local": []}
    local_reader = Reader(h.local_logs)
    for i in range(rounds):
        reader = remote_reader(h, h.store, f"folder-{i}")

        async def remote_pair() -> None:
            times["cold"].append((await replay(reader, h))[0])
            times["warm"].append((await replay(reader, h))[0])

        async def raw() -> None:
            elapsed, total = await raw_gets(h.store, h.keys)
            assert total == h.total
            times["raw"].append(elapsed)

        async def local() -> None:
            times["local"].append((await replay(local_reader, h))[0])

        order: list[Callable[[], Awaitable[None]]] = [raw, remote_pair, local]
        for contender in order if i % 2 == 0 else order[::-1]:
            await asyncio.to_thread(os.sync)  # a quiet disk: no writeback left from the one before
            await contender()
        await close_reader(reader)
    return times


# -- 2. the S3 latency model ----------------------------------------------------------------


async def bench_model(h: History, rounds: int, until_bytes: int) -> dict[str, list[float]]:
    """MB/s per round of the default reader, of one reading twice as far ahead, and of one
    fetching a chunk at a time."""
    model = LatencyModelStore(h.store, first_byte_s=S3_FIRST_BYTE_S, bandwidth_bytes_per_s=S3_BYTES_PER_S)
    options = {"parallel": {}, "parallel-2x": {"prefetch": 2 * DEFAULTS.remote_log_prefetch_chunks},
               "serial": {"prefetch": 0, "max_gets": 1}}
    rates: dict[str, list[float]] = {name: [] for name in options}
    for i in range(rounds):
        for name in list(options) if i % 2 == 0 else list(options)[::-1]:
            reader = remote_reader(h, model, f"model-{name}-{i}", **options[name])
            elapsed, served = await replay(reader, h, until_bytes)
            rates[name].append(served / elapsed / 1e6)
            await close_reader(reader)
    return rates


# -- 3. produce latency beside a replay ------------------------------------------------------


async def produce_for(plog: PartitionLog, batch: bytes, seconds: float) -> list[float]:
    """One produce request every PRODUCE_INTERVAL_S, each in its own task as the server runs
    them: append, then wait for the fsync. Latency counts from when the request was due, so
    a stalled event loop shows in it."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []

    async def one(due: float) -> None:
        plog.append(batch)
        await plog.flush_async(plog.log_end_offset)
        latencies.append(loop.time() - due)

    tasks = []
    start = loop.time()
    count = int(seconds / PRODUCE_INTERVAL_S)
    for n in range(count):
        due = start + n * PRODUCE_INTERVAL_S
        await asyncio.sleep(max(0.0, due - loop.time()))
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return latencies


async def bench_produce(h: History, rounds: int, seconds: float, store: ObjectStore,
                        name: str) -> tuple[dict[str, list[float]], float]:
    """Produce latencies with no replay and during cold replays from `store`; the replays' MB/s."""
    plog = h.logs.log(TOPIC, LIVE)
    latencies: dict[str, list[float]] = {"idle": [], "replay": []}
    replayed, replay_seconds = 0, 0.0
    for i in range(rounds):
        for phase in ("idle", "replay") if i % 2 == 0 else ("replay", "idle"):
            # Start from a quiet disk: no writeback left of the chunks a replay before cached.
            await asyncio.to_thread(os.sync)
            if phase == "idle":
                latencies["idle"] += await produce_for(plog, h.batch, seconds)
                continue
            stop = asyncio.Event()

            async def replays() -> tuple[int, float]:
                served, began, n = 0, time.perf_counter(), 0
                while not stop.is_set():  # a new cold replay each time one ends
                    reader = remote_reader(h, store, f"produce-{name}-{i}-{n}")
                    served += (await replay(reader, h))[1]
                    await close_reader(reader)
                    n += 1
                return served, time.perf_counter() - began

            task = asyncio.create_task(replays())
            latencies["replay"] += await produce_for(plog, h.batch, seconds)
            stop.set()
            served, elapsed = await task
            replayed += served
            replay_seconds += elapsed
    return latencies, replayed / replay_seconds / 1e6


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- 4. moto's S3 server -------------------------------------------------------------------


async def bench_moto(h: History, rounds: int) -> dict[str, list[float]]:
    """Cold replay through an S3Store on moto against raw whole-object GETs through it."""
    from testkit.moto_server import FAKE_CREDENTIALS, MotoServer
    from tiering.s3_store import S3Store

    os.environ.update(FAKE_CREDENTIALS)
    times: dict[str, list[float]] = {"raw": [], "cold": []}
    with MotoServer() as moto:
        bucket = moto.new_bucket()
        s3 = S3Store(bucket, "", endpoint_url=moto.endpoint_url)
        for key in h.keys + [s.key(ext) for s in h.tiering.remote_segments(TOPIC, HISTORY)
                             for ext in s.files if ext != "log"]:
            with open(os.path.join(h.store.root, key), "rb") as f:
                await s3.put_multipart(key, _parts(f, s3.part_bytes)) if os.fstat(f.fileno()).st_size > s3.part_bytes \
                    else await s3.put(key, f.read())
        for i in range(rounds):
            for name in ("raw", "cold") if i % 2 == 0 else ("cold", "raw"):
                if name == "raw":
                    elapsed, total = await raw_gets(s3, h.keys)
                    assert total == h.total
                    times["raw"].append(elapsed)
                else:
                    reader = remote_reader(h, s3, f"moto-{i}")
                    times["cold"].append((await replay(reader, h))[0])
                    await close_reader(reader)
        await s3.close()
    return times


async def _parts(f, part_bytes: int):  # noqa: ANN001, ANN202 - an open file; an async iterator of parts
    while part := f.read(part_bytes):
        yield part


# -- the run ---------------------------------------------------------------------------------


async def run(args: argparse.Namespace, work: str) -> dict[str, object]:
    h = await build(work, args.mib, args.segment_mib, args.batch_kib, args.fetch_kib)
    segments = len(h.keys)
    print(f"{h.total / MIB:.0f} MiB in {segments} remote segments (up to {args.segment_mib} MiB), "
          f"{len(h.batch) // 1024} KiB batches, reads of {args.fetch_kib} KiB; chunks of "
          f"{DEFAULTS.remote_log_chunk_bytes // MIB} MiB, prefetch {DEFAULTS.remote_log_prefetch_chunks}, "
          f"{DEFAULTS.remote_log_max_concurrent_gets} GETs at once; medians of {args.rounds} rounds")
    mb = h.total / 1e6
    folder = await bench_folder(h, args.rounds)
    rate = {name: mb / statistics.median(seconds) for name, seconds in folder.items()}
    model = await bench_model(h, args.rounds, min(args.model_mib * MIB, h.total))
    model_rate = {name: statistics.median(values) for name, values in model.items()}
    produce, replay_rate = await bench_produce(h, max(1, args.rounds - 1), args.produce_seconds, h.store, "folder")
    p = {name: (percentile(v, 0.5) * 1000, percentile(v, 0.99) * 1000) for name, v in produce.items()}
    model = LatencyModelStore(h.store, first_byte_s=S3_FIRST_BYTE_S, bandwidth_bytes_per_s=S3_BYTES_PER_S)
    produce_s3, replay_rate_s3 = await bench_produce(h, max(1, args.rounds - 1), args.produce_seconds, model, "s3")
    p_s3 = {name: (percentile(v, 0.5) * 1000, percentile(v, 0.99) * 1000) for name, v in produce_s3.items()}
    result: dict[str, object] = {
        "mib": round(h.total / MIB), "segments": segments, "batch_bytes": len(h.batch), "fetch_bytes": h.fetch_bytes,
        "cold_mb_s": round(rate["cold"]), "raw_get_mb_s": round(rate["raw"]),
        "cold_vs_raw": round(rate["cold"] / rate["raw"], 2),
        "warm_mb_s": round(rate["warm"]), "local_mb_s": round(rate["local"]),
        "warm_vs_local": round(rate["warm"] / rate["local"], 2),
        "model_parallel_mb_s": round(model_rate["parallel"]), "model_serial_mb_s": round(model_rate["serial"]),
        "model_speedup": round(model_rate["parallel"] / model_rate["serial"], 2),
        "model_prefetch_2x_mb_s": round(model_rate["parallel-2x"]),
        "model_prefetch_2x_speedup": round(model_rate["parallel-2x"] / model_rate["serial"], 2),
        "produce_p50_ms_idle": round(p["idle"][0], 2), "produce_p99_ms_idle": round(p["idle"][1], 2),
        "produce_p50_ms_replay": round(p["replay"][0], 2), "produce_p99_ms_replay": round(p["replay"][1], 2),
        "produce_p99_ratio": round(p["replay"][1] / p["idle"][1], 2), "replay_beside_produce_mb_s": round(replay_rate),
        "s3_produce_p50_ms_idle": round(p_s3["idle"][0], 2), "s3_produce_p99_ms_idle": round(p_s3["idle"][1], 2),
        "s3_produce_p50_ms_replay": round(p_s3["replay"][0], 2),
        "s3_produce_p99_ms_replay": round(p_s3["replay"][1], 2),
        "s3_produce_p99_ratio": round(p_s3["replay"][1] / p_s3["idle"][1], 2),
        "s3_replay_beside_produce_mb_s": round(replay_rate_s3),
    }
    rows = [
        ("cold replay, folder store", f"{rate['cold']:.0f} MB/s", f"sequential GETs {rate['raw']:.0f} MB/s",
         f"{result['cold_vs_raw']}", ">= 0.8"),
        ("warm replay (chunk cache)", f"{rate['warm']:.0f} MB/s", f"local-tier replay {rate['local']:.0f} MB/s",
         f"{result['warm_vs_local']}", ">= 0.8"),
        ("replay under the S3 model", f"{model_rate['parallel']:.0f} MB/s",
         f"one chunk at a time {model_rate['serial']:.0f} MB/s", f"{result['model_speedup']}x", ">= 4x"),
        (f"  the same, prefetch {2 * DEFAULTS.remote_log_prefetch_chunks} chunks", f"{model_rate['parallel-2x']:.0f} MB/s",
         f"one chunk at a time {model_rate['serial']:.0f} MB/s", f"{result['model_prefetch_2x_speedup']}x", ">= 4x"),
        ("produce p99 beside a replay", f"{p['replay'][1]:.2f} ms (p50 {p['replay'][0]:.2f})",
         f"no replay {p['idle'][1]:.2f} ms (p50 {p['idle'][0]:.2f})", f"{result['produce_p99_ratio']}x", "<= 2x"),
        ("  the same, replay from S3 model", f"{p_s3['replay'][1]:.2f} ms (p50 {p_s3['replay'][0]:.2f})",
         f"no replay {p_s3['idle'][1]:.2f} ms (p50 {p_s3['idle'][0]:.2f})", f"{result['s3_produce_p99_ratio']}x",
         "<= 2x"),
    ]
    if args.moto:
        moto = await bench_moto(h, args.rounds)
        moto_rate = {name: mb / statistics.median(seconds) for name, seconds in moto.items()}
        result.update(moto_cold_mb_s=round(moto_rate["cold"]), moto_raw_get_mb_s=round(moto_rate["raw"]),
                      moto_cold_vs_raw=round(moto_rate["cold"] / moto_rate["raw"], 2))
        rows.append(("cold replay, moto (moto-bound)", f"{moto_rate['cold']:.0f} MB/s",
                     f"sequential GETs {moto_rate['raw']:.0f} MB/s", f"{result['moto_cold_vs_raw']}", ""))
    print(f"{'':32} {'tierlog':26} {'baseline':36} {'ratio':6} goal")
    for row in rows:
        print(f"{row[0]:32} {row[1]:26} {row[2]:36} {row[3]:6} {row[4]}")
    print(f"(replays beside the producer ran at {replay_rate:.0f} MB/s from the folder, "
          f"{replay_rate_s3:.0f} MB/s under the S3 model)")
    await h.tiering.close()
    await h.store.close()
    h.logs.close()
    h.local_logs.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=512, help="history size")
    parser.add_argument("--segment-mib", type=int, default=64)
    parser.add_argument("--batch-kib", type=int, default=64, help="producer batch size")
    parser.add_argument("--fetch-kib", type=int, default=1024, help="bytes per read (max.partition.fetch.bytes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-mib", type=int, default=256, help="bytes replayed under the S3 latency model")
    parser.add_argument("--produce-seconds", type=float, default=4.0, help="per producer round")
    parser.add_argument("--moto", action="store_true", help="also replay from moto's S3 server")
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="tierlog-replay-", dir=args.dir)
    try:
        print(json.dumps(asyncio.run(run(args, work))))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
