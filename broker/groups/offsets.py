"""Committed offsets: the half of a consumer group that outlives its members.

Commits are written to `__consumer_offsets` (offset_store.py) and answered once fsynced;
TxnOffsetCommit offsets wait inside their producer's transaction and reach the group
only when its COMMIT marker lands. Membership says whether a member may commit: the classic
protocol's generation (membership.py) or the consumer protocol's member epoch
(consumer_protocol.py); standalone consumers (and the gRPC API) commit with no generation."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from kio.schema.errors import ErrorCode

from fetch.reader import Reader
from hotlog.errors import LogError, RecordTooLargeError
from hotlog.manager import LogManager
from hotlog.records import Record

from ..durability import Durability
from ..settings import BrokerSettings
from .consumer_protocol import ConsumerGroups
from .membership import GroupMembership
from .offset_store import (
    CommittedOffset,
    OffsetStore,
    ProducerEpoch,
    TopicPartition,
    apply_records,
    decode_key,
    encode_key,
    encode_value,
)

log = logging.getLogger(__name__)

OFFSET_METADATA_MAX_BYTES = 4096  # Kafka's offset.metadata.max.bytes


class OffsetCommit(NamedTuple):
    """One partition's commit as a client asks for it."""

    offset: int
    leader_epoch: int = -1
    metadata: str | None = None


class GroupOffsets:
    """Event loop only."""

    def __init__(self, logs: LogManager, reader: Reader, settings: BrokerSettings,
                 membership: GroupMembership, durability: Durability, consumer_groups: ConsumerGroups) -> None:
        self.logs = logs
        self.membership = membership
        self.consumer_groups = consumer_groups
        self.store = OffsetStore(logs, reader, settings.offsets_topic_num_partitions, durability,
                                 segment_bytes=settings.offsets_topic_segment_bytes)
        self.groups: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        # TxnOffsetCommit offsets by producer id, applied when its transaction commits.
        self.txn_offsets: dict[int, list[Record]] = {}

    async def load(self) -> None:
        """Read committed offsets back from the offsets topic."""
        self.groups, self.txn_offsets = await self.store.load()
        if self.groups:
            log.info("loaded committed offsets of %d groups", len(self.groups))

    async def commit(self, group_id: str, generation_id: int, member_id: str, instance_id: str | None,
                     offsets: Mapping[TopicPartition, OffsetCommit], carries_epoch: bool = False,
                     ) -> dict[TopicPartition, ErrorCode]:
        """Commit each partition's offset durably, then answer; one error per partition.
        `carries_epoch`: a consumer protocol member may send its epoch as the generation
        (OffsetCommit v9+)."""
        if not group_id:
            error = ErrorCode.invalid_group_id
        elif group_id in self.consumer_groups.groups:
            error = self.consumer_groups.commit_error(group_id, member_id, generation_id, carries_epoch)
        else:
            error = self.membership.commit_error(group_id, generation_id, member_id, instance_id)
        if error:
            return {tp: error for tp in offsets}
        results, accepted = self._accept(offsets)
        try:
            await self.store.write(group_id, accepted)
        except RecordTooLargeError:
            return {**results, **{tp: ErrorCode.invalid_commit_offset_size for tp in accepted}}
        except LogError:
            return {**results, **{tp: ErrorCode.coordinator_not_available for tp in accepted}}
        self.groups.setdefault(group_id, {}).update(accepted)
        return {**results, **{tp: ErrorCode.none for tp in accepted}}

    def _accept(self, offsets: Mapping[TopicPartition, OffsetCommit]
                ) -> tuple[dict[TopicPartition, ErrorCode], dict[TopicPartition, CommittedOffset]]:
        """The refused partitions with their errors, and the commits to write."""
        now = int(time.time() * 1000)
        refused: dict[TopicPartition, ErrorCode] = {}
        accepted: dict[TopicPartition, CommittedOffset] = {}
        for tp, commit in offsets.items():
            topic_entry = self.logs.topics.get(tp.topic)
            if topic_entry is None or not 0 <= tp.partition < topic_entry.partitions:
                refused[tp] = ErrorCode.unknown_topic_or_partition
            elif commit.metadata is not None and len(commit.metadata.encode()) > OFFSET_METADATA_MAX_BYTES:
                refused[tp] = ErrorCode.offset_metadata_too_large
            else:
                accepted[tp] = CommittedOffset(commit.offset, commit.leader_epoch, commit.metadata or "", now)
        return refused, accepted

    async def commit_in_transaction(
        self, group_id: str, producer: ProducerEpoch, generation_id: int, member_id: str,
        instance_id: str | None, offsets: Mapping[TopicPartition, OffsetCommit],
    ) -> dict[TopicPartition, ErrorCode]:
        """TxnOffsetCommit: write the offsets into the producer's transaction; the group sees
        them once the transaction commits. Raises InvalidProducerEpochError when fenced."""
        error = ErrorCode.invalid_group_id if not group_id else ErrorCode.none
        if member_id and not error and group_id in self.consumer_groups.groups:
            error = self.consumer_groups.commit_error(group_id, member_id, generation_id, carries_epoch=True)
        elif member_id and not error:  # v3+: the consumer's generation is checked (KIP-447)
            error = self.membership.member_error(group_id, member_id, instance_id, generation_id)
        if error:
            return {tp: error for tp in offsets}
        results, accepted = self._accept(offsets)
        try:
            flushed = self.store.append(group_id, accepted, producer)
        except RecordTooLargeError:
            return {**results, **{tp: ErrorCode.invalid_commit_offset_size for tp in accepted}}
        # Filed at the append, before the fsync wait: an abort (a fence, a timeout) that
        # writes its marker meanwhile must find and drop them, as replay from disk would.
        self.txn_offsets.setdefault(producer.producer_id, []).extend(
            Record(encode_key(group_id, tp.topic, tp.partition), encode_value(c)) for tp, c in accepted.items()
        )
        await flushed()
        return {**results, **{tp: ErrorCode.none for tp in accepted}}

    def pending_in_transactions(self, group_id: str) -> set[TopicPartition]:
        """The group's partitions with offsets in transactions still open (KIP-447: a
        consumer that asks for stable offsets waits for those)."""
        pending = set()
        for records in self.txn_offsets.values():
            for record in records:
                assert record.key is not None
                key = decode_key(record.key)
                if key is not None and key.group_id == group_id:
                    pending.add(TopicPartition(key.topic, key.partition))
        return pending

    def end_txn(self, producer_id: int, commit: bool) -> None:
        """The producer's marker is in the offsets topic: apply or drop its offsets."""
        records = self.txn_offsets.pop(producer_id, [])
        if not commit or not records:
            return
        committed: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        apply_records(committed, records)
        for group_id, offsets in committed.items():
            self.groups.setdefault(group_id, {}).update(offsets)

    def committed(self, group_id: str, partitions: Sequence[TopicPartition] | None
                  ) -> dict[TopicPartition, CommittedOffset | None]:
        """The group's committed offsets: of `partitions`, or all (None)."""
        offsets = self.groups.get(group_id, {})
        if partitions is None:
            return dict(offsets)
        return {tp: offsets.get(tp) for tp in partitions}

    async def delete(self, group_id: str) -> None:
        """Tombstone every committed offset of the group."""
        await self.store.write(group_id, dict.fromkeys(self.groups.get(group_id, {})))
        self.groups.pop(group_id, None)

    async def delete_partitions(self, group_id: str, partitions: Sequence[TopicPartition]) -> None:
        """Tombstone the group's committed offsets of `partitions` (those it has)."""
        offsets = self.groups.get(group_id, {})
        gone = [tp for tp in partitions if tp in offsets]
        if gone:
            await self.store.write(group_id, dict.fromkeys(gone))
            for tp in gone:
                offsets.pop(tp, None)

    async def forget_topic(self, topic: str) -> None:
        """Drop the committed offsets of a deleted topic (tombstones, as Kafka writes)."""
        for group_id, offsets in list(self.groups.items()):
            gone = [tp for tp in offsets if tp.topic == topic]
            if not gone:
                continue
            await self.store.write(group_id, dict.fromkeys(gone))
            for tp in gone:
                offsets.pop(tp, None)
