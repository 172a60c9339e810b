"""A writer for the cleaner's crash tests: appends to the compacted topic `c` partition 0
and cleans it, slowly (log.cleaner.io.max.bytes.per.second), until killed. Prints one line
per acknowledged (fsynced) record, `<offset> <key> <value>`, and `cleaning` / `cleaned`
around each clean.

Usage: python clean_crash_writer.py DATA_DIR SEED
"""

from __future__ import annotations

import random
import sys

from hotlog.cleaner import CleanerConfig
from hotlog.manager import LogManager
from hotlog.records import Record, build_batch

CONFIGS = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": 0.0, "segment.bytes": 2000,
           "index.interval.bytes": 200, "remote.storage.enable": "false"}


def main() -> None:
    data_dir, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    cleaner = CleanerConfig(dedupe_buffer_size=16 * 32, io_buffer_size=1024, io_max_bytes_per_second=150_000)
    manager = LogManager(data_dir, cleaner=cleaner).open()
    if "c" not in manager.topics:
        manager.create_topic("c", 1, CONFIGS)
    plog = manager.log("c", 0)
    print("ready", flush=True)
    for appends in range(1, 100_000):
        records = [Record(b"k%d" % rng.randrange(40), b"s%d-%d-%d" % (seed, appends, i) if rng.random() > 0.1 else None)
                   for i in range(rng.randrange(1, 6))]
        info = plog.append(build_batch(records, compression=rng.randrange(3)))
        plog.flush()
        for i, r in enumerate(records):
            sys.stdout.write(f"{info.base_offset + i} {r.key.decode()} {'-' if r.value is None else r.value.decode()}\n")
        sys.stdout.flush()
        if appends % 15 == 0:
            plog.seal_active_segment()
            print("cleaning", flush=True)
            manager.cleaner.clean(plog)
            manager.write_cleaner_checkpoint()
            print("cleaned", flush=True)


if __name__ == "__main__":
    main()
