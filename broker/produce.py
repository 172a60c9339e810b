"""The write path, one for every protocol: the checks a produce passes before its batches
reach a partition's log, the append itself, the bytes-in metrics, and the wait that
makes it durable.

Checks, in order: the topic is not internal (only the broker writes those, through its
coordinators), the partition exists, there are batches, and each batch's producer may
write them (an id needs a sequence; a transactional batch needs its transactional id's
open transaction to hold this partition). Every batch is checked from its header alone,
with no per-record work. A refused produce changes nothing.

Durable means fsynced on this disk, or, for partitions the write-ahead log covers
(`remote.wal.enable`), committed in a WAL object in the bucket."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from kio.schema.errors import ErrorCode

from hotlog.batch import HEADER_SIZE, BatchHeader, parse_header
from hotlog.errors import CorruptRecordError, InvalidTopicError
from hotlog.log import AppendInfo, PartitionLog
from hotlog.manager import LogManager

from .durability import Durability
from .errors import NotEnoughReplicasError, RefusedError
from .groups.offset_store import TopicPartition
from .internal_topics import is_internal
from .metrics import BYTES_IN, MESSAGES_IN, labelled
from .txn.coordinator import TransactionCoordinator


class Appended(NamedTuple):
    """Batches in a partition's log, not yet known to be durable."""

    log: PartitionLog
    info: AppendInfo


class WritePath:
    """Event loop only: appends happen before the caller's first await, so requests
    pipelined on a connection are written in the order they were sent."""

    def __init__(self, logs: LogManager, txns: TransactionCoordinator, durability: Durability) -> None:
        self.logs = logs
        self.txns = txns
        self.durability = durability

    def append(self, topic: str, partition: int, records: bytes | None, *, protocol: str,
               transactional_id: str | None = None, durable: bool = False) -> Appended:
        """Check and append the batches in `records` (`durable`: the producer waits until
        they are, Kafka's acks=all). Raises a LogError or a BrokerError and appends nothing
        when refused."""
        if is_internal(topic):
            raise InvalidTopicError(f"{topic} is an internal topic; clients cannot write to it")
        plog = self.logs.log(topic, partition)
        if not records:
            raise CorruptRecordError("a produce request partition without record batches")
        if durable and plog.config.min_insync_replicas > 1 and not self.durability.beyond_this_disk(plog):
            raise NotEnoughReplicasError(
                f"{topic}-{partition}: min.insync.replicas={plog.config.min_insync_replicas}, and its appends are on "
                f"this disk only (remote.wal.enable puts them in the bucket)")
        self._check_producers(TopicPartition(topic, partition), records, transactional_id)
        self.durability.check_room(plog)
        info = plog.append(records)
        # Batches the log recompressed are not the request's bytes: the WAL reads them back.
        self.durability.appended(plog, info, None if plog.recompresses else records)
        if not info.duplicate:
            labelled(BYTES_IN, protocol).inc(len(records))
            labelled(MESSAGES_IN, protocol).inc(info.record_count)
        return Appended(plog, info)

    def durable_waiter(self, appended: Appended) -> asyncio.Future[None] | None:
        """A future done once the batches are in the bucket's WAL (a partition it covers; a
        retried duplicate waits for its first write), or else fsynced (shared with every
        other waiter; failed with LogStorageError if the disk refused); None if they are."""
        return self.durability.waiter(appended.log, appended.info.last_offset + 1)

    async def wait_durable(self, *appended: Appended) -> None:
        """Until the batches of every one are durable (`durable_waiter`), waited for at
        once; raises the first refusal."""
        waiters = [w for a in appended if (w := self.durable_waiter(a)) is not None]
        if waiters:
            await asyncio.gather(*waiters)

    def _check_producers(self, tp: TopicPartition, records: bytes, transactional_id: str | None) -> None:
        """Every batch is checked: a second batch must not slip past what the first passed."""
        pos = 0
        while pos + HEADER_SIZE <= len(records):  # bad lengths are the log's to reject
            header = parse_header(records, pos)
            self._check_batch(tp, header, transactional_id)
            pos += max(header.size, HEADER_SIZE)

    def _check_batch(self, tp: TopicPartition, header: BatchHeader, transactional_id: str | None) -> None:
        if header.producer_id >= 0 and header.base_sequence < 0:  # only the broker writes those
            raise RefusedError(ErrorCode.invalid_record,
                               f"producer {header.producer_id} sent a batch without a sequence number")
        if not header.is_transactional:
            return
        if transactional_id is None:
            raise RefusedError(ErrorCode.invalid_request, "transactional batches need the request's transactional id")
        code = self.txns.check_in_transaction(transactional_id, header.producer_id, header.producer_epoch, tp)
        if code is ErrorCode.none:
            return
        if code is ErrorCode.producer_fenced:  # Produce has no PRODUCER_FENCED
            code = ErrorCode.invalid_producer_epoch
        raise RefusedError(code, f"producer {header.producer_id} epoch {header.producer_epoch} may not write to "
                                 f"{tp.topic}-{tp.partition} in transaction {transactional_id!r}: {code.name}")
