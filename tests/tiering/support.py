"""Helpers of the tiering tests: logs with small segments, producing, and reading a
partition back across both tiers the way a reader would see it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from hotlog.batch import parse_header
from hotlog.log import PartitionLog
from hotlog.manager import LogManager
from hotlog.records import Record, build_batch, decode_batches
from tiering.manager import TieringManager
from tiering.store import ObjectStore

SMALL_SEGMENTS = {"segment.bytes": 4096, "index.interval.bytes": 512}


def open_logs(path: Any, topic: str = "t", partitions: int = 1, configs: Mapping[str, Any] | None = None,
              *, create: bool = True) -> LogManager:
    logs = LogManager(str(path)).open()
    if create:
        logs.create_topic(topic, partitions, {**SMALL_SEGMENTS, **(configs or {})})
    return logs


def produce(plog: PartitionLog, batches: int, *, records: int = 4, value_size: int = 200,
            timestamp: int | None = None, tag: str = "v") -> list[tuple[int, str]]:
    """Append `batches` batches and fsync; returns (base offset, digest) of each."""
    ts = int(time.time() * 1000) if timestamp is None else timestamp
    acked = []
    for i in range(batches):
        batch = build_batch(
            [Record(b"k%d" % j, f"{tag}-{i}-{j}".encode().ljust(value_size, b"."), (), ts + j) for j in range(records)]
        )
        info = plog.append(batch)
        acked.append((info.base_offset, digest(batch)))
    plog.flush()
    return acked


def seal_active(plog: PartitionLog) -> None:
    """Roll the active segment and fsync it, so it may be uploaded."""
    plog.roll()
    plog.flush()


def digest(batch: bytes) -> str:
    """Hash of a batch without its baseOffset (which the log rewrites)."""
    return hashlib.sha256(batch[8:]).hexdigest()


def split(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos + 61 <= len(data):
        header = parse_header(data, pos)
        out.append(data[pos : pos + header.size])
        pos += header.size
    assert pos == len(data), "not whole batches"
    return out


async def read_both_tiers(manager: TieringManager, store: ObjectStore, topic: str,
                          partition: int) -> list[tuple[int, str]]:
    """(base offset, digest) of every batch of the partition: the committed remote segments
    (fetched and CRC-checked by decoding), then the local log past the remote end. Asserts
    the remote segments are contiguous and the local log starts no later than the remote end."""
    batches: list[tuple[int, str]] = []
    expected = None
    for segment in manager.remote_segments(topic, partition):
        assert expected is None or segment.base_offset == expected, "a hole between remote segments"
        data = await store.get(segment.key("log"))
        assert len(data) == segment.size_bytes
        list(decode_batches(data))  # validates every batch's CRC
        for batch in split(data):
            batches.append((parse_header(batch).base_offset, digest(batch)))
        expected = segment.next_offset
    plog = manager.logs.log(topic, partition)
    start = plog.log_start_offset
    if expected is not None:
        assert start <= expected, f"offsets {expected}..{start} are in neither tier"
        start = expected
    offset = start
    while offset < plog.log_end_offset:
        found = plog.read(offset, 1 << 20)
        if found is None:
            break
        chunk = split(found.read())
        batches += [(parse_header(b).base_offset, digest(b)) for b in chunk]
        offset = parse_header(chunk[-1]).next_offset
    return batches


@contextlib.asynccontextmanager
async def opened(logs: LogManager, store: ObjectStore, **options: Any) -> AsyncIterator[TieringManager]:
    """A tiering manager over `logs` and `store`, opened; closed (store too) on the way out."""
    manager = TieringManager(logs, store, **options)
    try:
        await manager.open()
        yield manager
    finally:
        await manager.close()
        await store.close()


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def killed_after_ready(module: str, args: list[str], out_path: str, seconds: float) -> list[str]:
    """Run `python -m module *args` (its stdout to `out_path`), SIGKILL it `seconds` after it
    prints `ready`; returns the whole lines it printed (a line cut by the kill is not one)."""
    with open(out_path, "wb") as out:
        child = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, stdout=out,
                                 stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                with open(out_path, "rb") as f:
                    if b"ready\n" in f.read(4096):
                        break
                assert child.poll() is None, f"the child exited with {child.returncode} before it was ready"
                assert time.monotonic() < deadline, "the child did not get ready"
                time.sleep(0.02)
            time.sleep(seconds)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    with open(out_path, "rb") as f:
        return f.read().decode().split("\n")[:-1]
