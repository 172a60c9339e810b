"""Transaction state kept in the internal topic `__transaction_state`, as Kafka keeps it.

Each state change of a transactional id is a record keyed like Kafka's TransactionLogKey
(version 0: transactional id) with a TransactionLogValue (version 0: producer id, epoch,
timeout, state, the partitions of the transaction, last update and start timestamps).
An id's records go to partition abs(javaHashCode(id)) % partitions. At start-up the
topic is read back through the fetch layer; the last record of each id is its state.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from fetch.reader import Reader
from hotlog.errors import CorruptRecordError
from hotlog.manager import LogManager
from hotlog.records import Record, build_batch

from ..durability import Durability
from ..groups.offset_store import TopicPartition, partition_for_group, read_string, string_bytes
from ..internal_topics import TXN_STATE_TOPIC, partitions_of, replay, skipped

TXN_STATE_TOPIC_CONFIGS = {"retention.ms": "-1"}
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_VALUE_HEAD = struct.Struct(">hqhib")  # version, producer id, epoch, timeout ms, state
_TIMES = struct.Struct(">qq")  # last update, start


class TxnState(IntEnum):
    """Kafka's TransactionState codes."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5


@dataclass
class TxnMetadata:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState = TxnState.EMPTY
    partitions: set[TopicPartition] = field(default_factory=set)
    start_ms: int = -1
    last_update_ms: int = -1


def encode_value(meta: TxnMetadata) -> bytes:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(meta.partitions):
        by_topic.setdefault(topic, []).append(partition)
    parts = b"".join(
        string_bytes(topic) + _I32.pack(len(ps)) + b"".join(_I32.pack(p) for p in ps) for topic, ps in by_topic.items()
    )
    return (_VALUE_HEAD.pack(0, meta.producer_id, meta.producer_epoch, meta.timeout_ms, meta.state)
            + _I32.pack(len(by_topic)) + parts + _TIMES.pack(meta.last_update_ms, meta.start_ms))


def decode(key: bytes, value: bytes) -> TxnMetadata:
    try:
        key_version, = _I16.unpack_from(key, 0)
        value_version, producer_id, epoch, timeout_ms, state = _VALUE_HEAD.unpack_from(value, 0)
        if key_version != 0 or value_version != 0:
            raise CorruptRecordError(f"transaction state record version {key_version}/{value_version} is not 0")
        transactional_id, _ = read_string(key, 2)
        pos = _VALUE_HEAD.size
        (topics,) = _I32.unpack_from(value, pos)
        pos += 4
        partitions: set[TopicPartition] = set()
        for _ in range(topics):
            topic, pos = read_string(value, pos)
            (count,) = _I32.unpack_from(value, pos)
            partitions.update(TopicPartition(topic, p) for p in struct.unpack_from(f">{count}i", value, pos + 4))
            pos += 4 + 4 * count
        last_update_ms, start_ms = _TIMES.unpack_from(value, pos)
        return TxnMetadata(transactional_id, producer_id, epoch, timeout_ms, TxnState(state), partitions,
                           start_ms, last_update_ms)
    except (struct.error, ValueError) as exc:  # ValueError: an unknown state, or bad UTF-8
        raise CorruptRecordError(f"malformed transaction state record: {exc}") from None


class TxnStateStore:
    def __init__(self, logs: LogManager, reader: Reader, default_partitions: int, durability: Durability, *,
                 segment_bytes: int = 256 * 1024) -> None:
        self.segment_bytes = segment_bytes  # transaction.state.log.segment.bytes, when the topic is made
        self.logs = logs
        self.reader = reader
        self.default_partitions = default_partitions
        self.durability = durability

    async def write(self, meta: TxnMetadata) -> None:
        """Append the id's state and wait until it is fsynced."""
        partitions = partitions_of(self.logs, TXN_STATE_TOPIC, self.default_partitions,
                                   {**TXN_STATE_TOPIC_CONFIGS, "segment.bytes": self.segment_bytes})
        plog = self.logs.log(TXN_STATE_TOPIC, partition_for_group(meta.transactional_id, partitions))
        record = Record(_I16.pack(0) + string_bytes(meta.transactional_id), encode_value(meta))
        batch = build_batch([record])
        self.durability.check_room(plog)
        info = plog.append(batch)
        self.durability.appended(plog, info, batch)
        await self.durability.wait(plog, info.last_offset + 1)

    async def load(self) -> Mapping[str, TxnMetadata]:
        found: dict[str, TxnMetadata] = {}
        async for _, batch in replay(self.logs, self.reader, TXN_STATE_TOPIC):
            for record in batch.records:
                if record.key is not None and record.value is not None:
                    try:
                        meta = decode(record.key, record.value)
                    except CorruptRecordError as exc:
                        skipped(TXN_STATE_TOPIC, record, exc)
                        continue
                    found[meta.transactional_id] = meta
        return found
