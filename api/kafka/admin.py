"""Admin APIs: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
AlterConfigs and IncrementalAlterConfigs, over the log manager's topics and configs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from broker.errors import HANDLED, kafka_code
from broker.node import check_partition_count
from broker.security.acls import CLUSTER_NAME, AclOperation, ResourceType
from broker.security.authorizer import Access, AuthorizationError, enforce
from broker.settings import BrokerSettings
from hotlog.config import TOPIC_CONFIGS, altered_list, parse_topic_configs
from hotlog.errors import InvalidConfigError, LogError
from hotlog.manager import Topic

from .acls import access
from .codec import build, has_field, nested
from .context import NO_THROTTLE, Call, KafkaContext
from .metadata import NO_TOPIC_ID, topics_by_id
from .slices import in_slices

TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4
# Kafka's ConfigSource values.
DYNAMIC_TOPIC_CONFIG = 1
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5
# Kafka's ConfigType values.
BOOLEAN, STRING, INT, LONG, DOUBLE, LIST = 1, 2, 3, 5, 6, 7
_INT_CONFIGS = frozenset({"segment.bytes", "segment.index.bytes", "index.interval.bytes", "max.message.bytes",
                          "min.insync.replicas", "compression.gzip.level", "compression.lz4.level",
                          "compression.zstd.level"})
# IncrementalAlterConfigs operations.
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
# Each partition is a folder with open files: a bound keeps one request from exhausting them.


@dataclass(frozen=True)
class ConfigEntry:
    name: str
    value: str
    source: int
    config_type: int
    synonyms: tuple[tuple[str, str, int], ...] = ()


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _config_type(name: str, value: Any) -> int:
    definition = TOPIC_CONFIGS.get(name)
    if definition is not None and definition.list_type:
        return LIST
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INT if name in _INT_CONFIGS else LONG
    if isinstance(value, float):
        return DOUBLE
    return STRING


def topic_configs(kafka: KafkaContext, topic: Topic) -> list[ConfigEntry]:
    """Every config of `topic` with where its value comes from; synonyms strongest first."""
    logs = kafka.broker.logs
    values = logs.config_for(topic).values
    entries = []
    for name, definition in TOPIC_CONFIGS.items():
        broker_name = definition.broker_name or name
        synonyms = []
        if name in topic.overrides:
            synonyms.append((name, _text(topic.overrides[name]), DYNAMIC_TOPIC_CONFIG))
        if name in logs.defaults:
            synonyms.append((broker_name, _text(logs.defaults[name]), STATIC_BROKER_CONFIG))
        synonyms.append((broker_name, _text(definition.default), DEFAULT_CONFIG))
        entries.append(ConfigEntry(name, _text(values[name]), synonyms[0][2], _config_type(name, values[name]),
                                   tuple(synonyms)))
    return entries


def broker_configs(settings: BrokerSettings) -> list[ConfigEntry]:
    """The broker properties tierlog reads, with the topic defaults under their broker names."""
    defaults = BrokerSettings()
    entries = []
    for name, attribute in (
        ("node.id", "node_id"), ("num.partitions", "num_partitions"),
        ("auto.create.topics.enable", "auto_create_topics_enable"),
        ("group.initial.rebalance.delay.ms", "group_initial_rebalance_delay_ms"),
        ("group.min.session.timeout.ms", "group_min_session_timeout_ms"),
        ("group.max.session.timeout.ms", "group_max_session_timeout_ms"),
        ("offsets.topic.num.partitions", "offsets_topic_num_partitions"),
        ("socket.request.max.bytes", "socket_request_max_bytes"),
    ):
        value = getattr(settings, attribute)
        source = DEFAULT_CONFIG if value == getattr(defaults, attribute) else STATIC_BROKER_CONFIG
        entries.append(ConfigEntry(name, _text(value), source, _config_type(name, value)))
    for name, definition in TOPIC_CONFIGS.items():
        if definition.broker_name is None:
            continue
        configured = name in settings.log_defaults
        value = settings.log_defaults[name] if configured else definition.default
        entries.append(ConfigEntry(definition.broker_name, _text(value),
                                   STATIC_BROKER_CONFIG if configured else DEFAULT_CONFIG,
                                   _config_type(name, value)))
    return entries


# -- topics ------------------------------------------------------------------------------


def _new_topic_partitions(kafka: KafkaContext, wanted: Any) -> int:
    """Partition count of a CreateTopics entry; raises _Refused for what one broker cannot do."""
    node = kafka.node_id
    if wanted.assignments:
        if wanted.num_partitions != -1 or wanted.replication_factor != -1:
            raise _Refused(ErrorCode.invalid_request,
                           "with replica assignments, num_partitions and replication_factor must be -1")
        if sorted(a.partition_index for a in wanted.assignments) != list(range(len(wanted.assignments))) or \
                any(tuple(a.broker_ids) != (node,) for a in wanted.assignments):
            raise _Refused(ErrorCode.invalid_replica_assignment,
                           f"partitions 0..n-1, each on broker {node} alone: tierlog runs one broker")
        check_partition_count(len(wanted.assignments))
        return len(wanted.assignments)
    partitions = kafka.broker.settings.num_partitions if wanted.num_partitions == -1 else wanted.num_partitions
    check_partition_count(partitions)
    return int(partitions)



class _Refused(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


async def handle_create_topics(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    topic_entity = nested(response, "topics")
    config_entity = nested(topic_entity, "configs") if has_field(topic_entity, "configs") else None
    named = Counter(t.name for t in request.topics)
    who = access(kafka, call)
    results = []
    async for wanted in in_slices(request.topics):
        message: str | None
        try:
            if named[wanted.name] > 1:
                raise _Refused(ErrorCode.invalid_request, f"topic {wanted.name!r} is named more than once")
            enforce(who.create_topic_refusal(wanted.name))
            partitions = _new_topic_partitions(kafka, wanted)
            configs = {c.name: c.value for c in wanted.configs if c.value is not None}
            topic = kafka.broker.create_topic(wanted.name, partitions, configs, validate_only=request.validate_only,
                                              replication_factor=wanted.replication_factor)
        except _Refused as exc:
            code, message, topic = exc.code, str(exc), None
        except HANDLED as exc:
            code, message, topic = kafka_code(exc), str(exc), None
        else:
            code, message = ErrorCode.none, None
        # Its configs are told to those who may DESCRIBE_CONFIGS it (Kafka's topic_config_error_code).
        configs_shown = who.may(AclOperation.DESCRIBE_CONFIGS, ResourceType.TOPIC, wanted.name, count=False)
        configs_out = () if topic is None or config_entity is None or not configs_shown else tuple(
            build(config_entity, name=e.name, value=e.value, read_only=False, config_source=e.source,
                  is_sensitive=False)
            for e in topic_configs(kafka, topic)
        )
        results.append(build(
            topic_entity, name=wanted.name, topic_id=NO_TOPIC_ID if topic is None else topic.topic_id,
            error_code=code, error_message=message,
            topic_config_error_code=ErrorCode.none if configs_shown else ErrorCode.topic_authorization_failed,
            num_partitions=-1 if topic is None else topic.partitions,
            replication_factor=-1 if topic is None else 1, configs=configs_out,
        ))
    return build(response, throttle_time=NO_THROTTLE, topics=tuple(results))


async def handle_delete_topics(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    entity = nested(response, "responses")
    if call.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, NO_TOPIC_ID) for name in request.topic_names]
    by_id = topics_by_id(kafka) if any(name is None for name, _ in wanted) else {}
    who = access(kafka, call)
    results = []
    async for name, topic_id in in_slices(wanted):
        try:
            if name is None:
                found = by_id.get(topic_id)
                if found is None:
                    results.append(build(entity, name=None, topic_id=topic_id, error_code=ErrorCode.unknown_topic_id,
                                         error_message=f"no topic has id {topic_id}"))
                    continue
                if who.describe_refusal(found.name) is not None:  # its name is not told
                    results.append(build(entity, name=None, topic_id=topic_id,
                                         error_code=ErrorCode.topic_authorization_failed,
                                         error_message=f"{who.principal} may not DESCRIBE topic id {topic_id}"))
                    continue
                name = found.name
            enforce(who.delete_topic_refusal(name))
            topic = await kafka.broker.delete_topic(name)
        except _Refused as exc:
            results.append(build(entity, name=name, topic_id=topic_id, error_code=exc.code, error_message=str(exc)))
        except HANDLED as exc:  # a full disk too: KAFKA_STORAGE_ERROR for this topic, the connection kept
            results.append(build(entity, name=name, topic_id=topic_id, error_code=kafka_code(exc),
                                 error_message=str(exc)))
        else:
            results.append(build(entity, name=name, topic_id=topic.topic_id, error_code=ErrorCode.none,
                                 error_message=None))
    return build(response, throttle_time=NO_THROTTLE, responses=tuple(results))


async def handle_create_partitions(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    entity = nested(response, "results")
    logs = kafka.broker.logs
    who = access(kafka, call)
    results = []
    async for wanted in in_slices(request.topics):
        try:
            who.check(AclOperation.ALTER, ResourceType.TOPIC, wanted.name)
            topic = logs.topic(wanted.name)
            if wanted.count <= topic.partitions:
                raise _Refused(ErrorCode.invalid_partitions,
                               f"topic {wanted.name!r} has {topic.partitions} partitions; the new count must be larger")
            check_partition_count(wanted.count)
            if wanted.assignments and any(tuple(a.broker_ids) != (kafka.node_id,) for a in wanted.assignments):
                raise _Refused(ErrorCode.invalid_replica_assignment,
                               f"every partition lives on broker {kafka.node_id}: tierlog runs one broker")
            if not request.validate_only:
                logs.add_partitions(wanted.name, wanted.count)
        except _Refused as exc:
            results.append(build(entity, name=wanted.name, error_code=exc.code, error_message=str(exc)))
        except HANDLED as exc:
            results.append(build(entity, name=wanted.name, error_code=kafka_code(exc), error_message=str(exc)))
        else:
            results.append(build(entity, name=wanted.name, error_code=ErrorCode.none, error_message=None))
    return build(response, throttle_time=NO_THROTTLE, results=tuple(results))


# -- configs -----------------------------------------------------------------------------


def _check_config_access(who: Access, operation: AclOperation, resource_type: int, name: str) -> None:
    """DESCRIBE_CONFIGS or ALTER_CONFIGS on the topic, or for the broker's on the cluster."""
    if resource_type == TOPIC_RESOURCE:
        who.check(operation, ResourceType.TOPIC, name)
    elif resource_type == BROKER_RESOURCE:
        who.check(operation, ResourceType.CLUSTER, CLUSTER_NAME)


def _resource_configs(kafka: KafkaContext, resource_type: int, name: str) -> list[ConfigEntry]:
    if resource_type == TOPIC_RESOURCE:
        return topic_configs(kafka, kafka.broker.logs.topic(name))
    if resource_type == BROKER_RESOURCE:
        if name not in ("", str(kafka.node_id)):
            raise _Refused(ErrorCode.invalid_request, f"broker {name!r} is not this broker ({kafka.node_id})")
        return broker_configs(kafka.broker.settings)
    raise _Refused(ErrorCode.invalid_request, f"resource type {resource_type} is not supported")


async def handle_describe_configs(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    result_entity = nested(response, "results")
    config_entity = nested(result_entity, "configs")
    synonym_entity = nested(config_entity, "synonyms")
    with_synonyms = request.include_synonyms
    who = access(kafka, call)
    results = []
    async for resource in in_slices(request.resources):
        code, message, entries = ErrorCode.none, None, []
        try:
            _check_config_access(who, AclOperation.DESCRIBE_CONFIGS, resource.resource_type, resource.resource_name)
            entries = _resource_configs(kafka, resource.resource_type, resource.resource_name)
        except (_Refused, AuthorizationError) as exc:
            code, message = exc.code, str(exc)
        except LogError as exc:
            code, message = kafka_code(exc), str(exc)
        keys = None if resource.configuration_keys is None else frozenset(resource.configuration_keys)
        configs = tuple(
            build(config_entity, name=e.name, value=e.value, read_only=resource.resource_type != TOPIC_RESOURCE,
                  config_source=e.source, is_sensitive=False, config_type=e.config_type, documentation=None,
                  synonyms=tuple(build(synonym_entity, name=n, value=v, source=s) for n, v, s in e.synonyms)
                  if with_synonyms else ())
            for e in entries if keys is None or e.name in keys
        )
        results.append(build(result_entity, error_code=code, error_message=message,
                             resource_type=resource.resource_type, resource_name=resource.resource_name,
                             configs=configs))
    return build(response, throttle_time=NO_THROTTLE, results=tuple(results))


def _alter_topic(kafka: KafkaContext, name: str, set_configs: dict[str, str], delete: tuple[str, ...],
                 validate_only: bool) -> None:
    logs = kafka.broker.logs
    logs.topic(name)
    if validate_only:
        parse_topic_configs(set_configs)
        unknown = [n for n in delete if n not in TOPIC_CONFIGS]
        if unknown:
            raise InvalidConfigError(f"unknown topic config {unknown[0]!r}")
        return
    logs.alter_topic_configs(name, set_configs, delete)


async def _alter_response(kafka: KafkaContext, call: Call, request: Any,
                    changes: Callable[[Any], tuple[dict[str, str], tuple[str, ...]]]) -> Any:
    """Apply `changes(resource) -> (set, delete)` to each topic resource of an alter request."""
    response = call.response_type
    entity = nested(response, "responses")
    who = access(kafka, call)
    results = []
    async for resource in in_slices(request.resources):
        code, message = ErrorCode.none, None
        try:
            _check_config_access(who, AclOperation.ALTER_CONFIGS, resource.resource_type, resource.resource_name)
            if resource.resource_type != TOPIC_RESOURCE:
                raise _Refused(ErrorCode.invalid_request,
                               "only topic configs can be altered; broker properties are set at start-up")
            set_configs, delete = changes(resource)
            _alter_topic(kafka, resource.resource_name, set_configs, delete, request.validate_only)
        except (_Refused, AuthorizationError) as exc:
            code, message = exc.code, str(exc)
        except LogError as exc:
            code, message = kafka_code(exc), str(exc)
        results.append(build(entity, error_code=code, error_message=message, resource_type=resource.resource_type,
                             resource_name=resource.resource_name))
    return build(response, throttle_time=NO_THROTTLE, responses=tuple(results))


async def handle_incremental_alter_configs(kafka: KafkaContext, call: Call, request: Any) -> Any:
    def changes(resource: Any) -> tuple[dict[str, str], tuple[str, ...]]:
        names = Counter(config.name for config in resource.configs)
        if any(count > 1 for count in names.values()):
            raise _Refused(ErrorCode.invalid_request, "Error due to duplicate config keys")
        current = kafka.broker.logs.config_for(kafka.broker.logs.topic(resource.resource_name))
        set_configs: dict[str, str] = {}
        delete: list[str] = []
        for config in resource.configs:
            operation = config.config_operation
            if operation == DELETE or (operation == SET and config.value is None):  # Kafka: SET null deletes
                delete.append(config.name)
            elif operation == SET:
                set_configs[config.name] = config.value
            elif operation in (APPEND, SUBTRACT):
                if config.value is None:
                    raise _Refused(ErrorCode.invalid_config, f"{config.name}: APPEND and SUBTRACT need a value")
                set_configs[config.name] = altered_list(config.name, _text(current.values.get(config.name, "")),
                                                        config.value, append=operation == APPEND)
            else:
                raise _Refused(ErrorCode.invalid_request, f"{config.name}: unknown operation {operation}")
        return set_configs, tuple(delete)

    return await _alter_response(kafka, call, request, changes)


async def handle_alter_configs(kafka: KafkaContext, call: Call, request: Any) -> Any:
    def changes(resource: Any) -> tuple[dict[str, str], tuple[str, ...]]:
        # AlterConfigs replaces the whole set: overrides it leaves out are removed.
        set_configs = {c.name: c.value for c in resource.configs if c.value is not None}
        overrides = kafka.broker.logs.topic(resource.resource_name).overrides
        return set_configs, tuple(name for name in overrides if name not in set_configs)

    return await _alter_response(kafka, call, request, changes)
