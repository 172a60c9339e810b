"""DeleteRecords: tools and Kafka Streams (its repartition topics) purge what consumers
have read; the records below each offset are gone for readers, from either tier. It takes
DELETE on the topic."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.errors import HANDLED, kafka_code
from broker.security.acls import AclOperation, ResourceType
from broker.security.authorizer import enforce

from .acls import access
from .codec import build, nested
from .context import NO_THROTTLE, Call, KafkaContext


async def handle_delete_records(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    topic_type = nested(response, "topics")
    partition_type = nested(topic_type, "partitions")
    broker = kafka.broker
    topics = []
    who = access(kafka, call)
    for wanted in request.topics:
        parts = []
        refused = who.refusal(AclOperation.DELETE, ResourceType.TOPIC, wanted.name)
        for part in wanted.partitions:
            try:
                enforce(refused)
                low = broker.delete_records(wanted.name, part.partition_index, part.offset)
                code = ErrorCode.none
            except HANDLED as exc:
                low, code = -1, kafka_code(exc)
            parts.append(build(partition_type, partition_index=part.partition_index, low_watermark=low,
                               error_code=code))
        topics.append(build(topic_type, name=wanted.name, partitions=tuple(parts)))
    return build(response, throttle_time=NO_THROTTLE, topics=tuple(topics))
