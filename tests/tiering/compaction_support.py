"""Helpers of the tests of compaction in the bucket: a keyed history produced into a
tiered compacted log, and what the bucket's segments hold, record by record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import NamedTuple

from hotlog.log import PartitionLog
from hotlog.records import Record, build_batch, decode_batches
from tiering.manager import TieringManager
from tiering.store import ObjectStore
from tiering.wrappers import DelegatingStore

# Tiered, compacted, cleaned whenever anything is dirty; tombstones expire at once.
TIERED_TABLE = {"cleanup.policy": "compact", "remote.storage.enable": True, "min.cleanable.dirty.ratio": 0.0,
                "delete.retention.ms": 0, "segment.bytes": 2048, "index.interval.bytes": 256}


class Entry(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None


def produce_history(plog: PartitionLog, keys: int, versions: int, *, tag: str = "v", per_batch: int = 5,
                    tombstone_key: int | None = 0) -> dict[bytes, Entry]:
    """Every key `versions` times (the last version of `tombstone_key` a tombstone), in
    batches of `per_batch`, fsynced; returns each key's last record."""
    now = int(time.time() * 1000)
    last: dict[bytes, Entry] = {}
    pending: list[Record] = []
    for version in range(versions):
        for k in range(keys):
            key = b"key%d" % k
            value = None if (k == tombstone_key and version == versions - 1) else f"{tag}{k}-{version}".encode() * 8
            pending.append(Record(key, value, (), now))
            if len(pending) == per_batch:
                _append(plog, pending, last)
    if pending:
        _append(plog, pending, last)
    plog.flush()
    return last


def _append(plog: PartitionLog, records: list[Record], last: dict[bytes, Entry]) -> None:
    info = plog.append(build_batch(records))
    for i, record in enumerate(records):
        assert record.key is not None
        last[record.key] = Entry(info.base_offset + i, record.key, record.value)
    records.clear()


async def remote_entries(manager: TieringManager, store: ObjectStore, topic: str = "t",
                         partition: int = 0) -> list[Entry]:
    """Every record of the committed remote segments, in order; asserts that they are
    contiguous and that offsets increase."""
    entries: list[Entry] = []
    expected = None
    for segment in manager.remote_segments(topic, partition):
        assert expected is None or segment.base_offset == expected, "a hole between remote segments"
        data = await store.get(segment.key("log"))
        assert len(data) == segment.size_bytes
        entries += [Entry(r.offset, r.key, r.value) for b in decode_batches(data) for r in b.records]
        expected = segment.next_offset
    offsets = [e.offset for e in entries]
    assert offsets == sorted(set(offsets)), "an offset repeats or goes back"
    return entries


def assert_compacted(entries: list[Entry], last: dict[bytes, Entry], *, below: int) -> None:
    """Below offset `below` each key appears once, as its last record (a tombstone may be
    gone); at or above it nothing is lost either: the last records are all there."""
    seen: dict[bytes | None, list[Entry]] = {}
    for entry in entries:
        seen.setdefault(entry.key, []).append(entry)
    for key, entry in last.items():
        mine = seen.get(key, [])
        if entry.value is None:
            assert not mine or mine[-1] == entry, (key, mine[-3:])
        else:
            assert mine and mine[-1] == entry, (key, mine[-3:])
        assert len([e for e in mine if e.offset < below]) <= 1, f"{key!r} kept twice below {below}"


class GatedStore(DelegatingStore):
    """GETs and PUTs for which `gated(operation, key)` holds wait until `gate` is set."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.gated: Callable[[str, str], bool] = lambda operation, key: False
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def _pass(self, operation: str, key: str) -> None:
        if self.gated(operation, key):
            self.waiting.set()
            await self.gate.wait()

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        await self._pass("get", key)
        return await self.inner.get(key, start, end)

    async def put(self, key: str, data: bytes) -> None:
        await self._pass("put", key)
        await self.inner.put(key, data)
