"""Produce: each partition's batches go through the broker's write path (broker/produce.py:
internal-topic guard, producer and transaction checks, append, metrics). acks=all answers
once the batches are fsynced (fsyncs shared by concurrent producers), acks=1 once they are
in the page cache, acks=0 never.

Idempotence is the log's: a retried batch is answered with its first write's offsets, a
sequence gap gets OUT_OF_ORDER_SEQUENCE_NUMBER, an old epoch INVALID_PRODUCER_EPOCH."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from kio.schema.errors import ErrorCode

from broker.errors import HANDLED, kafka_code
from broker.metrics import count_storage_error
from broker.produce import Appended
from hotlog.errors import InvalidRecordError

from .acls import access
from .context import Call, KafkaContext
from .produce_response import PartitionProduceResponse, ProduceResponse, TopicProduceResponse


class _PartitionResult:
    __slots__ = ("index", "code", "message", "appended", "bad_records")

    def __init__(self, index: int) -> None:
        self.index = index
        self.code = ErrorCode.none
        self.message: str | None = None
        self.appended: Appended | None = None
        self.bad_records: tuple[int, ...] = ()  # the records that failed the append (KIP-467)

    def fail(self, code: ErrorCode, message: str | None) -> None:
        self.code, self.message = code, message

    def refused(self, exc: Exception) -> None:
        """Answered with the error's code: this partition only, the connection stays up."""
        count_storage_error("kafka", "Produce", exc)
        self.fail(kafka_code(exc), str(exc))
        if isinstance(exc, InvalidRecordError):
            self.bad_records = exc.record_indexes


async def _wait_durable(kafka: KafkaContext, results: list[_PartitionResult], timeout_s: float) -> None:
    """Wait until every appended partition's batches are durable, at most the request's
    timeout (as Kafka does: REQUEST_TIMED_OUT, which producers retry; an idempotent retry is
    not written twice). One wait over the partitions' futures, no task per partition."""
    waiting: list[tuple[_PartitionResult, asyncio.Future[None]]] = []
    for result in results:
        assert result.appended is not None
        waiter = kafka.broker.write.durable_waiter(result.appended)
        if waiter is not None:
            waiting.append((result, waiter))
    if not waiting:
        return
    try:
        await asyncio.wait([waiter for _, waiter in waiting], timeout=timeout_s)
    finally:  # timed out, or the connection went: the next fsync round need not answer them
        for _, waiter in waiting:
            waiter.cancel()
    for result, waiter in waiting:
        if waiter.cancelled():
            result.fail(ErrorCode.request_timed_out, f"not durable within the request's timeout of {timeout_s:g} s")
        elif (exc := waiter.exception()) is not None:
            if not isinstance(exc, HANDLED):
                raise exc
            result.refused(exc)  # the disk refused the fsync or an index write: the batch is not durable


async def handle_produce(kafka: KafkaContext, call: Call, request: Any) -> Any:
    return await start_produce(kafka, call, request)


def start_produce(kafka: KafkaContext, call: Call, request: Any) -> \
        Coroutine[Any, Any, ProduceResponse] | asyncio.Future[ProduceResponse | None]:
    """Check and append every partition's batches now; what is returned answers: with
    acks=all a coroutine, once they are durable, else a future already done (no task to
    run). The connection calls it as it reads a request that may run at once, so `request`
    (whose records may be views of its receive buffer) is not kept."""
    acks = request.acks
    refusal = None if acks in (0, 1, -1) else (ErrorCode.invalid_required_acks, f"acks={acks} is not 0, 1 or -1")
    who = access(kafka, call)
    if refusal is None and request.transactional_id is not None:  # a transactional producer's: all or nothing
        refused = who.transaction_refusal(request.transactional_id)
        refusal = None if refused is None else (refused.code, str(refused))
    # Appends run before the first await, so requests pipelined on a connection are
    # written in the order they were sent.
    topics: list[tuple[str, list[_PartitionResult]]] = []
    for topic_data in request.topic_data:
        results = []
        denied = None if refusal is not None else who.write_refusal(topic_data.name)
        for partition_data in topic_data.partition_data:
            result = _PartitionResult(partition_data.index)
            if refusal is not None:
                result.fail(*refusal)
            elif denied is not None:
                result.refused(denied)
            else:
                try:
                    result.appended = kafka.broker.write.append(
                        topic_data.name, partition_data.index, partition_data.records,
                        protocol="kafka", transactional_id=request.transactional_id, durable=acks == -1)
                except HANDLED as exc:
                    result.refused(exc)
            results.append(result)
        topics.append((topic_data.name, results))
    if acks == -1:
        return _answer_durable(kafka, call, max(request.timeout.total_seconds(), 0.001), topics)
    answered: asyncio.Future[ProduceResponse | None] = asyncio.get_running_loop().create_future()
    answered.set_result(None if acks == 0 else _response(call, topics))
    return answered


async def _answer_durable(kafka: KafkaContext, call: Call, timeout_s: float,
                          topics: list[tuple[str, list[_PartitionResult]]]) -> ProduceResponse:
    await _wait_durable(kafka, [r for _, results in topics for r in results if r.appended is not None], timeout_s)
    return _response(call, topics)


def _response(call: Call, topics: list[tuple[str, list[_PartitionResult]]]) -> ProduceResponse:
    return ProduceResponse(call.api_version, tuple(
        TopicProduceResponse(name, tuple(_partition_response(r) for r in results)) for name, results in topics))


def _partition_response(result: _PartitionResult) -> PartitionProduceResponse:
    appended = result.appended
    if appended is None:
        return PartitionProduceResponse(result.index, result.code, -1, -1, -1, result.bad_records, result.message)
    info = appended.info
    return PartitionProduceResponse(result.index, result.code, -1 if result.code else info.base_offset,
                                    max(info.log_append_time, -1), appended.log.log_start_offset, result.bad_records,
                                    result.message)
