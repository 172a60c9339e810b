"""A producer plus tiering manager for the crash tests, run until SIGKILLed (or for at
most SECONDS). It appends random batches to topic `crash` partition 0, fsyncing each
before acknowledging it, while the tiering manager uploads, applies retention and cleans
orphans every few milliseconds against moto's S3 server. It prints one line per event:

    ready
    ack <base offset> <last offset> <sha256 of the batch after its baseOffset>
    commit <segment id> <base offset> <next offset>      (a segment record written)
    tombstone <segment id>                               (a segment's deletion began)

Now and then a few PUTs fail, and a commit's reply is lost after it reached the store.

Usage: python -m tests.tiering.crash_tierer DATA_DIR ENDPOINT BUCKET upload|delete SEED [SECONDS]
- upload: retention.ms=-1 (nothing expires); local.retention.bytes=0 (local segments go
  as soon as they are committed).
- delete: as upload, but retention.bytes keeps ~64 KiB: remote deletions run all along.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
import time

from hotlog.manager import LogManager
from hotlog.records import Record, build_batch
from tiering.manager import TieringManager
from tiering.s3_store import S3Store
from tiering.wrappers import DelegatingStore, FaultInjectingStore

TOPIC = "crash"
CONFIGS = {
    "upload": {"segment.bytes": 8 * 1024, "index.interval.bytes": 1024, "local.retention.bytes": 0,
               "retention.ms": -1},
    "delete": {"segment.bytes": 8 * 1024, "index.interval.bytes": 1024, "local.retention.bytes": 0,
               "retention.ms": -1, "retention.bytes": 64 * 1024},
}


class ReportingStore(DelegatingStore):
    """Prints segment records once the store has them."""

    async def put(self, key: str, data: bytes) -> None:
        await self.inner.put(key, data)
        if "/meta/" in key:
            record = json.loads(data)
            if record["state"] == "COPY_FINISHED":
                say(f"commit {record['segment_id']} {record['base_offset']} {record['next_offset']}")
            elif record["state"] == "DELETE_STARTED":
                say(f"tombstone {record['segment_id']}")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main() -> None:
    data_dir, endpoint, bucket, mode, seed = sys.argv[1:6]
    seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 20.0
    rng = random.Random(int(seed))
    logs = LogManager(data_dir).open()
    faulty = FaultInjectingStore(S3Store(bucket, "crash", endpoint_url=endpoint, backoff_base_s=0.01))
    store = ReportingStore(faulty)
    manager = TieringManager(logs, store, task_interval_ms=20, orphan_grace_ms=0, orphan_check_interval_ms=300,
                             retry_backoff_ms=20, retry_backoff_max_ms=200)
    if TOPIC not in logs.topics:
        logs.create_topic(TOPIC, 1, CONFIGS[mode])
    await manager.start()
    plog = logs.log(TOPIC, 0)
    say("ready")
    deadline = time.monotonic() + seconds
    appends = 0
    while time.monotonic() < deadline:
        batch = build_batch(
            [Record(b"s%s-%d" % (seed.encode(), appends), rng.randbytes(rng.randrange(0, 900)))
             for _ in range(rng.randrange(1, 6))],
            compression=rng.choice((0, 0, 1, 4)),
        )
        info = plog.append(batch)
        await plog.flush_async()
        say(f"ack {info.base_offset} {info.last_offset} {hashlib.sha256(batch[8:]).hexdigest()}")
        appends += 1
        if appends % 250 == 0:  # now and then the store fails, or a commit's reply is lost
            faulty.fail_next(rng.randrange(1, 4), "put")
            faulty.lose_replies(1, "put", key_contains="/meta/")
        if appends % 4 == 0:
            await asyncio.sleep(0.001)  # let tiering run between appends
    await manager.close()
    await store.close()
    logs.close()


if __name__ == "__main__":
    asyncio.run(main())
