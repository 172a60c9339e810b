"""Kafka's topic configs through confluent-kafka's AdminClient: compression.type stores
batches in the topic's codec, the legacy configs older tools send are taken and
reported, list configs take IncrementalAlterConfigs APPEND and SUBTRACT, and unknown
names stay refused (librdkafka's 0081_admin, 0092, 0011)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from hotlog.batch import validate_batches
from hotlog.records import CODECS, decode_batches

from .cluster import KafkaServer
from .test_confluent import FAST, assign, consumer, read

DYNAMIC_TOPIC_CONFIG, DEFAULT_CONFIG = 1, 5


def _admin(server: KafkaServer) -> AdminClient:
    return AdminClient({"bootstrap.servers": server.bootstrap})


def _create(server: KafkaServer, name: str, **configs: str) -> None:
    client = _admin(server)
    client.create_topics([NewTopic(name, 1, 1, config=configs)], operation_timeout=10)[name].result(10)


def _describe(server: KafkaServer, topic: str) -> dict[str, Any]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    client = _admin(server)  # kept alive until the answer arrives
    return client.describe_configs([resource])[resource].result(10)


def _alter(server: KafkaServer, topic: str, *changes: tuple[str, str | None, AlterConfigOpType]) -> None:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=operation) for name, value, operation in changes])
    client = _admin(server)
    client.incremental_alter_configs([resource])[resource].result(10)


def _error_code(excinfo: pytest.ExceptionInfo[BaseException]) -> int:
    assert isinstance(excinfo.value, KafkaException)
    return excinfo.value.args[0].code()


def test_compression_type_and_legacy_configs_are_created_and_described(kafka_server: KafkaServer) -> None:
    _create(kafka_server, "tc-legacy", **{
        "compression.type": "gzip", "message.format.version": "2.8", "min.insync.replicas": "1",
        "unclean.leader.election.enable": "false", "message.timestamp.difference.max.ms": "60000",
        "leader.replication.throttled.replicas": "0:1",
    })
    configs = _describe(kafka_server, "tc-legacy")
    for name, value in (("compression.type", "gzip"), ("message.format.version", "2.8"),
                        ("message.timestamp.difference.max.ms", "60000"),
                        ("leader.replication.throttled.replicas", "0:1")):
        assert (configs[name].value, configs[name].source) == (value, DYNAMIC_TOPIC_CONFIG), name
    for name, default in (("message.downconversion.enable", "true"), ("preallocate", "false"),
                          ("segment.jitter.ms", "0"), ("compression.zstd.level", "3"),
                          ("message.timestamp.after.max.ms", str(2**63 - 1))):
        assert (configs[name].value, configs[name].source) == (default, DEFAULT_CONFIG), name


@pytest.mark.parametrize("name, value", [("no.such.config", "1"), ("compression.type", "brotli"),
                                         ("message.format.version", "9.9")])
def test_unknown_names_and_bad_values_are_refused(kafka_server: KafkaServer, name: str, value: str) -> None:
    with pytest.raises(KafkaException) as refused:
        _create(kafka_server, f"tc-bad-{name}-{value}", **{name: value})
    assert _error_code(refused) == KafkaError.INVALID_CONFIG
    assert f"tc-bad-{name}-{value}" not in _admin(kafka_server).list_topics(timeout=10).topics


def _stored_batches(server: KafkaServer, topic: str) -> bytes:
    with open(os.path.join(server.data_dir, f"{topic}-0", f"{0:020d}.log"), "rb") as segment:
        return segment.read()


def test_uncompressed_batches_are_stored_gzip_and_consumers_read_them_back(kafka_server: KafkaServer) -> None:
    topic = "tc-gzip"
    _create(kafka_server, topic, **{"compression.type": "gzip"})
    producer = Producer({"bootstrap.servers": kafka_server.bootstrap, "compression.type": "none",
                         "enable.idempotence": True, "linger.ms": 5, **FAST})
    sent = [(b"k%d" % i, b"value-%d-" % i * 30, [("h", b"%d" % i)]) for i in range(50)]
    for key, value, headers in sent:
        producer.produce(topic, value=value, key=key, headers=headers)
    assert producer.flush(15) == 0
    stored = _stored_batches(kafka_server, topic)
    headers = [h for _, h in validate_batches(stored, stored=True)]  # CRCs hold
    assert headers and {h.compression for h in headers} == {CODECS["gzip"]}
    assert all(h.producer_id >= 0 and h.base_sequence >= 0 for h in headers)  # idempotence fields kept
    assert [(r.key, r.value, list(r.headers)) for b in decode_batches(stored) for r in b.records] == sent
    c = consumer(kafka_server)
    assign(c, TopicPartition(topic, 0, OFFSET_BEGINNING))
    got = read(c, len(sent))
    c.close()
    assert [(m.key(), m.value(), m.headers()) for m in got] == sent


def test_altering_compression_type_applies_to_later_batches(kafka_server: KafkaServer) -> None:
    topic = "tc-alter-codec"
    _create(kafka_server, topic)
    _alter(kafka_server, topic, ("compression.type", "zstd", AlterConfigOpType.SET))
    producer = Producer({"bootstrap.servers": kafka_server.bootstrap, "compression.type": "lz4", **FAST})
    producer.produce(topic, value=b"x" * 500, key=b"k")
    assert producer.flush(15) == 0
    (header,) = [h for _, h in validate_batches(_stored_batches(kafka_server, topic), stored=True)]
    assert header.compression == CODECS["zstd"]


def test_append_and_subtract_edit_cleanup_policy_as_kafka_does(kafka_server: KafkaServer) -> None:
    topic = "tc-policy"
    _create(kafka_server, topic)
    _alter(kafka_server, topic, ("cleanup.policy", "compact", AlterConfigOpType.APPEND))
    assert _describe(kafka_server, topic)["cleanup.policy"].value == "delete,compact"
    _alter(kafka_server, topic, ("cleanup.policy", "compact", AlterConfigOpType.APPEND))  # already there
    assert _describe(kafka_server, topic)["cleanup.policy"].value == "delete,compact"
    _alter(kafka_server, topic, ("cleanup.policy", "compact", AlterConfigOpType.SUBTRACT))
    policy = _describe(kafka_server, topic)["cleanup.policy"]
    assert (policy.value, policy.source) == ("delete", DYNAMIC_TOPIC_CONFIG)


@pytest.mark.parametrize("name, value, operation", [
    ("retention.ms", "1000", AlterConfigOpType.APPEND),  # not a list
    ("cleanup.policy", "snapshot", AlterConfigOpType.APPEND),  # not a policy
    ("no.such.config", "1", AlterConfigOpType.SET),
    ("no.such.config", "1", AlterConfigOpType.SUBTRACT),
])
def test_bad_incremental_changes_are_refused_and_change_nothing(kafka_server: KafkaServer, name: str, value: str,
                                                                operation: AlterConfigOpType) -> None:
    topic = f"tc-refuse-{name}-{operation.value}"
    _create(kafka_server, topic, **{"retention.ms": "5000"})
    with pytest.raises(KafkaException) as refused:
        _alter(kafka_server, topic, ("segment.ms", "60000", AlterConfigOpType.SET), (name, value, operation))
    assert _error_code(refused) == KafkaError.INVALID_CONFIG
    configs = _describe(kafka_server, topic)
    assert (configs["retention.ms"].value, configs["segment.ms"].source, configs["cleanup.policy"].value) == \
        ("5000", DEFAULT_CONFIG, "delete")


def test_a_timestamp_past_message_timestamp_before_max_ms_is_refused(kafka_server: KafkaServer) -> None:
    _create(kafka_server, "bounded", **{"message.timestamp.before.max.ms": "3600000"})
    results: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": kafka_server.bootstrap, "message.send.max.retries": 0})
    for timestamp in (1, 0):  # 1970, then now (0: the client's clock)
        producer.produce("bounded", b"v", timestamp=timestamp, on_delivery=lambda err, _: results.append(err))
        producer.flush(10)
    assert results[0] is not None and results[0].code() == KafkaError.INVALID_TIMESTAMP
    assert results[1] is None
