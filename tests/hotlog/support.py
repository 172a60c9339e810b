"""Helpers shared by the hotlog tests: build batches, open logs, read a log back whole,
and look at the files on disk the way a test wants to compare them."""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from hotlog.batch import BatchPosition, parse_header
from hotlog.config import LogConfig
from hotlog.log import PartitionLog
from hotlog.records import NONE, Record, build_batch

OFFSET_ENTRY = struct.Struct(">ii")  # Kafka .index: relative offset, file position
TIME_ENTRY = struct.Struct(">qi")  # Kafka .timeindex: timestamp, relative offset
BASE_TS = 1_700_000_000_000


def make_batch(
    count: int = 1, *, value_size: int = 10, tag: bytes = b"v", timestamp: int = BASE_TS,
    compression: int = NONE, **kwargs: Any,
) -> bytes:
    """A batch of `count` records; record i has timestamp `timestamp + i`."""
    records = [
        Record(b"k%d" % i, (tag + b"-%d-" % i).ljust(value_size, b"."), (("h", b"%d" % i),), timestamp + i)
        for i in range(count)
    ]
    return build_batch(records, compression=compression, **kwargs)


def open_log(path: Any, configs: Mapping[str, Any] | None = None, *, clean: bool = True,
             recovery_point: int = 0) -> PartitionLog:
    return PartitionLog.open(str(path), "t", 0, LogConfig.build({}, dict(configs or {})),
                             clean=clean, recovery_point=recovery_point)


def split_batches(data: bytes) -> list[BatchPosition]:
    """Each whole batch in `data`, without validating."""
    out, pos = [], 0
    while pos + 61 <= len(data):
        header = parse_header(data, pos)
        if pos + header.size > len(data):
            break
        out.append(BatchPosition(pos, header))
        pos += header.size
    return out


def read_all(plog: PartitionLog, start: int | None = None, max_bytes: int = 1 << 20) -> list[bytes]:
    """Every batch from `start` (default: the log start) to the end, as raw bytes, by
    looping read(offset, max_bytes) the way a consumer would."""
    offset = plog.log_start_offset if start is None else start
    batches: list[bytes] = []
    for _ in range(1_000_000):
        found = plog.read(offset, max_bytes)
        if found is None:
            return batches
        data = found.read()
        assert len(data) == found.size
        parts = split_batches(data)
        assert parts and sum(h.size for _, h in parts) == len(data), "a read returned a partial batch"
        for pos, header in parts:
            batches.append(data[pos : pos + header.size])
        offset = parts[-1][1].next_offset
    raise AssertionError("read loop did not reach the end")


def payload_digest(batch: bytes) -> str:
    """Hash of a batch without its baseOffset (the part the log rewrites)."""
    return hashlib.sha256(batch[8:]).hexdigest()


def dir_state(directory: Any) -> dict[str, int]:
    """File name -> size of everything in a folder."""
    return {name: os.path.getsize(os.path.join(directory, name)) for name in sorted(os.listdir(directory))}


def offset_index_entries(path: str) -> list[tuple[int, int]]:
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) % OFFSET_ENTRY.size == 0, f"{path}: {len(data)} bytes is not whole 8-byte entries"
    return list(OFFSET_ENTRY.iter_unpack(data))


def time_index_entries(path: str) -> list[tuple[int, int]]:
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) % TIME_ENTRY.size == 0, f"{path}: {len(data)} bytes is not whole 12-byte entries"
    return list(TIME_ENTRY.iter_unpack(data))


def check_index_files(log_path: str, base_offset: int) -> tuple[int, int]:
    """Parse a segment's .index and .timeindex with struct and check each entry against the
    .log: an offset entry points at the start of the batch whose last offset it names; a
    time entry names the last offset of a batch whose max timestamp is that timestamp.
    Returns the entry counts."""
    with open(log_path, "rb") as f:
        data = f.read()
    batches = split_batches(data)
    assert sum(h.size for _, h in batches) == len(data), f"{log_path} is not whole batches"
    by_position = {pos: h for pos, h in batches}
    by_last_offset = {h.last_offset: h for _, h in batches}
    stem = log_path[: -len(".log")]
    offsets = offset_index_entries(stem + ".index")
    for relative, position in offsets:
        assert position in by_position, f"index entry ({relative}, {position}) is not a batch start"
        assert by_position[position].last_offset == base_offset + relative
    assert [r for r, _ in offsets] == sorted({r for r, _ in offsets}), "offset index not strictly increasing"
    times = time_index_entries(stem + ".timeindex")
    for timestamp, relative in times:
        header = by_last_offset.get(base_offset + relative)
        assert header is not None, f"time index entry ({timestamp}, {relative}) is not a batch's last offset"
        assert header.max_timestamp == timestamp
        assert all(h.max_timestamp <= timestamp for _, h in batches if h.last_offset <= header.last_offset)
    assert [t for t, _ in times] == sorted({t for t, _ in times}), "time index not strictly increasing"
    return len(offsets), len(times)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def killed_after(script: str, args: list[str], seconds: float) -> tuple[int, bytes]:
    """Run a test writer script with this repository importable, SIGKILL it `seconds` after
    it prints `ready` (its imports take a loaded machine longer than some kill times); its
    return code and what it printed."""
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    try:
        ready = proc.stdout.readline()
        assert ready == b"ready\n", f"the writer exited with {proc.wait()} before it was ready"
        time.sleep(seconds)
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
        out = ready + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out
