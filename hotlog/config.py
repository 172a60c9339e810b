"""Topic configs: Kafka's names, types and defaults, and the broker properties that set them.

A topic stores only the configs it overrides; everything else comes from the broker
defaults, which start at Kafka's defaults and can be changed with broker property names
(`log.segment.bytes`, `log.retention.ms`, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import InvalidConfigError
from .records import CODECS

LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class ConfigDef:
    name: str
    kind: type  # int, float, bool or str
    default: Any
    broker_name: str | None
    check: Callable[[Any], str | None] = lambda v: None
    doc: str = ""
    list_type: bool = False  # Kafka's LIST: comma-separated items, which IncrementalAlterConfigs may APPEND or SUBTRACT

    def parse(self, raw: Any, shown_as: str | None = None) -> Any:
        """Parse a value given as text (Kafka protocol, CLI) or as a Python value; errors name
        it `shown_as` (a broker property) or the topic config name."""
        name = shown_as or self.name
        value: bool | int | float | str
        if self.kind is bool:
            if isinstance(raw, bool):
                value = raw
            elif str(raw).lower() in ("true", "false"):
                value = str(raw).lower() == "true"
            else:
                raise InvalidConfigError(f"{name}: expected true or false, got {raw!r}")
        elif self.kind is int:
            try:
                value = int(raw)
            except (TypeError, ValueError):
                raise InvalidConfigError(f"{name}: expected an integer, got {raw!r}") from None
        elif self.kind is float:
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise InvalidConfigError(f"{name}: expected a number, got {raw!r}") from None
        else:
            value = str(raw)
        problem = self.check(value)
        if problem:
            raise InvalidConfigError(f"{name}={raw}: {problem}")
        return value


def _at_least(low: int) -> Callable[[int], str | None]:
    return lambda v: None if v >= low else f"must be at least {low}"


def _between(low: int, high: int) -> Callable[[int], str | None]:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


def _only_false(v: bool) -> str | None:
    return None if not v else "tierlog supports only false: it cannot stop a tiered topic's uploads on their own"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _retention(v: int) -> str | None:
    return None if v >= -1 else "must be -1 (unlimited) or at least 0"


def _local_retention(v: int) -> str | None:
    return None if v >= -2 else "must be -2 (same as retention), -1 (unlimited) or at least 0"


def _ratio(v: float) -> str | None:
    return None if 0.0 <= v <= 1.0 else "must be between 0 and 1"


def list_items(value: str) -> list[str]:
    """The items of a LIST config, parsed as Kafka does: comma-separated, trimmed; "" has none."""
    return [item.strip() for item in value.split(",")] if value.strip() else []


def cleanup_policies(value: str) -> list[str]:
    """`cleanup.policy` is a list, as in Kafka: `delete`, `compact`, both, or neither ("")."""
    return list_items(value)


def _cleanup_policy(v: str) -> str | None:
    policies = cleanup_policies(v)
    if not set(policies) <= {"delete", "compact"} or len(set(policies)) != len(policies):
        return "must be delete, compact, compact,delete or empty"
    return None


def _throttled_replicas(v: str) -> str | None:
    """Kafka's ThrottledReplicaListValidator: `*`, or `partition:broker` pairs."""
    if v.strip() == "*" or all(re.fullmatch(r"[0-9]+:[0-9]+", item) for item in list_items(v)):
        return None
    return "must be * or a list of partitionId:brokerId"


# Kafka 3.x's MetadataVersion releases, each with how many IVs it has ("2.8", "2.8-IV0", "2.8-IV1"):
# message.format.version takes one of these, as Kafka 3.x does, and then ignores it.
_RELEASE_IVS = {
    "0.8.0": 0, "0.8.1": 0, "0.8.2": 0, "0.9.0": 0, "0.10.0": 2, "0.10.1": 3, "0.10.2": 1, "0.11.0": 3,
    "1.0": 1, "1.1": 1, "2.0": 2, "2.1": 3, "2.2": 2, "2.3": 2, "2.4": 2, "2.5": 1, "2.6": 1, "2.7": 3,
    "2.8": 2, "3.0": 2, "3.1": 1, "3.2": 1, "3.3": 4, "3.4": 1, "3.5": 3, "3.6": 3, "3.7": 5, "3.8": 1, "3.9": 1,
}
_METADATA_VERSIONS = frozenset(_RELEASE_IVS) | {f"{r}-IV{i}" for r, ivs in _RELEASE_IVS.items() for i in range(ivs)}


def _message_format_version(v: str) -> str | None:
    """Kafka's MetadataVersion.fromVersionString: "2.8.1" is release 2.8 ("0.10.2.1": 0.10.2)."""
    parts = v.split(".")
    release = ".".join(parts[: 3 if v.startswith("0.") else 2])
    return None if release in _METADATA_VERSIONS else f"{v!r} is not a valid version (as 2.8 or 3.0-IV1)"


def _level_or_default(low: int, high: int, default: int) -> Callable[[int], str | None]:
    return lambda v: None if low <= v <= high or v == default else f"must be {default} or between {low} and {high}"


# Kafka's names for the codecs of compression.type; `producer` keeps each batch's own.
TOPIC_CODECS = {"uncompressed": CODECS["none"], **{name: c for name, c in CODECS.items() if name != "none"}}
PRODUCER_CODEC = "producer"


TOPIC_CONFIGS: dict[str, ConfigDef] = {
    c.name: c
    for c in (
        ConfigDef("segment.bytes", int, 1024**3, "log.segment.bytes", _between(14, INT_MAX)),
        ConfigDef("segment.ms", int, 7 * 24 * 3600 * 1000, "log.roll.ms", _at_least(1)),
        ConfigDef("segment.index.bytes", int, 10 * 1024**2, "log.index.size.max.bytes", _between(4096, INT_MAX)),
        ConfigDef("index.interval.bytes", int, 4096, "log.index.interval.bytes", _between(0, INT_MAX)),
        ConfigDef("retention.ms", int, 7 * 24 * 3600 * 1000, "log.retention.ms", _retention),
        ConfigDef("retention.bytes", int, -1, "log.retention.bytes", _retention),
        ConfigDef("local.retention.ms", int, -2, "log.local.retention.ms", _local_retention),
        ConfigDef("local.retention.bytes", int, -2, "log.local.retention.bytes", _local_retention),
        ConfigDef("remote.storage.enable", bool, True, "remote.log.storage.system.enable"),
        # Acknowledge acks=all only once the batches are in the bucket's write-ahead log.
        ConfigDef("remote.wal.enable", bool, False, "log.remote.wal.enable"),
        ConfigDef("cleanup.policy", str, "delete", "log.cleanup.policy", _cleanup_policy, list_type=True),
        # What the log cleaner does with a compacted topic (Kafka's names and defaults).
        ConfigDef("min.cleanable.dirty.ratio", float, 0.5, "log.cleaner.min.cleanable.ratio", _ratio),
        ConfigDef("min.compaction.lag.ms", int, 0, "log.cleaner.min.compaction.lag.ms", _at_least(0)),
        ConfigDef("max.compaction.lag.ms", int, LONG_MAX, "log.cleaner.max.compaction.lag.ms", _at_least(1)),
        ConfigDef("delete.retention.ms", int, 86_400_000, "log.cleaner.delete.retention.ms", _at_least(0)),
        # How long the objects of segments a clean replaced stay for readers still on them.
        ConfigDef("file.delete.delay.ms", int, 60_000, "log.segment.delete.delay.ms", _at_least(0)),
        ConfigDef("max.message.bytes", int, 1048588, "message.max.bytes", _between(0, INT_MAX)),
        ConfigDef("message.timestamp.type", str, "CreateTime", "log.message.timestamp.type",
                  _one_of("CreateTime", "LogAppendTime")),
        # Kafka leaves flushing to replication; a single-node log fsyncs at least every second.
        ConfigDef("flush.messages", int, LONG_MAX, "log.flush.interval.messages", _at_least(1)),
        ConfigDef("flush.ms", int, 1000, "log.flush.interval.ms", _at_least(0)),
        # Batches in another codec are recompressed at append, with the codec's level (Kafka's LogValidator).
        ConfigDef("compression.type", str, PRODUCER_CODEC, "compression.type", _one_of(*TOPIC_CODECS, PRODUCER_CODEC)),
        ConfigDef("compression.gzip.level", int, -1, "compression.gzip.level", _level_or_default(1, 9, -1)),
        ConfigDef("compression.lz4.level", int, 9, "compression.lz4.level", _between(1, 17)),
        ConfigDef("compression.zstd.level", int, 3, "compression.zstd.level", _between(-131072, 22)),
        # Accepted with Kafka's defaults and without effect; docs/operations.md says why for each.
        ConfigDef("segment.jitter.ms", int, 0, "log.roll.jitter.ms", _at_least(0)),
        ConfigDef("preallocate", bool, False, "log.preallocate"),
        ConfigDef("min.insync.replicas", int, 1, "min.insync.replicas", _at_least(1)),
        ConfigDef("unclean.leader.election.enable", bool, False, "unclean.leader.election.enable"),
        ConfigDef("leader.replication.throttled.replicas", str, "", None, _throttled_replicas, list_type=True),
        ConfigDef("follower.replication.throttled.replicas", str, "", None, _throttled_replicas, list_type=True),
        ConfigDef("message.format.version", str, "3.0-IV1", "log.message.format.version", _message_format_version),
        ConfigDef("message.downconversion.enable", bool, True, "log.message.downconversion.enable"),
        ConfigDef("message.timestamp.difference.max.ms", int, LONG_MAX, "log.message.timestamp.difference.max.ms",
                  _at_least(0)),
        ConfigDef("message.timestamp.before.max.ms", int, LONG_MAX, "log.message.timestamp.before.max.ms",
                  _at_least(0)),
        ConfigDef("message.timestamp.after.max.ms", int, LONG_MAX, "log.message.timestamp.after.max.ms",
                  _at_least(0)),
        # KIP-950: only their defaults, as tierlog cannot stop a tiered topic's uploads alone.
        ConfigDef("remote.log.copy.disable", bool, False, None, _only_false),
        ConfigDef("remote.log.delete.on.disable", bool, False, None, _only_false),
    )
}

BROKER_TO_TOPIC: dict[str, str] = {c.broker_name: c.name for c in TOPIC_CONFIGS.values() if c.broker_name}


def parse_topic_configs(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate topic config overrides; unknown names and bad values raise InvalidConfigError."""
    parsed: dict[str, Any] = {}
    for name, value in raw.items():
        definition = TOPIC_CONFIGS.get(name)
        if definition is None:
            raise InvalidConfigError(f"unknown topic config {name!r}")
        parsed[name] = definition.parse(value)
    return parsed


def altered_list(name: str, current: str, operand: str, *, append: bool) -> str:
    """IncrementalAlterConfigs APPEND or SUBTRACT on the LIST config `name`, as Kafka's
    controller does: APPEND adds the operand's items not there yet, at the end; SUBTRACT
    removes them. Other configs raise InvalidConfigError."""
    definition = TOPIC_CONFIGS.get(name)
    if definition is None:
        raise InvalidConfigError(f"unknown topic config {name!r}")
    if not definition.list_type:
        raise InvalidConfigError(f"can't {'APPEND' if append else 'SUBTRACT'} to {name}: its type is not LIST")
    items = list_items(current)
    for item in list_items(operand):
        if append and item not in items:
            items.append(item)
        elif not append and item in items:
            items.remove(item)
    return ",".join(items)


class Compression(NamedTuple):
    """The codec (and its level; None: the library's default) batches are stored in."""

    codec: int
    level: int | None


@dataclass(frozen=True)
class LogConfig:
    """The effective configs of one topic: its overrides over the broker defaults."""

    values: Mapping[str, Any]
    overrides: frozenset[str]

    @classmethod
    def build(cls, defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> LogConfig:
        values = {name: d.default for name, d in TOPIC_CONFIGS.items()}
        values.update(defaults)
        values.update(overrides)
        return cls(values=values, overrides=frozenset(overrides))

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def segment_bytes(self) -> int:
        return self.values["segment.bytes"]

    @property
    def segment_ms(self) -> int:
        return self.values["segment.ms"]

    @property
    def segment_index_bytes(self) -> int:
        return self.values["segment.index.bytes"]

    @property
    def index_interval_bytes(self) -> int:
        return self.values["index.interval.bytes"]

    @property
    def retention_ms(self) -> int:
        return self.values["retention.ms"]

    @property
    def retention_bytes(self) -> int:
        return self.values["retention.bytes"]

    @property
    def local_retention_ms(self) -> int:
        value = self.values["local.retention.ms"]
        return self.retention_ms if value == -2 else value

    @property
    def local_retention_bytes(self) -> int:
        value = self.values["local.retention.bytes"]
        return self.retention_bytes if value == -2 else value

    @property
    def remote_storage_enable(self) -> bool:
        """Whether sealed segments go to the object store. A compacted topic may be tiered
        (Kafka refuses the pair, KIP-405): tiering then compacts it in the bucket."""
        return self.values["remote.storage.enable"]

    @property
    def remote_wal_enable(self) -> bool:
        return self.values["remote.wal.enable"]

    @property
    def compact(self) -> bool:
        return "compact" in cleanup_policies(self.values["cleanup.policy"])

    @property
    def delete(self) -> bool:
        """Whether retention deletes old segments (`delete` among the cleanup policies)."""
        return "delete" in cleanup_policies(self.values["cleanup.policy"])

    @property
    def min_cleanable_ratio(self) -> float:
        return self.values["min.cleanable.dirty.ratio"]

    @property
    def min_compaction_lag_ms(self) -> int:
        return self.values["min.compaction.lag.ms"]

    @property
    def max_compaction_lag_ms(self) -> int:
        return self.values["max.compaction.lag.ms"]

    @property
    def delete_retention_ms(self) -> int:
        return self.values["delete.retention.ms"]

    @property
    def file_delete_delay_ms(self) -> int:
        return self.values["file.delete.delay.ms"]

    @property
    def max_message_bytes(self) -> int:
        return self.values["max.message.bytes"]

    @property
    def log_append_time(self) -> bool:
        return self.values["message.timestamp.type"] == "LogAppendTime"

    @property
    def min_insync_replicas(self) -> int:
        return self.values["min.insync.replicas"]

    @property
    def timestamp_bounds(self) -> tuple[int, int] | None:
        """How far before and after the broker's clock a CreateTime timestamp may lie
        (message.timestamp.before/after.max.ms, each also bounded by the older
        difference.max.ms); None when neither bounds anything."""
        if self.log_append_time:
            return None
        difference = self.values["message.timestamp.difference.max.ms"]
        before = min(self.values["message.timestamp.before.max.ms"], difference)
        after = min(self.values["message.timestamp.after.max.ms"], difference)
        return None if before == after == LONG_MAX else (before, after)

    @property
    def recompression(self) -> Compression | None:
        """What batches in another codec are recompressed to at append; None (`producer`): kept."""
        name = self.values["compression.type"]
        if name == PRODUCER_CODEC:
            return None
        codec = TOPIC_CODECS[name]
        level = self.values.get(f"compression.{name}.level")
        return Compression(codec, None if level == -1 else level)  # gzip's -1: zlib's default (6)

    @property
    def flush_messages(self) -> int:
        return self.values["flush.messages"]

    @property
    def flush_ms(self) -> int:
        return self.values["flush.ms"]


def check_combined(config: LogConfig) -> None:
    """Refuse configs that are valid alone but not together (as Kafka's LogConfig does)."""
    if config.min_compaction_lag_ms > config.max_compaction_lag_ms:
        raise InvalidConfigError(
            f"min.compaction.lag.ms={config.min_compaction_lag_ms} must not be above "
            f"max.compaction.lag.ms={config.max_compaction_lag_ms}"
        )
