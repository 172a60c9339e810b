"""Broker settings: Kafka broker property names, parsed and checked before anything starts."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from broker.security.authorizer import AuthorizerConfig
from broker.security.principal import Principal
from broker.security.users import SASL_MECHANISMS
from hotlog.cleaner import CleanerConfig
from hotlog.config import BROKER_TO_TOPIC, TOPIC_CONFIGS
from hotlog.errors import InvalidConfigError

from .groups.assignors import ASSIGNORS


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
    advertised_listeners: str | None = None  # NAME://host:port per listener; default: the listener's address
    # Kafka's listeners (api/listen.py reads them); None: --kafka-listen, one PLAINTEXT listener.
    listeners: str | None = None
    listener_security_protocol_map: str | None = None
    # ssl.* and their per-listener overrides (listener.name.<l>.ssl.*, grpc.ssl.*, http.ssl.*)
    # by full name, as given: api/tls.py reads them.
    ssl_properties: dict[str, str] = field(default_factory=dict)
    ssl_handshake_timeout_ms: int = 10_000  # tierlog's: a TLS client that has not finished by then is closed
    grpc_listener_security_protocol: str = "PLAINTEXT"  # or SSL (tierlog's)
    http_listener_security_protocol: str = "PLAINTEXT"
    # SASL (Kafka's names; the mechanisms' default is tierlog's: Kafka's GSSAPI is not served).
    sasl_enabled_mechanisms: tuple[str, ...] = SASL_MECHANISMS
    sasl_listener_mechanisms: dict[str, tuple[str, ...]] = field(default_factory=dict)  # by lower-case listener
    connections_max_reauth_ms: int = 0  # 0: no re-authentication (KIP-368)
    sasl_server_max_receive_size: int = 524_288  # the largest frame before authentication
    sasl_server_authn_timeout_ms: int = 10_000  # tierlog's: authenticate within it or be closed
    connection_failed_authentication_delay_ms: int = 100
    # gRPC call credentials (tierlog's): "required" refuses calls without them; Basic
    # credentials travel in clear over a PLAINTEXT gRPC listener only with the allow flag.
    grpc_authentication: str = "none"
    grpc_authentication_plaintext_allow: bool = False
    node_id: int = 0
    remote_log_manager_task_interval_ms: int = 30_000
    remote_log_manager_copier_thread_pool_size: int = 4  # segments uploading at once
    remote_log_manager_copy_max_bytes_per_second: int = 0  # 0: no quota (Kafka: Long.MAX_VALUE)
    log_retention_check_interval_ms: int = 300_000
    log_flush_scheduler_interval_ms: int = 100
    # Segment files held open at once, an LRU (tierlog's own); None: half the soft RLIMIT_NOFILE.
    log_segment_open_files_max: int | None = None
    group_initial_rebalance_delay_ms: int = 3_000
    offsets_topic_num_partitions: int = 50
    # Kafka's default is 100 MiB. The cleaner leaves active segments alone and start-up reads
    # them whole (about 12 MB/s), so this bounds start-up by partitions x segment size:
    # 50 x 256 KiB starts in under a second however many commits were made (bench/offsets_startup.py).
    offsets_topic_segment_bytes: int = 256 * 1024
    group_min_session_timeout_ms: int = 6_000
    group_max_session_timeout_ms: int = 1_800_000
    # The consumer group protocol (KIP-848): the broker sets members' timeouts and assignor.
    group_consumer_session_timeout_ms: int = 45_000
    group_consumer_heartbeat_interval_ms: int = 5_000
    group_consumer_assignors: tuple[str, ...] = ("uniform", "range")  # the first is the default
    socket_request_max_bytes: int = 104_857_600  # larger Kafka request frames close the connection
    connections_max_idle_ms: int = 600_000  # Kafka's: idle Kafka connections are closed after it
    fetch_max_bytes: int = 57_671_680  # Kafka's: the most one Fetch returns, whatever the client asks
    # Kafka's connection bounds; None: a quarter of the soft RLIMIT_NOFILE, and no bound per address.
    max_connections: int | None = None
    max_connections_per_ip: int | None = None
    max_connections_per_ip_overrides: dict[str, int] = field(default_factory=dict)
    # Kafka's, bounded here (Kafka: -1): frames being read and requests waiting, all connections.
    queued_max_request_bytes: int = 256 * 1024 * 1024
    # tierlog's read deadline: a started frame is complete within this plus its size at the rate.
    socket_request_read_timeout_ms: int = 30_000
    socket_request_read_min_bytes_per_second: int = 1024 * 1024
    remote_log_chunk_bytes: int = 4 * 1024 * 1024
    remote_log_chunk_cache_bytes: int = 1024 * 1024 * 1024
    remote_log_index_cache_bytes: int = 64 * 1024 * 1024
    remote_log_max_concurrent_gets: int = 16
    # 8 chunks of 4 MiB in flight keep a replay near 6x a one-chunk reader under S3's
    # ~30 ms first byte (bench/replay.py); 4 would cap it at 4x.
    remote_log_prefetch_chunks: int = 8
    remote_log_chunk_cache_dir: str | None = None  # holds remote-chunk-cache/ (default: the data dir)
    producer_id_expiration_ms: int = 86_400_000  # idle producers' idempotence state is dropped after it
    producer_id_expiration_check_interval_ms: int = 600_000
    transaction_max_timeout_ms: int = 900_000
    transaction_state_log_num_partitions: int = 50
    transaction_state_log_segment_bytes: int = 256 * 1024  # as offsets.topic.segment.bytes
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int = 10_000
    # The write-ahead log in the bucket (tierlog's own, for topics with remote.wal.enable):
    # one object per window for the whole broker, closed at whichever bound comes first.
    log_remote_wal_window_ms: int = 50
    log_remote_wal_window_bytes: int = 8 * 1024 * 1024
    # WAL data older than this is rolled into a segment of its own, so tiering uploads it
    # and the WAL objects holding it can go.
    log_remote_wal_fold_ms: int = 120_000
    # The scrubber (tierlog's own, named after Kafka's log.cleaner.*): sealed local segments
    # and uploaded objects checked against their CRCs, a pass a week at a pace whose CRC
    # work is a few percent of one core.
    log_scrubber_enable: bool = True
    # The log cleaner (Kafka's log.cleaner.* properties and defaults).
    log_cleaner: CleanerConfig = field(default_factory=CleanerConfig)
    log_scrubber_io_max_bytes_per_second: int = 16 * 1024 * 1024
    log_scrubber_interval_ms: int = 7 * 86_400_000
    # Authorization (Kafka's properties): on once authorizer.class.name names an authorizer.
    authorizer: AuthorizerConfig = field(default_factory=AuthorizerConfig)

    def sasl_mechanisms_of(self, listener_name: str) -> tuple[str, ...]:
        """Its listener.name.<name>.sasl.enabled.mechanisms, else sasl.enabled.mechanisms."""
        return self.sasl_listener_mechanisms.get(listener_name.lower(), self.sasl_enabled_mechanisms)

    @classmethod
    def parse(cls, properties: Mapping[str, str]) -> BrokerSettings:
        """Parse broker properties; an unknown name or a bad value raises InvalidConfigError."""
        settings = cls()
        for name, raw in properties.items():
            topic_name = BROKER_TO_TOPIC.get(name)
            if topic_name is not None:
                settings.log_defaults[topic_name] = TOPIC_CONFIGS[topic_name].parse(raw, shown_as=name)
            elif name in _INTS:
                field_name, low = _INTS[name]
                setattr(settings, field_name, _int(name, raw, low))
            elif name == "auto.create.topics.enable":
                settings.auto_create_topics_enable = _bool(name, raw)
            elif name == "log.scrubber.enable":
                settings.log_scrubber_enable = _bool(name, raw)
            elif name in _CLEANER:
                field_name, parse = _CLEANER[name]
                settings.log_cleaner = replace(settings.log_cleaner, **{field_name: parse(name, raw)})
            elif name == "group.consumer.assignors":
                settings.group_consumer_assignors = _assignors(name, raw)
            elif name == "advertised.listeners":
                settings.advertised_listeners = raw
            elif name in ("listeners", "listener.security.protocol.map"):
                setattr(settings, name.replace(".", "_"), raw)
            elif name in ("grpc.listener.security.protocol", "http.listener.security.protocol"):
                setattr(settings, name.replace(".", "_"), _one_of(name, raw, ("PLAINTEXT", "SSL")))
            elif _SSL_PROPERTY.match(name):
                if name.endswith("ssl.principal.mapping.rules") and raw.strip() != "DEFAULT":
                    raise InvalidConfigError(f"{name}={raw}: tierlog maps certificates by Kafka's DEFAULT rule only "
                                             f"(User: and the subject, CN=...,O=...)")
                settings.ssl_properties[name] = raw
            elif name == "max.connections.per.ip.overrides":
                settings.max_connections_per_ip_overrides = _overrides(name, raw)
            elif name in _AUTHORIZER:
                settings.authorizer = _AUTHORIZER[name](settings.authorizer, name, raw)
            elif (listener := _SASL_MECHANISMS_PROPERTY.match(name)) is not None:
                mechanisms = _sasl_mechanisms(name, raw)
                if listener[1] is None:
                    settings.sasl_enabled_mechanisms = mechanisms
                else:
                    settings.sasl_listener_mechanisms[listener[1].lower()] = mechanisms
            elif name == "grpc.authentication":
                settings.grpc_authentication = _one_of(name, raw, ("none", "required"))
            elif name == "grpc.authentication.plaintext.allow":
                settings.grpc_authentication_plaintext_allow = _bool(name, raw)
            elif name == "remote.log.chunk.cache.dir":  # another disk keeps replays off the log's fsyncs
                settings.remote_log_chunk_cache_dir = raw
            else:
                raise InvalidConfigError(f"unknown broker property {name!r}")
        if 0 <= settings.queued_max_request_bytes < settings.socket_request_max_bytes:
            raise InvalidConfigError(f"queued.max.request.bytes={settings.queued_max_request_bytes}: must be -1 "
                                     f"(no bound) or at least socket.request.max.bytes "
                                     f"({settings.socket_request_max_bytes}), so that the largest frame fits")
        return settings


_SASL_MECHANISMS_PROPERTY = re.compile(r"^(?:listener\.name\.([A-Za-z0-9_-]+)\.)?sasl\.enabled\.mechanisms$")


def _sasl_mechanisms(name: str, raw: str) -> tuple[str, ...]:
    mechanisms = tuple(dict.fromkeys(m.strip().upper() for m in raw.split(",") if m.strip()))
    unknown = [m for m in mechanisms if m not in SASL_MECHANISMS]
    if unknown or not mechanisms:
        raise InvalidConfigError(f"{name}={raw}: tierlog serves {', '.join(SASL_MECHANISMS)} "
                                 f"({', '.join(unknown) or 'none given'}: not served)")
    return mechanisms


def _overrides(name: str, raw: str) -> dict[str, int]:
    """Kafka's `host:count,host:count` (an IPv6 address before its last colon)."""
    limits = {}
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        host, sep, count = entry.rpartition(":")
        if not sep or not host:
            raise InvalidConfigError(f"{name}: expected host:count entries, got {entry!r}")
        limits[host.strip("[]")] = _int(name, count, 1)
    return limits


def _assignors(name: str, raw: str) -> tuple[str, ...]:
    """Kafka's names, short (`uniform`) or of its classes (`...assignor.UniformAssignor`)."""
    names = []
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        short = _ASSIGNOR_CLASSES.get(entry, entry)
        if short not in ASSIGNORS:
            raise InvalidConfigError(f"{name}: unknown assignor {entry!r} (known: {', '.join(ASSIGNORS)})")
        names.append(short)
    if not names:
        raise InvalidConfigError(f"{name}: at least one assignor is needed")
    return tuple(names)


_ASSIGNOR_CLASSES = {
    "org.apache.kafka.coordinator.group.assignor.UniformAssignor": "uniform",
    "org.apache.kafka.coordinator.group.assignor.RangeAssignor": "range",
}


def _one_of(name: str, raw: str, choices: tuple[str, ...]) -> str:
    """The choice `raw` names, in any case."""
    for choice in choices:
        if raw.strip().lower() == choice.lower():
            return choice
    raise InvalidConfigError(f"{name}={raw}: expected {' or '.join(choices)}")


# Kafka's ssl.* broker properties tierlog reads (PEM keystores only), alone or as per-listener overrides.
_SSL_PROPERTY = re.compile(r"^(?:listener\.name\.[A-Za-z0-9_-]+\.|grpc\.|http\.)?ssl\.(?:"
                           r"keystore\.(?:type|location|key|certificate\.chain)|key\.password|"
                           r"truststore\.(?:type|location|certificates)|client\.auth|enabled\.protocols|protocol|"
                           r"cipher\.suites|principal\.mapping\.rules)$")


def _cleaner_threads(name: str, raw: str) -> int:
    if _int(name, raw, 1) != 1:
        raise InvalidConfigError(f"{name}={raw}: tierlog cleans one log at a time (1)")
    return 1


def _load_factor(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InvalidConfigError(f"{name}: expected a number, got {raw!r}") from None
    if not 0 < value <= 1:
        raise InvalidConfigError(f"{name}={raw}: must be above 0 and at most 1")
    return value


# Kafka's authorizers, and tierlog's short name: any of them turns authorization on.
AUTHORIZER_CLASSES = frozenset({"org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                                "kafka.security.authorizer.AclAuthorizer", "tierlog"})


def _authorizer_class(config: AuthorizerConfig, name: str, raw: str) -> AuthorizerConfig:
    if raw.strip() and raw.strip() not in AUTHORIZER_CLASSES:
        raise InvalidConfigError(f"{name}={raw}: tierlog's authorizer answers to {', '.join(sorted(AUTHORIZER_CLASSES))}")
    return replace(config, enabled=bool(raw.strip()))


def _super_users(config: AuthorizerConfig, name: str, raw: str) -> AuthorizerConfig:
    """Kafka's `User:alice;User:bob`."""
    users = frozenset(filter(None, (u.strip() for u in raw.split(";"))))
    for user in users:
        try:
            Principal.parse(user)
        except ValueError as exc:
            raise InvalidConfigError(f"{name}: {exc}") from None
    return replace(config, super_users=users)


_AUTHORIZER: dict[str, Callable[[AuthorizerConfig, str, str], AuthorizerConfig]] = {
    "authorizer.class.name": _authorizer_class,
    "super.users": _super_users,
    "allow.everyone.if.no.acl.found":
        lambda config, name, raw: replace(config, allow_everyone_if_no_acl_found=_bool(name, raw)),
}


# The log cleaner's properties: Kafka's name -> (CleanerConfig field, parser).
_CLEANER: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "log.cleaner.enable": ("enable", _bool),
    "log.cleaner.threads": ("threads", _cleaner_threads),
    "log.cleaner.dedupe.buffer.size": ("dedupe_buffer_size", lambda n, r: _int(n, r, 1024 * 1024)),
    "log.cleaner.io.buffer.size": ("io_buffer_size", lambda n, r: _int(n, r, 4096)),
    "log.cleaner.io.buffer.load.factor": ("io_buffer_load_factor", _load_factor),
    "log.cleaner.backoff.ms": ("backoff_ms", lambda n, r: _int(n, r, 1)),
    "log.cleaner.io.max.bytes.per.second": ("io_max_bytes_per_second", lambda n, r: float(_int(n, r, 1))),
}


# Integer broker properties: Kafka's name -> (BrokerSettings field, lowest value).
_INTS: dict[str, tuple[str, int]] = {
    "num.partitions": ("num_partitions", 1),
    "node.id": ("node_id", 0),
    "broker.id": ("node_id", 0),
    "remote.log.manager.task.interval.ms": ("remote_log_manager_task_interval_ms", 1),
    "remote.log.manager.copier.thread.pool.size": ("remote_log_manager_copier_thread_pool_size", 1),
    "remote.log.manager.copy.max.bytes.per.second": ("remote_log_manager_copy_max_bytes_per_second", 1),
    "log.retention.check.interval.ms": ("log_retention_check_interval_ms", 1),
    "log.flush.scheduler.interval.ms": ("log_flush_scheduler_interval_ms", 1),
    "log.segment.open.files.max": ("log_segment_open_files_max", 1),
    "group.initial.rebalance.delay.ms": ("group_initial_rebalance_delay_ms", 0),
    "offsets.topic.num.partitions": ("offsets_topic_num_partitions", 1),
    "group.min.session.timeout.ms": ("group_min_session_timeout_ms", 1),
    "group.max.session.timeout.ms": ("group_max_session_timeout_ms", 1),
    "group.consumer.session.timeout.ms": ("group_consumer_session_timeout_ms", 1),
    "group.consumer.heartbeat.interval.ms": ("group_consumer_heartbeat_interval_ms", 1),
    "socket.request.max.bytes": ("socket_request_max_bytes", 1),
    "ssl.handshake.timeout.ms": ("ssl_handshake_timeout_ms", 1),
    "connections.max.reauth.ms": ("connections_max_reauth_ms", 0),
    "sasl.server.max.receive.size": ("sasl_server_max_receive_size", 64),
    "sasl.server.authn.timeout.ms": ("sasl_server_authn_timeout_ms", 1),
    "connection.failed.authentication.delay.ms": ("connection_failed_authentication_delay_ms", 0),
    "fetch.max.bytes": ("fetch_max_bytes", 1024),
    "connections.max.idle.ms": ("connections_max_idle_ms", 1),
    "max.connections": ("max_connections", 1),
    "max.connections.per.ip": ("max_connections_per_ip", 1),
    "queued.max.request.bytes": ("queued_max_request_bytes", -1),
    "socket.request.read.timeout.ms": ("socket_request_read_timeout_ms", 1),
    "socket.request.read.min.bytes.per.second": ("socket_request_read_min_bytes_per_second", 1),
    # The read path over the object store (tierlog's own names, in Kafka's remote.log.* family).
    "remote.log.chunk.bytes": ("remote_log_chunk_bytes", 4096),
    "remote.log.chunk.cache.bytes": ("remote_log_chunk_cache_bytes", 4096),
    "remote.log.index.file.cache.total.size.bytes": ("remote_log_index_cache_bytes", 1),
    "remote.log.reader.max.concurrent.gets": ("remote_log_max_concurrent_gets", 1),
    "remote.log.prefetch.chunks": ("remote_log_prefetch_chunks", 0),
    "producer.id.expiration.ms": ("producer_id_expiration_ms", 1),
    "producer.id.expiration.check.interval.ms": ("producer_id_expiration_check_interval_ms", 1),
    "transaction.max.timeout.ms": ("transaction_max_timeout_ms", 1),
    "transaction.state.log.num.partitions": ("transaction_state_log_num_partitions", 1),
    "transaction.state.log.segment.bytes": ("transaction_state_log_segment_bytes", 4096),
    "offsets.topic.segment.bytes": ("offsets_topic_segment_bytes", 4096),
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": (
        "transaction_abort_timed_out_transaction_cleanup_interval_ms", 1),
    "log.remote.wal.window.ms": ("log_remote_wal_window_ms", 1),
    "log.remote.wal.window.bytes": ("log_remote_wal_window_bytes", 1024),
    "log.remote.wal.fold.ms": ("log_remote_wal_fold_ms", 1),
    "log.scrubber.io.max.bytes.per.second": ("log_scrubber_io_max_bytes_per_second", 1),
    "log.scrubber.interval.ms": ("log_scrubber_interval_ms", 1),
}
