"""A producer of a tiered compacted topic for the crash tests of compaction in the bucket,
run until SIGKILLed (or for at most SECONDS). It appends batches of keyed records to topic
`table` partition 0 (KEYS keys, each record's value `<key>:<version>`, versions counted
per key), fsyncing each batch before acknowledging it, while tiering uploads, cleans the
bucket's segments every few milliseconds and deletes the replaced ones 100 ms later,
against moto's S3 server. It prints one line per event:

    ready
    ack <key>:<version> ...                         (a batch acknowledged)
    cleaned <segment id> <base offset> <next offset>  (a cleaned segment committed)

Usage: python -m tests.tiering.crash_cleaner DATA_DIR ENDPOINT BUCKET SEED [SECONDS]
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from hotlog.cleaner import CleanerConfig
from hotlog.manager import LogManager
from hotlog.records import Record, build_batch
from tiering.manager import TieringManager
from tiering.s3_store import S3Store
from tiering.wrappers import DelegatingStore

TOPIC = "table"
KEYS = 20
CONFIGS = {"cleanup.policy": "compact", "remote.storage.enable": True, "min.cleanable.dirty.ratio": 0.0,
           "delete.retention.ms": 0, "segment.bytes": 4096, "index.interval.bytes": 512,
           "local.retention.bytes": 16 * 1024, "file.delete.delay.ms": 100}


class ReportingStore(DelegatingStore):
    """Prints cleaned segments' records once the store has them."""

    async def put(self, key: str, data: bytes) -> None:
        await self.inner.put(key, data)
        if "/meta/" in key:
            record = json.loads(data)
            if record["state"] == "COPY_FINISHED" and record["replaces"]:
                say(f"cleaned {record['segment_id']} {record['base_offset']} {record['next_offset']}")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main() -> None:
    data_dir, endpoint, bucket, seed = sys.argv[1:5]
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 20.0
    rng = random.Random(int(seed))
    logs = LogManager(data_dir, cleaner=CleanerConfig(backoff_ms=10)).open()
    store = ReportingStore(S3Store(bucket, "table", endpoint_url=endpoint, backoff_base_s=0.01))
    manager = TieringManager(logs, store, task_interval_ms=20, orphan_grace_ms=0, orphan_check_interval_ms=300,
                             retry_backoff_ms=20, retry_backoff_max_ms=200)
    if TOPIC not in logs.topics:
        logs.create_topic(TOPIC, 1, CONFIGS)
    await manager.start()
    plog = logs.log(TOPIC, 0)
    versions = _last_versions(seed)
    say("ready")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        records = []
        for _ in range(rng.randrange(1, 6)):
            key = rng.randrange(KEYS)
            versions[key] += 1
            records.append(Record(b"key%d" % key, f"key{key}:{versions[key]}".encode().ljust(60, b"."), ()))
        plog.append(build_batch(records, compression=rng.choice((0, 0, 1, 4))))
        await plog.flush_async()
        say("ack " + " ".join(r.value.split(b".")[0].decode() for r in records if r.value is not None))
        await asyncio.sleep(0.001)  # let tiering and the cleaner run between appends
    await manager.close()
    await store.close()
    logs.close()


def _last_versions(seed: str) -> list[int]:
    """Versions go on across runs: each run starts far past what the last could reach."""
    return [int(seed) * 1_000_000] * KEYS


if __name__ == "__main__":
    asyncio.run(main())
