"""Consumer group APIs: kio entities in and out of the group coordinator.

Authorization as Kafka's: READ on the group to join, sync, heartbeat, leave and commit
(and READ on each topic committed), DESCRIBE on it to fetch offsets (and DESCRIBE on each
topic), to describe it, to find its coordinator and to list it, DELETE to delete it or its
offsets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.membership import GroupProtocol, GroupState, JoinRequest
from broker.groups.offset_store import TopicPartition
from broker.groups.offsets import OffsetCommit
from broker.security.acls import CLUSTER_NAME, AclOperation, ResourceType
from broker.security.authorizer import OPERATIONS_NOT_ASKED, Access, AuthorizationError

from .acls import access
from .codec import build, nested
from .context import NO_THROTTLE, Call, KafkaContext
from .slices import Slices, in_slices

GROUP_KEY = 0
TRANSACTION_KEY = 1
NO_NODE = (-1, "", -1)


def _group_refusal(kafka: KafkaContext, call: Call, operation: AclOperation, group_id: str) -> AuthorizationError | None:
    return access(kafka, call).refusal(operation, ResourceType.GROUP, group_id)


def milliseconds(delta: Any) -> int:
    """A kio duration field (a timedelta) as Kafka's milliseconds (-1 stays -1)."""
    return int(delta.total_seconds() * 1000)


def _coordinator(kafka: KafkaContext, who: Access, key_type: int, key: str) -> tuple[ErrorCode, str | None,
                                                                                   tuple[int, str, int]]:
    """(error, message, node) for one key: one broker coordinates groups and transactions
    both, for those who may DESCRIBE the group or the transactional id."""
    if key_type not in (GROUP_KEY, TRANSACTION_KEY):
        return ErrorCode.invalid_request, f"unknown coordinator key type {key_type}", NO_NODE
    resource = ResourceType.GROUP if key_type == GROUP_KEY else ResourceType.TRANSACTIONAL_ID
    refused = who.refusal(AclOperation.DESCRIBE, resource, key)
    if refused is not None:
        return refused.code, str(refused), NO_NODE
    return ErrorCode.none, None, (kafka.node_id, kafka.host, kafka.port)


async def handle_find_coordinator(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    key_type = getattr(request, "key_type", GROUP_KEY)
    who = access(kafka, call)
    if call.api_version < 4:
        error, message, node = _coordinator(kafka, who, key_type, request.key)
        return build(response, throttle_time=NO_THROTTLE, error_code=error, error_message=message,
                     node_id=node[0], host=node[1], port=node[2])
    entity = nested(response, "coordinators")
    answers = [(key, *_coordinator(kafka, who, key_type, key)) for key in request.coordinator_keys]
    return build(response, throttle_time=NO_THROTTLE, coordinators=tuple(
        build(entity, key=key, node_id=node[0], host=node[1], port=node[2], error_code=error, error_message=message)
        for key, error, message, node in answers
    ))


async def handle_join_group(kafka: KafkaContext, call: Call, request: Any) -> Any:
    refused = _group_refusal(kafka, call, AclOperation.READ, request.group_id)
    if refused is not None:
        return build(call.response_type, throttle_time=NO_THROTTLE, error_code=refused.code, generation_id=-1,
                     protocol_type=None, protocol_name="", leader="", skip_assignment=False, member_id="",
                     members=())
    session_ms = milliseconds(request.session_timeout)
    rebalance = getattr(request, "rebalance_timeout", None)  # v0: the session timeout bounds rebalances
    result = await kafka.groups.join(JoinRequest(
        group_id=request.group_id, member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        protocol_type=request.protocol_type,
        protocols=tuple(GroupProtocol(p.name, p.metadata) for p in request.protocols),
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=session_ms if rebalance is None else milliseconds(rebalance),
        client_id=call.client_id, client_host=call.client_host,
        require_known_member_id=call.api_version >= 4, supports_skip_assignment=call.api_version >= 9,
    ))
    response = call.response_type
    member_entity = nested(response, "members")
    return build(
        response, throttle_time=NO_THROTTLE, error_code=result.error, generation_id=result.generation_id,
        protocol_type=result.protocol_type, protocol_name=result.protocol_name or "", leader=result.leader_id,
        skip_assignment=result.skip_assignment, member_id=result.member_id,
        members=tuple(build(member_entity, member_id=m.member_id, group_instance_id=m.group_instance_id,
                            metadata=m.metadata) for m in result.members),
    )


async def handle_sync_group(kafka: KafkaContext, call: Call, request: Any) -> Any:
    refused = _group_refusal(kafka, call, AclOperation.READ, request.group_id)
    if refused is not None:
        return build(call.response_type, throttle_time=NO_THROTTLE, error_code=refused.code, protocol_type=None,
                     protocol_name=None, assignment=b"")
    result = await kafka.groups.membership.sync(
        request.group_id, request.generation_id, request.member_id, getattr(request, "group_instance_id", None),
        getattr(request, "protocol_type", None), getattr(request, "protocol_name", None),
        {a.member_id: a.assignment for a in request.assignments},
    )
    return build(call.response_type, throttle_time=NO_THROTTLE, error_code=result.error,
                 protocol_type=result.protocol_type, protocol_name=result.protocol_name, assignment=result.assignment)


async def handle_heartbeat(kafka: KafkaContext, call: Call, request: Any) -> Any:
    refused = _group_refusal(kafka, call, AclOperation.READ, request.group_id)
    if refused is not None:
        return build(call.response_type, throttle_time=NO_THROTTLE, error_code=refused.code)
    error = kafka.groups.membership.heartbeat(request.group_id, request.generation_id, request.member_id,
                                   getattr(request, "group_instance_id", None))
    return build(call.response_type, throttle_time=NO_THROTTLE, error_code=error)


async def handle_leave_group(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    refused = _group_refusal(kafka, call, AclOperation.READ, request.group_id)
    if refused is not None:
        return build(response, throttle_time=NO_THROTTLE, error_code=refused.code, members=())
    if call.api_version < 3:
        (error,) = kafka.groups.membership.leave(request.group_id, [(request.member_id, None)])
        return build(response, throttle_time=NO_THROTTLE, error_code=error)
    leaving = [(m.member_id, m.group_instance_id) for m in request.members]
    errors = kafka.groups.membership.leave(request.group_id, leaving)
    entity = nested(response, "members")
    return build(response, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, members=tuple(
        build(entity, member_id=member_id, group_instance_id=instance_id, error_code=error)
        for (member_id, instance_id), error in zip(leaving, errors)
    ))


async def handle_offset_commit(kafka: KafkaContext, call: Call, request: Any) -> Any:
    offsets = commits_of(request.topics)
    who = access(kafka, call)
    refused = who.refusal(AclOperation.READ, ResourceType.GROUP, request.group_id)
    if refused is not None:
        return commit_response(call.response_type, request.topics, dict.fromkeys(offsets, refused.code))
    unreadable = unreadable_commits(who, offsets)
    errors = await kafka.groups.offsets.commit(
        request.group_id, request.generation_id_or_member_epoch, request.member_id,
        getattr(request, "group_instance_id", None), offsets, carries_epoch=call.api_version >= 9,
    ) if offsets else {}
    return commit_response(call.response_type, request.topics, {**errors, **unreadable})


def unreadable_commits(who: Access, offsets: dict[TopicPartition, OffsetCommit]) -> dict[TopicPartition, ErrorCode]:
    """Take out of `offsets` the partitions of topics the principal may not READ; their
    answer (Kafka commits the others)."""
    refused = who.refused_topics(AclOperation.READ, (tp.topic for tp in offsets))
    unreadable = {tp: ErrorCode.topic_authorization_failed for tp in offsets if tp.topic in refused}
    for tp in unreadable:
        del offsets[tp]
    return unreadable


def commits_of(topics: Any) -> dict[TopicPartition, OffsetCommit]:
    """The partitions of an OffsetCommit or TxnOffsetCommit request and what they commit."""
    return {
        TopicPartition(topic.name, p.partition_index): OffsetCommit(
            p.committed_offset, getattr(p, "committed_leader_epoch", -1), p.committed_metadata)  # epoch: v6+
        for topic in topics for p in topic.partitions
    }


def commit_response(response: type, topics: Any, errors: Mapping[TopicPartition, ErrorCode]) -> Any:
    """An OffsetCommit or TxnOffsetCommit response: one error per requested partition."""
    topic_entity = nested(response, "topics")
    partition_entity = nested(topic_entity, "partitions")
    return build(response, throttle_time=NO_THROTTLE, topics=tuple(
        build(topic_entity, name=topic.name, partitions=tuple(
            build(partition_entity, partition_index=p.partition_index,
                  error_code=errors[TopicPartition(topic.name, p.partition_index)])
            for p in topic.partitions
        ))
        for topic in topics
    ))


async def _committed_topics(kafka: KafkaContext, who: Access, group_id: str, topics: Any, topic_entity: type,
                            require_stable: bool, slices: Slices) -> tuple[Any, ...]:
    """The committed offsets of topics the principal may DESCRIBE: a named topic it may not
    gets TOPIC_AUTHORIZATION_FAILED, one it did not name is left out (Kafka's)."""
    partition_entity = nested(topic_entity, "partitions")
    wanted = None if topics is None else [TopicPartition(t.name, p) for t in topics for p in t.partition_indexes]
    hidden = who.refused_topics(AclOperation.DESCRIBE, (tp.topic for tp in wanted or ()))
    unstable = kafka.groups.offsets.pending_in_transactions(group_id) if require_stable else set()
    by_topic: dict[str, list[Any]] = {}
    for tp in wanted or ():
        if tp.topic in hidden:
            by_topic.setdefault(tp.topic, []).append(build(
                partition_entity, partition_index=tp.partition, error_code=ErrorCode.topic_authorization_failed,
                committed_offset=-1, committed_leader_epoch=-1, metadata=""))
    committed_offsets = sorted(kafka.groups.offsets.committed(
        group_id, None if wanted is None else [tp for tp in wanted if tp.topic not in hidden]).items())
    async for (topic, partition), committed in in_slices(committed_offsets, slices):
        if wanted is None and not who.may(AclOperation.DESCRIBE, ResourceType.TOPIC, topic, count=False):
            continue
        by_topic.setdefault(topic, []).append(build(
            partition_entity, partition_index=partition,
            error_code=ErrorCode.unstable_offset_commit if (topic, partition) in unstable else ErrorCode.none,
            committed_offset=-1 if committed is None else committed.offset,
            committed_leader_epoch=-1 if committed is None else committed.leader_epoch,
            metadata="" if committed is None else committed.metadata,
        ))
    return tuple(build(topic_entity, name=t, partitions=tuple(ps)) for t, ps in by_topic.items())


async def handle_offset_fetch(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    require_stable = getattr(request, "require_stable", False)  # v7+, KIP-447
    who = access(kafka, call)
    if call.api_version < 8:
        refused = who.refusal(AclOperation.DESCRIBE, ResourceType.GROUP, request.group_id)
        if refused is not None:
            return build(response, throttle_time=NO_THROTTLE, error_code=refused.code, topics=())
        topics = await _committed_topics(kafka, who, request.group_id, request.topics, nested(response, "topics"),
                                         require_stable, Slices())
        return build(response, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, topics=topics)
    group_entity = nested(response, "groups")
    topic_entity = nested(group_entity, "topics")
    slices = Slices()
    answered = []
    async for g in in_slices(request.groups, slices):
        # v9+: a consumer protocol member says who it is (KIP-848).
        refused = who.refusal(AclOperation.DESCRIBE, ResourceType.GROUP, g.group_id)
        error = refused.code if refused is not None else kafka.groups.consumer_groups.fetch_error(
            g.group_id, getattr(g, "member_id", None), getattr(g, "member_epoch", -1))
        topics = () if error else \
            await _committed_topics(kafka, who, g.group_id, g.topics, topic_entity, require_stable, slices)
        answered.append(build(group_entity, group_id=g.group_id, error_code=error, topics=topics))
    return build(response, throttle_time=NO_THROTTLE, groups=tuple(answered))


async def handle_list_groups(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    # Both filters ignore case, as Kafka's; states v4+, types v5+ (KIP-848).
    states = {s.strip().lower() for s in getattr(request, "states_filter", ())}
    types = {t.strip().lower() for t in getattr(request, "types_filter", ())}
    entity = nested(response, "groups")
    who = access(kafka, call)  # DESCRIBE on the cluster lists all; else those it may DESCRIBE
    every = who.may(AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME, count=False)
    return build(response, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, groups=tuple(
        build(entity, group_id=g.group_id, protocol_type=g.protocol_type, group_state=g.state,
              group_type=g.group_type)
        for g in kafka.groups.groups()
        if (not states or g.state.lower() in states) and (not types or g.group_type in types)
        and (every or who.may(AclOperation.DESCRIBE, ResourceType.GROUP, g.group_id, count=False))
    ))


async def handle_describe_groups(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    group_entity = nested(response, "groups")
    member_entity = nested(group_entity, "members")
    who = access(kafka, call)
    described = []
    for group_id in request.groups:
        refused = who.refusal(AclOperation.DESCRIBE, ResourceType.GROUP, group_id)
        if refused is not None:
            described.append(build(group_entity, error_code=refused.code, group_id=group_id, group_state="",
                                   protocol_type="", protocol_data="", members=()))
            continue
        group = kafka.groups.group(group_id)
        # A consumer protocol group is Dead to DescribeGroups before v6 (Kafka 4:
        # ConsumerGroupDescribe describes it).
        if group is None or group_id in kafka.groups.consumer_groups.groups:
            described.append(build(group_entity, error_code=ErrorCode.none, group_id=group_id,
                                   group_state=GroupState.DEAD.value, protocol_type="", protocol_data="", members=(),
                                   authorized_operations=group_operations(who, request, group_id)))
            continue
        stable = group.state is GroupState.STABLE
        members = tuple(
            build(member_entity, member_id=m.member_id, group_instance_id=m.group_instance_id, client_id=m.client_id,
                  client_host=m.client_host, member_metadata=m.metadata_for(group.protocol_name),
                  member_assignment=m.assignment if stable else b"")
            for m in group.members.values()
        )
        described.append(build(group_entity, error_code=ErrorCode.none, group_id=group_id,
                               group_state=group.state.value, protocol_type=group.protocol_type or "",
                               protocol_data=group.protocol_name or "", members=members,
                               authorized_operations=group_operations(who, request, group_id)))
    return build(response, throttle_time=NO_THROTTLE, groups=tuple(described))


def group_operations(who: Access, request: Any, group_id: str) -> int:
    """What the principal may do on the group, if the request asks (DescribeGroups v3+,
    ConsumerGroupDescribe)."""
    if not getattr(request, "include_authorized_operations", False):
        return OPERATIONS_NOT_ASKED
    return who.authorized_operations(ResourceType.GROUP, group_id)


async def handle_delete_groups(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    who = access(kafka, call)
    refused = {g: r.code for g in request.groups_names
               if (r := who.refusal(AclOperation.DELETE, ResourceType.GROUP, g)) is not None}
    deleted = await kafka.groups.delete_groups([g for g in request.groups_names if g not in refused])
    results = {g: refused[g] if g in refused else deleted[g] for g in dict.fromkeys(request.groups_names)}
    entity = nested(response, "results")
    return build(response, throttle_time=NO_THROTTLE, results=tuple(
        build(entity, group_id=group_id, error_code=error) for group_id, error in results.items()
    ))


async def handle_offset_delete(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    topic_type = nested(response, "topics")
    partition_type = nested(topic_type, "partitions")
    wanted = [TopicPartition(t.name, p.partition_index) for t in request.topics for p in t.partitions]
    who = access(kafka, call)
    refused = who.refusal(AclOperation.DELETE, ResourceType.GROUP, request.group_id)
    if refused is not None:
        return build(response, error_code=refused.code, throttle_time=NO_THROTTLE, topics=())
    unreadable_topics = who.refused_topics(AclOperation.READ, (tp.topic for tp in wanted))
    unreadable = {tp: ErrorCode.topic_authorization_failed for tp in wanted if tp.topic in unreadable_topics}
    deleted = await kafka.groups.delete_offsets(request.group_id, [tp for tp in wanted if tp not in unreadable])
    by_topic: dict[str, list[Any]] = {}
    for tp, error in {**deleted.partitions, **unreadable}.items():
        by_topic.setdefault(tp.topic, []).append(build(partition_type, partition_index=tp.partition, error_code=error))
    return build(response, error_code=deleted.error, throttle_time=NO_THROTTLE,
                 topics=tuple(build(topic_type, name=name, partitions=tuple(parts)) for name, parts in by_topic.items()))
