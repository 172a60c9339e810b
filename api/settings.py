"""Broker settings: Kafka broker property names, parsed and checked before anything starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from hotlog.config import BROKER_TO_TOPIC, TOPIC_CONFIGS
from hotlog.errors import InvalidConfigError


def _int(name: str, raw: str, low: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise InvalidConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if value < low:
        raise InvalidConfigError(f"{name}={raw}: must be at least {low}")
    return value


def _bool(name: str, raw: str) -> bool:
    if raw.lower() not in ("true", "false"):
        raise InvalidConfigError(f"{name}: expected true or false, got {raw!r}")
    return raw.lower() == "true"


@dataclass
class BrokerSettings:
    log_defaults: dict[str, Any] = field(default_factory=dict)  # topic config defaults
    num_partitions: int = 1
    auto_create_topics_enable: bool = True
    advertised_listeners: str | None = None  # PLAINTEXT://host:port; default: the Kafka listener
    node_id: int = 0
    remote_log_manager_task_interval_ms: int = 30_000
    log_retention_check_interval_ms: int = 300_000
    log_flush_scheduler_interval_ms: int = 100
    group_initial_rebalance_delay_ms: int = 3_000
    offsets_topic_num_partitions: int = 50
    group_min_session_timeout_ms: int = 6_000
    group_max_session_timeout_ms: int = 1_800_000
    socket_request_max_bytes: int = 104_857_600  # larger Kafka request frames close the connection

    @classmethod
    def parse(cls, properties: Mapping[str, str]) -> "BrokerSettings":
        """Parse broker properties; an unknown name or a bad value raises InvalidConfigError."""
        settings = cls()
        for name, raw in properties.items():
            topic_name = BROKER_TO_TOPIC.get(name)
            if topic_name is not None:
                settings.log_defaults[topic_name] = TOPIC_CONFIGS[topic_name].parse(raw)
            elif name == "num.partitions":
                settings.num_partitions = _int(name, raw, 1)
            elif name == "auto.create.topics.enable":
                settings.auto_create_topics_enable = _bool(name, raw)
            elif name == "advertised.listeners":
                settings.advertised_listeners = raw
            elif name in ("node.id", "broker.id"):
                settings.node_id = _int(name, raw)
            elif name == "remote.log.manager.task.interval.ms":
                settings.remote_log_manager_task_interval_ms = _int(name, raw, 1)
            elif name == "log.retention.check.interval.ms":
                settings.log_retention_check_interval_ms = _int(name, raw, 1)
            elif name == "log.flush.scheduler.interval.ms":
                settings.log_flush_scheduler_interval_ms = _int(name, raw, 1)
            elif name == "group.initial.rebalance.delay.ms":
                settings.group_initial_rebalance_delay_ms = _int(name, raw)
            elif name == "offsets.topic.num.partitions":
                settings.offsets_topic_num_partitions = _int(name, raw, 1)
            elif name == "group.min.session.timeout.ms":
                settings.group_min_session_timeout_ms = _int(name, raw, 1)
            elif name == "group.max.session.timeout.ms":
                settings.group_max_session_timeout_ms = _int(name, raw, 1)
            elif name == "socket.request.max.bytes":
                settings.socket_request_max_bytes = _int(name, raw, 1)
            else:
                raise InvalidConfigError(f"unknown broker property {name!r}")
        return settings
