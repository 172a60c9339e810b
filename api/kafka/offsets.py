"""ListOffsets: the earliest (-2) or latest (-1) offset, the record with the largest
timestamp (-3, KIP-734), the earliest offset on local disk (-4) and the latest tiered one
(-5, KIP-405/KIP-1005), or the first offset at or after a timestamp; through the fetch
layer so both tiers answer."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.errors import HANDLED, kafka_code
from broker.metrics import count_storage_error

from .acls import access
from .codec import build, nested
from .context import NO_THROTTLE, Call, KafkaContext
from .fetch import READ_COMMITTED
from .slices import Slices, in_slices

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
LATEST_TIERED = -5


async def _offset_for(kafka: KafkaContext, topic: str, partition: int, timestamp: int,
                      read_committed: bool) -> tuple[ErrorCode, int, int]:
    """(error, offset, timestamp) for one partition."""
    reader = kafka.broker.reader
    try:
        if timestamp == LATEST:
            latest = reader.last_stable_offset if read_committed else reader.high_watermark
            return ErrorCode.none, latest(topic, partition), -1
        if timestamp == EARLIEST:
            return ErrorCode.none, reader.log_start_offset(topic, partition), -1
        if timestamp == EARLIEST_LOCAL:
            return ErrorCode.none, reader.local_log_start_offset(topic, partition), -1
        if timestamp == LATEST_TIERED:
            return ErrorCode.none, reader.last_tiered_offset(topic, partition), -1
        if timestamp == MAX_TIMESTAMP:
            found = await reader.max_timestamp_offset(topic, partition)
        elif timestamp < 0:
            return ErrorCode.invalid_request, -1, -1
        else:
            found = await reader.offset_for_timestamp(topic, partition, timestamp)
    except HANDLED as exc:
        count_storage_error("kafka", "ListOffsets", exc)
        return kafka_code(exc), -1, -1
    if found is None:  # no record at or after it: Kafka answers -1
        return ErrorCode.none, -1, -1
    return ErrorCode.none, found.offset, found.timestamp


async def handle_list_offsets(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    topic_entity = nested(response, "topics")
    partition_entity = nested(topic_entity, "partitions")
    read_committed = getattr(request, "isolation_level", 0) == READ_COMMITTED
    who = access(kafka, call)
    topics = []
    slices = Slices()
    async for topic in in_slices(request.topics, slices):
        partitions = []
        described = who.describe_refusal(topic.name) is None  # DESCRIBE on the topic
        async for p in in_slices(topic.partitions, slices):
            if not described:
                code, offset, timestamp = ErrorCode.topic_authorization_failed, -1, -1
            else:
                code, offset, timestamp = await _offset_for(kafka, topic.name, p.partition_index, p.timestamp,
                                                            read_committed)
            partitions.append(build(partition_entity, partition_index=p.partition_index, error_code=code,
                                    timestamp=timestamp, offset=offset, leader_epoch=-1))
        topics.append(build(topic_entity, name=topic.name, partitions=tuple(partitions)))
    return build(response, throttle_time=NO_THROTTLE, topics=tuple(topics))
