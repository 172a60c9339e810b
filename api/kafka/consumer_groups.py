"""The consumer group protocol's APIs (KIP-848): ConsumerGroupHeartbeat and
ConsumerGroupDescribe, kio entities in and out of broker/groups/consumer_protocol.py.
A heartbeat takes READ on the group and DESCRIBE on each topic it subscribes to by name,
a description DESCRIBE on the group (Kafka's)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.assignors import Assignment
from broker.groups.consumer_protocol import ConsumerGroup, ConsumerMember, Heartbeat
from broker.security.acls import AclOperation, ResourceType

from .acls import access
from .codec import build, nested
from .context import NO_THROTTLE, Call, KafkaContext
from .groups import group_operations, milliseconds

CONSUMER_MEMBER = 1  # ConsumerGroupDescribe v1's member_type: a consumer protocol member


def _owned(topic_partitions: Any) -> Assignment | None:
    if topic_partitions is None:
        return None
    owned: dict[uuid.UUID, frozenset[int]] = {}
    for entry in topic_partitions:
        owned[entry.topic_id] = owned.get(entry.topic_id, frozenset()) | frozenset(entry.partitions)
    return owned


async def handle_consumer_group_heartbeat(kafka: KafkaContext, call: Call, request: Any) -> Any:
    names = request.subscribed_topic_names
    who = access(kafka, call)
    refused = who.refusal(AclOperation.READ, ResourceType.GROUP, request.group_id)
    hidden = who.refused_topics(AclOperation.DESCRIBE, names or ())
    if refused is not None or hidden:
        code, message = (refused.code, str(refused)) if refused is not None else (
            ErrorCode.topic_authorization_failed,
            f"{who.principal} may not DESCRIBE the topics it subscribes to: {', '.join(sorted(hidden))}")
        return build(call.response_type, throttle_time=NO_THROTTLE, error_code=code, error_message=message,
                     member_id=None, member_epoch=-1, heartbeat_interval=timedelta(0), assignment=None)
    result = kafka.groups.consumer_groups.heartbeat(Heartbeat(
        group_id=request.group_id, member_id=request.member_id, member_epoch=request.member_epoch,
        instance_id=request.instance_id, rack_id=request.rack_id,
        rebalance_timeout_ms=milliseconds(request.rebalance_timeout),
        subscribed_topic_names=None if names is None else tuple(names),
        subscribed_topic_regex=getattr(request, "subscribed_topic_regex", None),  # v1+
        server_assignor=request.server_assignor, owned=_owned(request.topic_partitions),
        client_id=call.client_id, client_host=call.client_host, member_id_required=call.api_version >= 1,
    ))
    response = call.response_type
    assignment = None
    if result.assignment is not None:
        assignment_type = nested(response, "assignment")
        partitions_type = nested(assignment_type, "topic_partitions")
        assignment = build(assignment_type, topic_partitions=tuple(
            build(partitions_type, topic_id=topic_id, partitions=tuple(sorted(ps)))
            for topic_id, ps in sorted(result.assignment.items()) if ps))
    return build(response, throttle_time=NO_THROTTLE, error_code=result.error, error_message=result.message,
                 member_id=result.member_id, member_epoch=result.member_epoch,
                 heartbeat_interval=timedelta(milliseconds=result.heartbeat_interval_ms), assignment=assignment)


def _described_assignment(assignment_type: type, assignment: Assignment, names: Mapping[uuid.UUID, str]) -> Any:
    """Partitions by topic id and name; those of a topic deleted meanwhile are left out."""
    partitions_type = nested(assignment_type, "topic_partitions")
    return build(assignment_type, topic_partitions=tuple(
        build(partitions_type, topic_id=topic_id, topic_name=names[topic_id], partitions=tuple(sorted(ps)))
        for topic_id, ps in sorted(assignment.items()) if ps and topic_id in names))


def _described_member(member_type: type, group: ConsumerGroup, member: ConsumerMember,
                      names: Mapping[uuid.UUID, str]) -> Any:
    assignment_type = nested(member_type, "assignment")
    return build(member_type, member_id=member.member_id, instance_id=member.instance_id, rack_id=member.rack_id,
                 member_epoch=member.member_epoch, client_id=member.client_id, client_host=member.client_host,
                 subscribed_topic_names=tuple(member.subscribed_topic_names),
                 subscribed_topic_regex=member.subscribed_topic_regex,
                 assignment=_described_assignment(assignment_type, member.assigned, names),
                 target_assignment=_described_assignment(assignment_type, group.target.get(member.member_id, {}),
                                                         names),
                 member_type=CONSUMER_MEMBER)


async def handle_consumer_group_describe(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    group_type = nested(response, "groups")
    member_type = nested(group_type, "members")
    coordinator = kafka.groups.consumer_groups
    names = coordinator.topic_names()
    default_assignor = kafka.broker.settings.group_consumer_assignors[0]
    who = access(kafka, call)
    described = []
    for group_id in request.group_ids:
        refused = who.refusal(AclOperation.DESCRIBE, ResourceType.GROUP, group_id)
        if refused is not None:
            described.append(build(group_type, error_code=refused.code, error_message=str(refused),
                                   group_id=group_id, group_state="", group_epoch=-1, assignment_epoch=-1,
                                   assignor_name="", members=()))
            continue
        group = coordinator.groups.get(group_id)
        if group is None:  # librdkafka then asks DescribeGroups, as Kafka's admin client does
            message = f"Group {group_id} is not a consumer group." if kafka.groups.group(group_id) is not None \
                else f"Group {group_id} not found."
            described.append(build(group_type, error_code=ErrorCode.group_id_not_found, error_message=message,
                                   group_id=group_id, group_state="", group_epoch=-1, assignment_epoch=-1,
                                   assignor_name="", members=()))
            continue
        described.append(build(
            group_type, error_code=ErrorCode.none, group_id=group_id, group_state=group.state.value,
            group_epoch=group.group_epoch, assignment_epoch=group.assignment_epoch,
            assignor_name=group.assignor(default_assignor),
            members=tuple(_described_member(member_type, group, m, names) for m in group.members.values()),
            authorized_operations=group_operations(who, request, group_id)))
    return build(response, throttle_time=NO_THROTTLE, groups=tuple(described))
