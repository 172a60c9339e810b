"""InitProducerId and the transaction APIs: kio entities in and out of the transaction
coordinator (and, for TxnOffsetCommit, the group coordinator).

PRODUCER_FENCED (KIP-588) reaches only clients whose request version knows it; older
versions get INVALID_PRODUCER_EPOCH, as Kafka answers them.

Authorization as Kafka's: WRITE on the transactional id for every transactional request
(an idempotent producer's InitProducerId: IDEMPOTENT_WRITE on the cluster or WRITE on some
topic), WRITE on the topics added, READ on the group whose offsets are committed and on
their topics."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.errors import kafka_code
from broker.groups.offset_store import ProducerEpoch, TopicPartition
from broker.internal_topics import OFFSETS_TOPIC, is_internal
from broker.security.acls import AclOperation, ResourceType
from broker.security.authorizer import Access
from hotlog.errors import InvalidProducerEpochError, LogError

from .acls import access
from .codec import build, nested
from .context import NO_THROTTLE, Call, KafkaContext
from .groups import commit_response, commits_of, unreadable_commits


def _fenced_for(call: Call, since_version: int, error: ErrorCode) -> ErrorCode:
    if error is ErrorCode.producer_fenced and call.api_version < since_version:
        return ErrorCode.invalid_producer_epoch
    return error


def _ms(delta: Any) -> int:
    return int(delta.total_seconds() * 1000)


async def handle_init_producer_id(kafka: KafkaContext, call: Call, request: Any) -> Any:
    who = access(kafka, call)
    if request.transactional_id is not None:
        refused = who.transaction_refusal(request.transactional_id)
        denied = None if refused is None else refused.code
    else:
        denied = None if who.may_write_idempotently() else ErrorCode.cluster_authorization_failed
    if denied is not None:
        return build(call.response_type, throttle_time=NO_THROTTLE, error_code=denied, producer_id=-1,
                     producer_epoch=-1)
    try:
        error, producer_id, epoch = await kafka.broker.txns.init_producer_id(
            request.transactional_id, _ms(request.transaction_timeout),
            getattr(request, "producer_id", -1), getattr(request, "producer_epoch", -1),
        )
    except LogError:  # the state could not be made durable: the client retries
        error, producer_id, epoch = ErrorCode.coordinator_not_available, -1, -1
    return build(call.response_type, throttle_time=NO_THROTTLE, error_code=_fenced_for(call, 4, error),
                 producer_id=producer_id, producer_epoch=epoch)


async def handle_add_partitions_to_txn(kafka: KafkaContext, call: Call, request: Any) -> Any:
    wanted = [TopicPartition(t.name, p) for t in request.v3_and_below_topics for p in t.partitions]
    errors = _add_partitions_refused(access(kafka, call), request.v3_and_below_transactional_id, wanted)
    if errors is None:
        try:
            errors = await kafka.broker.txns.add_partitions(
                request.v3_and_below_transactional_id, request.v3_and_below_producer_id,
                request.v3_and_below_producer_epoch, wanted,
            )
        except LogError:
            errors = dict.fromkeys(wanted, ErrorCode.coordinator_not_available)
    response = call.response_type
    topic_entity = nested(response, "results_by_topic_v3_and_below")
    partition_entity = nested(topic_entity, "results_by_partition")
    by_topic: dict[str, list[Any]] = {}
    for (topic, partition), error in errors.items():
        by_topic.setdefault(topic, []).append(build(partition_entity, partition_index=partition,
                                                    partition_error_code=_fenced_for(call, 2, error)))
    return build(response, throttle_time=NO_THROTTLE, results_by_topic_v3_and_below=tuple(
        build(topic_entity, name=topic, results_by_partition=tuple(ps)) for topic, ps in by_topic.items()
    ))


def _add_partitions_refused(who: Access, transactional_id: str,
                            wanted: list[TopicPartition]) -> dict[TopicPartition, ErrorCode] | None:
    """The answer if any partition may not be added (Kafka's: the transaction takes none;
    those refused get their error, the others OPERATION_NOT_ATTEMPTED)."""
    refused = who.transaction_refusal(transactional_id)
    if refused is not None:
        return dict.fromkeys(wanted, refused.code)
    unwritable = who.refused_topics(AclOperation.WRITE, (tp.topic for tp in wanted if not is_internal(tp.topic)))
    if not unwritable:
        return None
    return {tp: ErrorCode.topic_authorization_failed if tp.topic in unwritable else ErrorCode.operation_not_attempted
            for tp in wanted}


async def handle_add_offsets_to_txn(kafka: KafkaContext, call: Call, request: Any) -> Any:
    who = access(kafka, call)
    refused = who.transaction_refusal(request.transactional_id) or \
        who.refusal(AclOperation.READ, ResourceType.GROUP, request.group_id)
    if refused is not None:
        return build(call.response_type, throttle_time=NO_THROTTLE, error_code=refused.code)
    try:
        error = await kafka.broker.txns.add_offsets(request.transactional_id, request.producer_id,
                                                    request.producer_epoch, request.group_id)
    except LogError:
        error = ErrorCode.coordinator_not_available
    return build(call.response_type, throttle_time=NO_THROTTLE, error_code=_fenced_for(call, 2, error))


async def handle_end_txn(kafka: KafkaContext, call: Call, request: Any) -> Any:
    refused = access(kafka, call).transaction_refusal(request.transactional_id)
    if refused is not None:
        return build(call.response_type, throttle_time=NO_THROTTLE, error_code=refused.code)
    try:
        error = await kafka.broker.txns.end_txn(request.transactional_id, request.producer_id,
                                                request.producer_epoch, request.committed)
    except LogError:  # the transaction stays prepared; the retry or a restart finishes it
        error = ErrorCode.coordinator_not_available
    return build(call.response_type, throttle_time=NO_THROTTLE, error_code=_fenced_for(call, 2, error))


async def handle_txn_offset_commit(kafka: KafkaContext, call: Call, request: Any) -> Any:
    offsets = commits_of(request.topics)
    who = access(kafka, call)
    refused = who.transaction_refusal(request.transactional_id) or \
        who.refusal(AclOperation.READ, ResourceType.GROUP, request.group_id)
    if refused is not None:
        return commit_response(call.response_type, request.topics, dict.fromkeys(offsets, refused.code))
    unreadable = unreadable_commits(who, offsets)  # refused; the others committed (Kafka's)
    # The group's offsets partition must be in the transaction (AddOffsetsToTxn came first).
    error = kafka.broker.txns.check_in_transaction(
        request.transactional_id, request.producer_id, request.producer_epoch,
        TopicPartition(OFFSETS_TOPIC, kafka.groups.offsets.store.partition_for(request.group_id)),
    )
    if not offsets:
        errors = {}
    elif error:
        errors = dict.fromkeys(offsets, error)
    else:
        try:
            errors = await kafka.groups.offsets.commit_in_transaction(
                request.group_id, ProducerEpoch(request.producer_id, request.producer_epoch),
                getattr(request, "generation_id", -1), getattr(request, "member_id", ""),
                getattr(request, "group_instance_id", None), offsets,
            )
        except InvalidProducerEpochError:
            errors = dict.fromkeys(offsets, ErrorCode.producer_fenced)
        except LogError as exc:
            errors = dict.fromkeys(offsets, kafka_code(exc))
    errors = {**errors, **unreadable}
    return commit_response(call.response_type, request.topics,
                           {tp: _fenced_for(call, 3, error) for tp, error in errors.items()})
