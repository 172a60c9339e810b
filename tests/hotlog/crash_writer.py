"""A writer for the crash tests: appends random batches to topic `crash` partition 0 of a
data folder until killed (or for at most `seconds`), printing one line per acknowledged
append: `<base offset> <last offset> <sha256 of the batch after its baseOffset>`.

Usage: python crash_writer.py DATA_DIR page|fsync SEED [SECONDS]
- page: an append is acknowledged once it is in the page cache (a SIGKILL keeps those);
  every 40 appends the log is flushed and the recovery checkpoint written.
- fsync: each append is flushed before it is acknowledged.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time

from hotlog.manager import LogManager
from hotlog.records import Record, build_batch

TOPIC = "crash"
CONFIGS = {"segment.bytes": 32 * 1024, "index.interval.bytes": 1024, "remote.storage.enable": "false"}


def main() -> None:
    data_dir, mode, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
    rng = random.Random(seed)
    manager = LogManager(data_dir).open()
    if TOPIC not in manager.topics:
        manager.create_topic(TOPIC, 1, CONFIGS)
    plog = manager.log(TOPIC, 0)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    appends = 0
    while time.monotonic() < deadline:
        records = [
            Record(b"s%d-%d" % (seed, appends), rng.randbytes(rng.randrange(0, 1500)), (("n", b"%d" % i),))
            for i in range(rng.randrange(1, 12))
        ]
        batch = build_batch(records, compression=rng.randrange(5))
        info = plog.append(batch)
        appends += 1
        if mode == "fsync":
            plog.flush()
        elif appends % 40 == 0:
            plog.flush()
        if appends % 40 == 0:
            manager.write_checkpoint()
        digest = hashlib.sha256(batch[8:]).hexdigest()
        sys.stdout.write(f"{info.base_offset} {info.last_offset} {digest}\n")
        sys.stdout.flush()
    manager.close()


if __name__ == "__main__":
    main()
