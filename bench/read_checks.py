"""What checking stored batches costs the read path: CPU-seconds per GB of a first read of
segments this process did not write (each batch's header and CRC-32C checked once), against
a second read of the same bytes (checked already: served as they are).

    python bench/read_checks.py [--mib 512] [--batch-kib 16] [--dir DIR]

Writes `--mib` MiB of `--batch-kib` KiB batches into one partition of 64 MiB segments,
closes the log and opens it again (as after a restart: nothing checked), reads every file
once so both passes come from the page cache, then reads the partition through
PartitionLog.read and FileSlice.read in 1 MiB fetches twice. Also shown: one CRC-32C over
the same bytes in 8 MiB calls, the floor of any check.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from crc32c import crc32c  # noqa: E402

from hotlog.config import LogConfig  # noqa: E402
from hotlog.log import PartitionLog  # noqa: E402
from hotlog.records import Record, build_batch  # noqa: E402

SEGMENT_BYTES = 64 * 1024 * 1024
FETCH_BYTES = 1024 * 1024
GB = 1e9


def read_partition(plog: PartitionLog) -> tuple[int, float]:
    """Bytes served and CPU-seconds taken reading the whole partition as a consumer does."""
    started = time.process_time()
    offset = served = 0
    while offset < plog.log_end_offset:
        found = plog.read(offset, FETCH_BYTES)
        if found is None:
            break
        served += len(found.read())
        offset = found.end_offset
    return served, time.process_time() - started


def crc_files(plog: PartitionLog) -> tuple[int, float]:
    started = time.process_time()
    total = 0
    for segment in plog.segments:
        with open(segment.log_path, "rb") as f:
            while chunk := f.read(8 * 1024 * 1024):
                crc32c(chunk)
                total += len(chunk)
    return total, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--batch-kib", type=int, default=16)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="tierlog-read-checks-", dir=args.dir)
    try:
        config = LogConfig.build({}, {"segment.bytes": SEGMENT_BYTES})
        plog = PartitionLog.open(folder, "t", 0, config, clean=True)
        records = max(1, args.batch_kib)  # 1 KiB records
        batch = build_batch([Record(b"k%d" % i, os.urandom(1000), (), 1_700_000_000_000) for i in range(records)])
        for _ in range(args.mib * 1024 * 1024 // len(batch)):
            plog.append(batch)
        plog.close()
        plog = PartitionLog.open(folder, "t", 0, config, clean=True)  # nothing checked yet
        crc_bytes, crc_cpu = crc_files(plog)  # also brings every file into the page cache
        first_bytes, first_cpu = read_partition(plog)
        second_bytes, second_cpu = read_partition(plog)
        assert first_bytes == second_bytes == crc_bytes, (first_bytes, second_bytes, crc_bytes)
        gb = first_bytes / GB
        print(f"{first_bytes / 2**20:.0f} MiB in {len(batch)}-byte batches, {len(plog.segments)} segments")
        print(f"first read (checks every batch): {first_cpu / gb:.3f} CPU-s/GB")
        print(f"second read (checked already):   {second_cpu / gb:.3f} CPU-s/GB")
        print(f"the checks' cost:                {(first_cpu - second_cpu) / gb:.3f} CPU-s/GB")
        print(f"one CRC-32C over the files:      {crc_cpu / gb:.3f} CPU-s/GB (read included)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
