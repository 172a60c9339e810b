"""Metadata and DescribeCluster: one broker leads every partition; unknown topics are
created on request when `auto.create.topics.enable` allows it. Metadata shows only the
topics the principal may DESCRIBE (Kafka's rules)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from broker.errors import kafka_code
from broker.internal_topics import is_internal
from broker.security.acls import CLUSTER_NAME, AclOperation, ResourceType
from broker.security.authorizer import OPERATIONS_NOT_ASKED
from hotlog.errors import LogError
from hotlog.manager import Topic

from .acls import access
from .codec import build, nested
from .context import NO_THROTTLE, Call, KafkaContext
from .slices import in_slices

log = logging.getLogger(__name__)

NO_TOPIC_ID = uuid.UUID(int=0)


def topics_by_id(kafka: KafkaContext) -> dict[uuid.UUID, Topic]:
    """Every topic by its id: built once per request, as a request may name millions of ids."""
    return {t.topic_id: t for t in kafka.broker.logs.topics.values()}


def _topic_entry(kafka: KafkaContext, entity: type, topic: Topic, operations: int = OPERATIONS_NOT_ASKED) -> Any:
    partition_type = nested(entity, "partitions")
    node = kafka.node_id
    partitions = tuple(
        build(partition_type, error_code=ErrorCode.none, partition_index=p, leader_id=node, leader_epoch=-1,
              replica_nodes=(node,), isr_nodes=(node,), offline_replicas=())
        for p in range(topic.partitions)
    )
    return build(entity, error_code=ErrorCode.none, name=topic.name, topic_id=topic.topic_id,
                 is_internal=is_internal(topic.name), partitions=partitions, topic_authorized_operations=operations)


def _error_entry(entity: type, code: ErrorCode, name: str | None, topic_id: uuid.UUID = NO_TOPIC_ID) -> Any:
    return build(entity, error_code=code, name=name, topic_id=topic_id, is_internal=False, partitions=())


def _lookup(kafka: KafkaContext, name: str, auto_create: bool) -> Topic:
    logs = kafka.broker.logs
    topic = logs.topics.get(name)
    if topic is not None or not auto_create or is_internal(name):
        return logs.topic(name)  # raises UnknownTopicOrPartitionError when missing
    topic = logs.create_topic(name, kafka.broker.settings.num_partitions)
    log.info("auto-created topic %r with %d partitions", name, topic.partitions)
    return topic


async def handle_metadata(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    topic_entity = nested(response, "topics")
    logs = kafka.broker.logs
    requested = request.topics
    # v0 asks for every topic with an empty list; later versions with null.
    who = access(kafka, call)

    def entry(topic: Topic) -> Any:  # with what the principal may do on it, if asked (v8+)
        operations = who.authorized_operations(ResourceType.TOPIC, topic.name) \
            if getattr(request, "include_topic_authorized_operations", False) else OPERATIONS_NOT_ASKED
        return _topic_entry(kafka, topic_entity, topic, operations)

    if requested is None or (call.api_version == 0 and not requested):  # those it may DESCRIBE, silently
        everything = (topic for name, topic in sorted(logs.topics.items())
                      if who.may(AclOperation.DESCRIBE, ResourceType.TOPIC, name, count=False))
        entries = [entry(t) async for t in in_slices(everything)]
    else:
        auto_create = getattr(request, "allow_auto_topic_creation", True) and \
            kafka.broker.settings.auto_create_topics_enable
        # Each topic answered once, as Kafka does (it reads the names into a set); by name,
        # or by topic id from v10 when the name is null.
        wanted: dict[str | uuid.UUID, None] = {}
        async for t in in_slices(requested):
            wanted[t.name if t.name is not None else getattr(t, "topic_id", NO_TOPIC_ID)] = None
        by_id = topics_by_id(kafka) if any(isinstance(key, uuid.UUID) for key in wanted) else {}
        entries = []
        async for key in in_slices(wanted):
            if isinstance(key, uuid.UUID):
                found = by_id.get(key)
                if found is None:
                    entries.append(_error_entry(topic_entity, ErrorCode.unknown_topic_id, None, key))
                elif who.describe_refusal(found.name) is not None:  # ids are not secret; names are
                    entries.append(_error_entry(topic_entity, ErrorCode.topic_authorization_failed, None, key))
                else:
                    entries.append(entry(found))
                continue
            # Denied whether it exists or not, so a name tells nothing about the topics it may
            # not see; one it may see but that is missing needs CREATE to be made.
            if who.describe_refusal(key) is not None or (
                    auto_create and key not in logs.topics and who.create_topic_refusal(key) is not None):
                entries.append(_error_entry(topic_entity, ErrorCode.topic_authorization_failed, key))
                continue
            try:
                entries.append(entry(_lookup(kafka, key, auto_create)))
            except LogError as exc:
                entries.append(_error_entry(topic_entity, kafka_code(exc), key))
    brokers = (build(nested(response, "brokers"), node_id=kafka.node_id, host=kafka.host, port=kafka.port, rack=None),)
    return build(response, throttle_time=NO_THROTTLE, brokers=brokers, cluster_id=kafka.cluster_id,
                 controller_id=kafka.node_id, topics=tuple(entries),
                 cluster_authorized_operations=_cluster_operations(kafka, call, request))


def _cluster_operations(kafka: KafkaContext, call: Call, request: Any) -> int:
    """What the principal may do on the cluster, if the request asks (Metadata v8-10,
    DescribeCluster)."""
    if not getattr(request, "include_cluster_authorized_operations", False):
        return OPERATIONS_NOT_ASKED
    return access(kafka, call).authorized_operations(ResourceType.CLUSTER, CLUSTER_NAME)


async def handle_describe_cluster(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    brokers = (build(nested(response, "brokers"), broker_id=kafka.node_id, host=kafka.host, port=kafka.port,
                     rack=None),)
    if getattr(request, "endpoint_type", 1) != 1:  # 2 = controllers: clients talk to brokers only
        return build(response, throttle_time=NO_THROTTLE, error_code=ErrorCode.unsupported_endpoint_type,
                     error_message="only broker endpoints are served", cluster_id=kafka.cluster_id, brokers=())
    return build(response, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, cluster_id=kafka.cluster_id,
                 controller_id=kafka.node_id, brokers=brokers,
                 cluster_authorized_operations=_cluster_operations(kafka, call, request))
