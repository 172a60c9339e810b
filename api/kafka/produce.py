"""Produce: batches are appended as they come (any compression; the log checks header and
CRC only). acks=all answers once the batches are fsynced (fsyncs shared by concurrent
producers), acks=1 once they are in the page cache, acks=0 never.

Idempotence is the log's: a retried batch is answered with its first write's offsets, a
sequence gap gets OUT_OF_ORDER_SEQUENCE_NUMBER, an old epoch INVALID_PRODUCER_EPOCH.
Transactional batches are checked against the transaction coordinator first."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from kio.schema.errors import ErrorCode

from hotlog.batch import HEADER_SIZE, BatchHeader, parse_header
from hotlog.errors import CorruptRecordError, InvalidTopicError, LogError, LogStorageError
from hotlog.log import AppendInfo, PartitionLog

from ..metrics import BYTES_IN, MESSAGES_IN
from .codec import build, nested
from .context import NO_THROTTLE, Call, KafkaContext
from .errors import error_code
from .metadata import INTERNAL_TOPICS


def _producer_error(kafka: KafkaContext, transactional_id: str | None, topic: str, partition: int,
                    records: bytes) -> tuple[ErrorCode, str] | None:
    """Why a producer's write may not be appended: it has an id but no sequence (only the
    broker writes those), or it is transactional and its session no longer owns the
    transactional id, or the partition is not in its open transaction. Every batch is
    checked, from its header: a second batch must not slip past what the first passed."""
    pos = 0
    while pos + HEADER_SIZE <= len(records):  # bad lengths are the log's to reject
        header = parse_header(records, pos)
        problem = _batch_error(kafka, transactional_id, topic, partition, header)
        if problem is not None:
            return problem
        pos += max(header.size, HEADER_SIZE)
    return None


def _batch_error(kafka: KafkaContext, transactional_id: str | None, topic: str, partition: int,
                 header: BatchHeader) -> tuple[ErrorCode, str] | None:
    if header.producer_id >= 0 and header.base_sequence < 0:
        return ErrorCode.invalid_record, f"producer {header.producer_id} sent a batch without a sequence number"
    if not header.is_transactional:
        return None
    if transactional_id is None:
        return ErrorCode.invalid_request, "transactional batches need the request's transactional id"
    code = kafka.broker.txns.check_in_transaction(transactional_id, header.producer_id, header.producer_epoch,
                                                  (topic, partition))
    if code is ErrorCode.none:
        return None
    if code is ErrorCode.producer_fenced:  # Produce has no PRODUCER_FENCED
        code = ErrorCode.invalid_producer_epoch
    return code, f"producer {header.producer_id} epoch {header.producer_epoch} may not write to {topic}-{partition} " \
                 f"in transaction {transactional_id!r}: {code.name}"


class _PartitionResult:
    __slots__ = ("index", "code", "message", "info", "log")

    def __init__(self, index: int) -> None:
        self.index = index
        self.code = ErrorCode.none
        self.message: str | None = None
        self.info: AppendInfo | None = None
        self.log: PartitionLog | None = None

    def fail(self, code: ErrorCode, message: str | None) -> None:
        self.code, self.message = code, message


def _append(kafka: KafkaContext, topic: str, result: _PartitionResult, records: bytes | None,
            transactional_id: str | None) -> None:
    try:
        if topic in INTERNAL_TOPICS:
            raise InvalidTopicError(f"{topic} is an internal topic; clients cannot write to it")
        plog = kafka.broker.logs.log(topic, result.index)
        if not records:
            raise CorruptRecordError("a produce request partition without record batches")
        refused = _producer_error(kafka, transactional_id, topic, result.index, records)
        if refused is not None:
            result.fail(*refused)
            return
        result.info = plog.append(records)
        result.log = plog
        if not result.info.duplicate:
            BYTES_IN.labels("kafka").inc(len(records))
            MESSAGES_IN.labels("kafka").inc(result.info.record_count)
    except LogError as exc:
        result.fail(error_code(exc), str(exc))


async def _wait_durable(result: _PartitionResult) -> None:
    assert result.log is not None and result.info is not None
    try:
        await result.log.flush_async(result.info.last_offset + 1)
    except LogStorageError as exc:  # the disk refused the fsync: the batch is not durable
        result.fail(ErrorCode.kafka_storage_error, str(exc))


def _append_time(info: AppendInfo | None) -> datetime | None:
    if info is None or info.log_append_time < 0:
        return None
    return datetime.fromtimestamp(info.log_append_time / 1000, tz=timezone.utc)


async def handle_produce(kafka: KafkaContext, call: Call, request: Any) -> Any:
    acks = request.acks
    if acks not in (0, 1, -1):
        refusal: tuple[ErrorCode, str] | None = (ErrorCode.invalid_required_acks, f"acks={acks} is not 0, 1 or -1")
    else:
        refusal = None
    # Appends run before the first await, so requests pipelined on a connection are
    # written in the order they were sent.
    topics: list[tuple[str, list[_PartitionResult]]] = []
    for topic_data in request.topic_data:
        results = []
        for partition_data in topic_data.partition_data:
            result = _PartitionResult(partition_data.index)
            if refusal is not None:
                result.fail(*refusal)
            else:
                _append(kafka, topic_data.name, result, partition_data.records, request.transactional_id)
            results.append(result)
        topics.append((topic_data.name, results))
    if acks == 0:
        return None
    if acks == -1:
        durable = [_wait_durable(r) for _, results in topics for r in results if r.info is not None]
        if durable:
            await asyncio.gather(*durable)
    response = call.response_type
    topic_entity = nested(response, "responses")
    partition_entity = nested(topic_entity, "partition_responses")
    return build(response, throttle_time=NO_THROTTLE, responses=tuple(
        build(topic_entity, name=name, partition_responses=tuple(
            build(partition_entity, index=r.index, error_code=r.code,
                  base_offset=-1 if r.info is None or r.code else r.info.base_offset,
                  log_append_time=_append_time(r.info),
                  log_start_offset=-1 if r.log is None else r.log.log_start_offset,
                  record_errors=(), error_message=r.message)
            for r in results
        ))
        for name, results in topics
    ))
