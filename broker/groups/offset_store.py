"""Committed offsets kept in the internal topic `__consumer_offsets`, as Kafka keeps them.

Each commit is a record keyed like Kafka's OffsetCommitKey (version 1: group, topic,
partition) with an OffsetCommitValue (version 3: offset, leader epoch, metadata, commit
timestamp); a deleted group or topic leaves tombstones (null values). A group's records
go to partition abs(javaHashCode(group)) % partitions, as in Kafka. The topic is read back
at start-up, so offsets survive restarts; a record that cannot be parsed there is logged,
counted and skipped (only the broker writes the topic, but a disk or an older version may
still hand us one). The topic is compacted (unless the WAL tiers it: see
internal_topics), so start-up replays about one record per group, topic and partition. TxnOffsetCommit writes its records as
a transactional batch of the producer; they count once its COMMIT marker follows.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from fetch.reader import Reader
from hotlog.errors import CorruptRecordError
from hotlog.manager import LogManager
from hotlog.records import Record, build_batch

from ..durability import Durability
from ..internal_topics import OFFSETS_TOPIC, control_marker_commits, partitions_of, replay, skipped

OFFSETS_TOPIC_CONFIGS = {"retention.ms": "-1"}
OFFSET_KEY_VERSION = 1
OFFSET_VALUE_VERSION = 3
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_VALUE_HEAD = struct.Struct(">hqi")  # version, offset, leader epoch
_I64 = struct.Struct(">q")


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class ProducerEpoch(NamedTuple):
    """A producer session: its id and epoch."""

    producer_id: int
    producer_epoch: int


class OffsetKey(NamedTuple):
    """What an offset commit record is about."""

    group_id: str
    topic: str
    partition: int


@dataclass(frozen=True)
class CommittedOffset:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units), as a signed 32-bit int."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_group(group_id: str, partitions: int) -> int:
    return (java_string_hash(group_id) & 0x7FFFFFFF) % partitions


def string_bytes(text: str) -> bytes:
    raw = text.encode()
    return _I16.pack(len(raw)) + raw


def read_string(buf: bytes, pos: int) -> tuple[str, int]:
    (length,) = _I16.unpack_from(buf, pos)
    pos += 2
    if length < 0 or pos + length > len(buf):
        raise CorruptRecordError("bad string length in an internal topic record")
    return buf[pos : pos + length].decode(), pos + length


def encode_key(group_id: str, topic: str, partition: int) -> bytes:
    return _I16.pack(OFFSET_KEY_VERSION) + string_bytes(group_id) + string_bytes(topic) + _I32.pack(partition)


def encode_value(committed: CommittedOffset) -> bytes:
    return (_VALUE_HEAD.pack(OFFSET_VALUE_VERSION, committed.offset, committed.leader_epoch)
            + string_bytes(committed.metadata) + _I64.pack(committed.commit_timestamp))


def decode_key(key: bytes) -> OffsetKey | None:
    """The group, topic and partition of an offset commit key; None for other record kinds."""
    try:
        (version,) = _I16.unpack_from(key, 0)
        if version not in (0, 1):  # 2 is group metadata, which tierlog does not keep
            return None
        group_id, pos = read_string(key, 2)
        topic, pos = read_string(key, pos)
        (partition,) = _I32.unpack_from(key, pos)
    except (struct.error, UnicodeDecodeError):
        raise CorruptRecordError("truncated or malformed offsets record key") from None
    return OffsetKey(group_id, topic, partition)


def decode_value(value: bytes) -> CommittedOffset:
    try:
        version, offset, leader_epoch = _VALUE_HEAD.unpack_from(value, 0)
        if version != OFFSET_VALUE_VERSION:
            raise CorruptRecordError(f"offsets record value version {version} is not {OFFSET_VALUE_VERSION}")
        metadata, pos = read_string(value, _VALUE_HEAD.size)
        (timestamp,) = _I64.unpack_from(value, pos)
    except (struct.error, UnicodeDecodeError):
        raise CorruptRecordError("truncated or malformed offsets record value") from None
    return CommittedOffset(offset, leader_epoch, metadata, timestamp)


class OffsetStore:
    def __init__(self, logs: LogManager, reader: Reader, default_partitions: int, durability: Durability, *,
                 segment_bytes: int = 256 * 1024) -> None:
        self.segment_bytes = segment_bytes  # offsets.topic.segment.bytes, when the topic is made
        self.logs = logs
        self.reader = reader
        self.default_partitions = default_partitions
        self.durability = durability

    def _partitions(self) -> int:
        return partitions_of(self.logs, OFFSETS_TOPIC, self.default_partitions,
                             {**OFFSETS_TOPIC_CONFIGS, "segment.bytes": self.segment_bytes})

    def partition_for(self, group_id: str) -> int:
        return partition_for_group(group_id, self._partitions())

    async def write(self, group_id: str, offsets: Mapping[TopicPartition, CommittedOffset | None],
                    producer: ProducerEpoch | None = None) -> None:
        """Append the commits (None: a tombstone) as one batch and wait until it is fsynced.
        With `producer` (id, epoch) the batch is part of that producer's transaction: it
        counts once the transaction's COMMIT marker follows it."""
        await self.append(group_id, offsets, producer)()

    def append(self, group_id: str, offsets: Mapping[TopicPartition, CommittedOffset | None],
               producer: ProducerEpoch | None = None) -> Callable[[], Awaitable[None]]:
        """`write` in two steps: the append, here and now (raising if refused), and the
        returned wait for its fsync."""
        records = [
            Record(encode_key(group_id, topic, partition), None if c is None else encode_value(c))
            for (topic, partition), c in offsets.items()
        ]
        if not records:
            return _nothing
        plog = self.logs.log(OFFSETS_TOPIC, self.partition_for(group_id))
        producer_id, producer_epoch = producer or (-1, -1)
        batch = build_batch(records, producer_id=producer_id, producer_epoch=producer_epoch,
                            transactional=producer is not None)
        self.durability.check_room(plog)
        info = plog.append(batch)
        self.durability.appended(plog, info, batch)
        return lambda: self.durability.wait(plog, info.last_offset + 1)

    async def load(self) -> tuple[dict[str, dict[TopicPartition, CommittedOffset]], dict[int, list[Record]]]:
        """Every group's latest committed offsets, replayed from the topic, and the offset
        records of transactions still open (by producer id)."""
        groups: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        # By (partition, producer): a marker ends the producer's records in its own partition
        # only; partitions replay one after another, not in the order they were written.
        pending: dict[tuple[int, int], list[Record]] = {}
        async for partition, batch in replay(self.logs, self.reader, OFFSETS_TOPIC):
            header = batch.header
            if header.is_control:
                committed = pending.pop((partition, header.producer_id), [])
                if control_marker_commits(batch):
                    apply_records(groups, committed)
            elif header.is_transactional:
                pending.setdefault((partition, header.producer_id), []).extend(
                    r for r in batch.records if r.key is not None)
            else:
                apply_records(groups, (r for r in batch.records if r.key is not None))
        still_open: dict[int, list[Record]] = {}
        for (_, producer_id), records in pending.items():
            still_open.setdefault(producer_id, []).extend(records)
        return groups, still_open


def apply_records(groups: dict[str, dict[TopicPartition, CommittedOffset]], records: Iterable[Record]) -> None:
    """Fold commit records into the groups' offsets; records that cannot be parsed are
    logged, counted and skipped."""
    for record in records:
        assert record.key is not None
        try:
            key = decode_key(record.key)
            committed = None if key is None or record.value is None else decode_value(record.value)
        except CorruptRecordError as exc:
            skipped(OFFSETS_TOPIC, record, exc)
            continue
        if key is None:
            continue
        offsets = groups.setdefault(key.group_id, {})
        tp = TopicPartition(key.topic, key.partition)
        if committed is None:
            offsets.pop(tp, None)
            if not offsets:
                del groups[key.group_id]
        else:
            offsets[tp] = committed


async def _nothing() -> None:
    """The fsync wait of an append that wrote nothing."""
