"""Admin APIs that describe the broker to tools: DescribeLogDirs, ElectLeaders (one
broker leads every partition already), DescribeProducers, ListTransactions and
DescribeTransactions, with Kafka's checks: DESCRIBE on the cluster for log dirs, ALTER on it
for elections, READ on a topic for its producers, DESCRIBE on a transactional id (and on
the topics shown) for transactions."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from kio.schema.errors import ErrorCode

from broker.describe import TXN_STATE_NAMES, active_producers, list_transactions, log_dir
from broker.security.acls import CLUSTER_NAME, AclOperation, ResourceType
from hotlog.errors import LogError

from .acls import access
from .codec import build, nested
from .context import NO_THROTTLE, Call, KafkaContext


async def handle_describe_log_dirs(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    result_type = nested(response, "results")
    topic_type = nested(result_type, "topics")
    partition_type = nested(topic_type, "partitions")
    refused = access(kafka, call).refusal(AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME)
    if refused is not None:
        return build(response, throttle_time=NO_THROTTLE, error_code=refused.code, results=())
    wanted = None if request.topics is None else {t.topic: t.partitions for t in request.topics}
    found = log_dir(kafka.broker.logs, wanted)
    by_topic: dict[str, list[Any]] = {}
    for p in found.partitions:
        by_topic.setdefault(p.topic, []).append(build(partition_type, partition_index=p.partition,
                                                      partition_size=p.size_bytes, offset_lag=0, is_future_key=False))
    topics = tuple(build(topic_type, name=name, partitions=tuple(parts)) for name, parts in by_topic.items())
    result = build(result_type, error_code=ErrorCode.none, log_dir=found.path, topics=topics,
                   total_bytes=found.total_bytes, usable_bytes=found.usable_bytes)
    return build(response, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, results=(result,))


async def handle_elect_leaders(kafka: KafkaContext, call: Call, request: Any) -> Any:
    """One broker is every partition's leader and its preferred replica: no election is
    ever needed (Kafka's answer when the preferred leader leads already)."""
    response = call.response_type
    result_type = nested(response, "replica_election_results")
    partition_type = nested(result_type, "partition_result")
    refused = access(kafka, call).refusal(AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME)
    if refused is not None:  # every partition asked for gets the refusal too
        return build(response, throttle_time=NO_THROTTLE, error_code=refused.code, replica_election_results=tuple(
            build(result_type, topic=wanted.topic, partition_result=tuple(
                build(partition_type, partition_id=p, error_code=refused.code, error_message=str(refused))
                for p in wanted.partitions))
            for wanted in request.topic_partitions or ()))
    if request.topic_partitions is None:  # all partitions: Kafka lists only those elected, none here
        return build(response, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, replica_election_results=())
    logs = kafka.broker.logs
    results = []
    for wanted in request.topic_partitions:
        parts = []
        for partition in wanted.partitions:
            held = (wanted.topic, partition) in logs.logs
            parts.append(build(
                partition_type, partition_id=partition,
                error_code=ErrorCode.election_not_needed if held else ErrorCode.unknown_topic_or_partition,
                error_message="this broker leads it already" if held else "no such partition"))
        results.append(build(result_type, topic=wanted.topic, partition_result=tuple(parts)))
    return build(response, throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                 replica_election_results=tuple(results))


async def handle_describe_producers(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    topic_type = nested(response, "topics")
    partition_type = nested(topic_type, "partitions")
    state_type = nested(partition_type, "active_producers")
    who = access(kafka, call)
    topics = []
    for wanted in request.topics:
        parts = []
        refused = who.read_refusal(wanted.name)
        for partition in wanted.partition_indexes:
            if refused is not None:
                parts.append(build(partition_type, partition_index=partition, error_code=refused.code,
                                   error_message=str(refused), active_producers=()))
                continue
            try:
                producers = active_producers(kafka.broker.logs, wanted.name, partition)
            except LogError:
                parts.append(build(partition_type, partition_index=partition,
                                   error_code=ErrorCode.unknown_topic_or_partition, error_message="no such partition",
                                   active_producers=()))
                continue
            parts.append(build(partition_type, partition_index=partition, error_code=ErrorCode.none,
                               error_message=None, active_producers=tuple(
                                   build(state_type, producer_id=p.producer_id, producer_epoch=p.epoch,
                                         last_sequence=p.last_sequence, last_timestamp=p.last_timestamp,
                                         coordinator_epoch=p.coordinator_epoch,
                                         current_txn_start_offset=p.txn_start_offset)
                                   for p in producers)))
        topics.append(build(topic_type, name=wanted.name, partitions=tuple(parts)))
    return build(response, throttle_time=NO_THROTTLE, topics=tuple(topics))


async def handle_list_transactions(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    state_type = nested(response, "transaction_states")
    listing = list_transactions(kafka.broker.txns.txns, request.state_filters, request.producer_id_filters,
                                getattr(request, "duration_filter", -1), int(time.time() * 1000))
    who = access(kafka, call)
    states = tuple(build(state_type, transactional_id=m.transactional_id, producer_id=m.producer_id,
                         transaction_state=TXN_STATE_NAMES[m.state]) for m in listing.transactions
                   if who.may(AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, m.transactional_id, count=False))
    return build(response, throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                 unknown_state_filters=tuple(listing.unknown_state_filters), transaction_states=states)


async def handle_describe_transactions(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    state_type = nested(response, "transaction_states")
    topic_type = nested(state_type, "topics")
    txns = kafka.broker.txns.txns
    who = access(kafka, call)
    states = []
    for transactional_id in request.transactional_ids:
        meta = txns.get(transactional_id)
        refused = who.refusal(AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, transactional_id)
        if meta is None or refused is not None:
            states.append(build(state_type, error_code=ErrorCode.transactional_id_not_found if refused is None
                                else refused.code,
                                transactional_id=transactional_id, transaction_state="",
                                transaction_timeout=timedelta(0), transaction_start_time=_time(-1), producer_id=-1,
                                producer_epoch=-1, topics=()))
            continue
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(meta.partitions):
            if who.may(AclOperation.DESCRIBE, ResourceType.TOPIC, topic, count=False):  # the others left out
                by_topic.setdefault(topic, []).append(partition)
        states.append(build(
            state_type, error_code=ErrorCode.none, transactional_id=transactional_id,
            transaction_state=TXN_STATE_NAMES[meta.state], transaction_timeout=timedelta(milliseconds=meta.timeout_ms),
            transaction_start_time=_time(meta.start_ms), producer_id=meta.producer_id,
            producer_epoch=meta.producer_epoch,
            topics=tuple(build(topic_type, topic=t, partitions=tuple(ps)) for t, ps in by_topic.items())))
    return build(response, throttle_time=NO_THROTTLE, transaction_states=tuple(states))


def _time(ms: int) -> datetime:
    """A time in ms since the epoch as kio takes it (Kafka's -1, none, is 1 ms before the epoch)."""
    return datetime.fromtimestamp(ms / 1000, UTC)
