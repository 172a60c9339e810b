"""`tierlog replay`: a range of a topic written to a JSON lines or Parquet file, with a
progress bar on stderr. The file appears only when the replay is complete."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .client import Admin, Consumer, Message, Start

POLL_SECONDS = 1.0
STALL_SECONDS = 10.0  # no progress for this long (an open transaction holds the range): give up
PARQUET_ROW_GROUP = 64 * 1024

PARQUET_SCHEMA = pa.schema([
    ("partition", pa.int32()),
    ("offset", pa.int64()),
    ("timestamp", pa.timestamp("ms", tz="UTC")),
    ("key", pa.binary()),
    ("value", pa.binary()),
    ("headers", pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
])


class ReplayError(Exception):
    """A replay that cannot be done as asked: a bad output name, or a range that never fills."""


def _put_bytes(out: dict[str, Any], name: str, data: bytes | None) -> None:
    """Text when the bytes are UTF-8 (the usual case), else base64 under `<name>_base64`."""
    if data is None:
        out[name] = None
        return
    try:
        out[name] = data.decode()
    except UnicodeDecodeError:
        out[f"{name}_base64"] = base64.b64encode(data).decode()


def message_json(message: Message) -> dict[str, Any]:
    """A record as JSON: partition, offset, timestamp (ms), key, value, headers."""
    out: dict[str, Any] = {"partition": message.partition, "offset": message.offset,
                           "timestamp": message.timestamp_ms}
    _put_bytes(out, "key", message.key)
    _put_bytes(out, "value", message.value)
    headers = []
    for name, value in message.headers:
        header: dict[str, Any] = {"key": name}
        _put_bytes(header, "value", value)
        headers.append(header)
    out["headers"] = headers
    return out


class Writer(Protocol):
    def write(self, messages: Sequence[Message]) -> None: ...
    def close(self) -> None: ...


class JsonLinesWriter:
    def __init__(self, path: str) -> None:
        self.file = open(path, "w", encoding="utf-8")

    def write(self, messages: Sequence[Message]) -> None:
        self.file.write("".join(json.dumps(message_json(m), ensure_ascii=False) + "\n" for m in messages))

    def close(self) -> None:
        self.file.close()


class ParquetWriter:
    def __init__(self, path: str) -> None:
        self.writer = pq.ParquetWriter(path, PARQUET_SCHEMA)
        self.pending: list[Message] = []

    def write(self, messages: Sequence[Message]) -> None:
        self.pending.extend(messages)
        if len(self.pending) >= PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        rows = self.pending
        self.pending = []
        self.writer.write_table(pa.table({
            "partition": [m.partition for m in rows],
            "offset": [m.offset for m in rows],
            "timestamp": [m.timestamp_ms for m in rows],
            "key": [m.key for m in rows],
            "value": [m.value for m in rows],
            "headers": [[{"key": k, "value": v} for k, v in m.headers] for m in rows],
        }, schema=PARQUET_SCHEMA))

    def close(self) -> None:
        if self.pending:
            self._flush()
        self.writer.close()


WRITERS: dict[str, type[JsonLinesWriter] | type[ParquetWriter]] = {
    ".jsonl": JsonLinesWriter, ".ndjson": JsonLinesWriter, ".json": JsonLinesWriter,
    ".parquet": ParquetWriter, ".pq": ParquetWriter,
}


def writer_for(path: str) -> type[JsonLinesWriter] | type[ParquetWriter]:
    writer = WRITERS.get(os.path.splitext(path)[1].lower())
    if writer is None:
        raise ReplayError(f"--out {path!r}: name a .jsonl (JSON lines) or .parquet file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ReplayError(f"--out {path!r}: folder {folder} does not exist")
    return writer


def _end_offsets(admin: Admin, topic: str, end: Start, partitions: list[int]) -> dict[int, int]:
    """Where the range stops, per partition (exclusive), never past today's log end."""
    latest = admin.list_offsets(topic, "latest", partitions)
    if end in ("latest", "end"):
        return latest
    found = admin.list_offsets(topic, end, partitions)
    return {p: latest[p] if found[p] < 0 else min(found[p], latest[p]) for p in partitions}


def _progress() -> Progress:
    return Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(file=sys.stderr), transient=False)


def replay(server: str, topic: str, start: Start, end: Start, out_path: str, partitions: Sequence[int]) -> int:
    """Write records [start, end) of the topic's partitions to `out_path`; returns the count."""
    writer_class = writer_for(out_path)
    with Admin(server) as admin, Consumer(topic, server, start=start, partitions=partitions) as consumer:
        starts = dict(consumer.positions)
        ends = _end_offsets(admin, topic, end, list(starts))
        for partition, offset in starts.items():
            if offset >= ends[partition]:
                consumer.pause(partition)
        partial = f"{out_path}.partial"
        writer = writer_class(partial)
        written = 0
        try:
            with _progress() as progress:
                task = progress.add_task("replay", total=sum(max(0, ends[p] - starts[p]) for p in starts))
                stalled = 0.0
                while consumer.positions:
                    before = dict(consumer.positions)
                    messages = [m for m in consumer.poll(POLL_SECONDS) if m.offset < ends[m.partition]]
                    writer.write(messages)
                    written += len(messages)
                    moved = 0
                    for partition, offset in list(consumer.positions.items()):
                        moved += min(offset, ends[partition]) - min(before[partition], ends[partition])
                        if offset >= ends[partition]:
                            consumer.pause(partition)
                    progress.advance(task, moved)
                    stalled = 0.0 if moved else stalled + POLL_SECONDS
                    if stalled >= STALL_SECONDS:
                        raise ReplayError(f"no records past {before} for {STALL_SECONDS:.0f} s "
                                          f"(an open transaction?); stopping")
            writer.close()
            os.replace(partial, out_path)
        except BaseException:
            writer.close()
            os.unlink(partial)
            raise
    return written
