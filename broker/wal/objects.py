"""One WAL object: a small JSON index, then the batches it holds, back to back, with the
offsets the log gave them.

    "TLWAL001" | index length (uint32, big-endian) | index (JSON, UTF-8) | batches

The index names the broker and the object's sequence number (its order among the
broker's objects), the topics (name, id, partitions, config overrides: enough to make a
topic the bucket has no record of yet) and one entry per partition range: topic id,
partition, first offset, next offset, byte position and size in the object, CRC-32C of
those bytes. An object is written by one PUT: it is in the bucket whole or not at all,
so the PUT is the commit point. Keys sort by sequence:

    <prefix>/_wal/<broker id>/<sequence, 20 digits>-<uuid>.wal
"""

from __future__ import annotations

import json
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from crc32c import crc32c

from hotlog.errors import CorruptRecordError

WAL_PREFIX = "_wal/"
MAGIC = b"TLWAL001"
_LENGTH = struct.Struct(">I")
VERSION = 1


def broker_prefix(broker_id: int) -> str:
    return f"{WAL_PREFIX}{broker_id}/"


def object_key(broker_id: int, sequence: int) -> str:
    return f"{broker_prefix(broker_id)}{sequence:020d}-{uuid.uuid4()}.wal"


class WalTopic(NamedTuple):
    """A topic as a WAL object describes it."""

    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: dict[str, Any]


class WalEntry(NamedTuple):
    """One partition's batches in an object: offsets [base_offset, next_offset)."""

    topic_id: uuid.UUID
    partition: int
    base_offset: int
    next_offset: int
    position: int  # in the object's batch area
    size: int
    crc: int


@dataclass
class WalObject:
    """A decoded object (or one being built): its index and its batch bytes."""

    broker_id: int
    sequence: int
    key: str
    created_ms: int
    topics: dict[uuid.UUID, WalTopic] = field(default_factory=dict)
    entries: list[WalEntry] = field(default_factory=list)
    data: bytes = b""

    def batches(self, entry: WalEntry) -> memoryview:
        return memoryview(self.data)[entry.position: entry.position + entry.size]

    def encode_index(self) -> bytes:
        index = {
            "version": VERSION, "broker_id": self.broker_id, "sequence": self.sequence, "created_ms": self.created_ms,
            "topics": [{"name": t.name, "topic_id": str(t.topic_id), "partitions": t.partitions, "configs": t.configs}
                       for t in self.topics.values()],
            "entries": [[str(e.topic_id), e.partition, e.base_offset, e.next_offset, e.position, e.size, e.crc]
                        for e in self.entries],
        }
        text = json.dumps(index, separators=(",", ":")).encode()
        return MAGIC + _LENGTH.pack(len(text)) + text


def decode(key: str, raw: bytes) -> WalObject:
    """Parse and check an object read back from the bucket; raises CorruptRecordError."""
    head = len(MAGIC) + _LENGTH.size
    if len(raw) < head or raw[: len(MAGIC)] != MAGIC:
        raise CorruptRecordError(f"{key}: not a WAL object")
    (length,) = _LENGTH.unpack_from(raw, len(MAGIC))
    try:
        index = json.loads(raw[head: head + length])
        found = WalObject(
            index["broker_id"], index["sequence"], key, index["created_ms"],
            {uuid.UUID(t["topic_id"]): WalTopic(t["name"], uuid.UUID(t["topic_id"]), t["partitions"], t["configs"])
             for t in index["topics"]},
            [WalEntry(uuid.UUID(e[0]), *e[1:]) for e in index["entries"]],
            raw[head + length:],
        )
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptRecordError(f"{key}: unreadable WAL index: {exc}") from None
    for entry in found.entries:
        if entry.position + entry.size > len(found.data) or crc32c(found.batches(entry)) != entry.crc:
            raise CorruptRecordError(f"{key}: the batches of {entry.topic_id}-{entry.partition} at "
                                     f"{entry.base_offset} fail their check")
    return found
