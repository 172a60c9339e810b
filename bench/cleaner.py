"""What a clean of a compacted log costs: records/s on one core, against a raw sequential
copy of the same segment bytes in the same run, and the clean's resident memory against
log.cleaner.dedupe.buffer.size.

    python bench/cleaner.py [--records 200000] [--sizes 1024,100] [--live 0.1] [--dedupe-mib 4,16,64]

For each record size, writes `--records` records in uncompressed batches of 100 into a
compacted partition of 64 MiB segments, keys drawn from `--live` * records keys (so about
that share of the records is the last of its key), and seals it. Then, pinned to one
core: the raw copy (read 1 MiB at a time, write, fsync) of every sealed segment, and one
clean. The memory figures come from a child process per dedupe buffer size: its peak
resident set during a clean minus its resident set before it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from hotlog.cleaner import CleanerConfig, LogCleaner  # noqa: E402
from hotlog.config import LogConfig  # noqa: E402
from hotlog.durable import fsync_path  # noqa: E402
from hotlog.log import PartitionLog  # noqa: E402
from hotlog.records import Record, build_batch  # noqa: E402

SEGMENT_BYTES = 64 * 1024 * 1024
CONFIGS = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": 0.0, "segment.bytes": SEGMENT_BYTES,
           "remote.storage.enable": False}
COPY_CHUNK = 1024 * 1024


def open_log(folder: str) -> PartitionLog:
    return PartitionLog.open(folder, "bench", 0, LogConfig.build({}, CONFIGS), clean=True)


def write_log(folder: str, records: int, size: int, live: float) -> None:
    rng = random.Random(1)
    keys = max(1, int(records * live))
    value = os.urandom(size - 12)
    plog = open_log(folder)
    now = int(time.time() * 1000)
    for start in range(0, records, 100):
        plog.append(build_batch([Record(b"key-%07d" % rng.randrange(keys), value, (), now)
                                 for _ in range(min(100, records - start))]))
    plog.seal_active_segment()
    plog.close()


def raw_copy(folder: str) -> float:
    """Seconds to copy every sealed segment's bytes to a new file, fsynced."""
    logs = sorted(n for n in os.listdir(folder) if n.endswith(".log"))[:-1]  # not the active one
    started = time.perf_counter()
    for name in logs:
        target = os.path.join(folder, name + ".copy")
        with open(os.path.join(folder, name), "rb") as src, open(target, "wb") as dst:
            while chunk := src.read(COPY_CHUNK):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        fsync_path(folder)
    elapsed = time.perf_counter() - started
    for name in logs:
        os.unlink(os.path.join(folder, name + ".copy"))
    return elapsed


def memory_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (the peak) of this process: unlike ru_maxrss, VmHWM is not
    inherited from the parent that started the process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def clean_memory(folder: str, dedupe_mib: int) -> None:
    """The child: clean `folder` with that buffer and print the resident memory it took."""
    plog = open_log(folder)
    cleaner = LogCleaner(CleanerConfig(dedupe_buffer_size=dedupe_mib * 1024 * 1024))
    before = memory_kib("VmRSS")
    result = cleaner.clean(plog)
    assert result is not None
    print(f"{(memory_kib('VmHWM') - before) / 1024:.1f} {result.stats.passes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--sizes", default="1024,100", help="record sizes in bytes (key and value)")
    parser.add_argument("--live", type=float, default=0.1)
    parser.add_argument("--dedupe-mib", default="4,16,64")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        clean_memory(args.child[0], int(args.child[1]))
        return
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    for size in (int(s) for s in args.sizes.split(",")):
        folder = tempfile.mkdtemp(prefix="cleaner-bench-")
        try:
            write_log(folder, args.records, size, args.live)
            data = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder) if n.endswith(".log"))
            copy = raw_copy(folder)
            pristine = folder + "-pristine"
            shutil.copytree(folder, pristine)
            plog = open_log(folder)
            started = time.perf_counter()
            result = LogCleaner().clean(plog)
            elapsed = time.perf_counter() - started
            assert result is not None
            stats = result.stats
            print(f"{size} B records: {args.records} records, {data / 2**20:.0f} MiB, {stats.records_kept} kept "
                  f"({stats.bytes_written / 2**20:.1f} MiB)")
            print(f"  raw copy: {copy:.2f} s, {args.records / copy:,.0f} records/s, {data / copy / 2**20:.0f} MiB/s")
            print(f"  clean:    {elapsed:.2f} s, {args.records / elapsed:,.0f} records/s, "
                  f"{data / elapsed / 2**20:.0f} MiB/s: {copy / elapsed:.2f} of the copy")
            plog.close()
            for mib in (int(m) for m in args.dedupe_mib.split(",")):
                trial = folder + f"-{mib}"
                shutil.copytree(pristine, trial)
                out = subprocess.run([sys.executable, __file__, "--child", trial, str(mib)], check=True,
                                     capture_output=True, text=True).stdout.split()
                print(f"  dedupe buffer {mib} MiB: clean's resident memory +{out[0]} MiB, {out[1]} passes")
                shutil.rmtree(trial)
            shutil.rmtree(pristine)
        finally:
            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
