"""Replication factor on one broker (librdkafka's 0103 and Helm charts create topics with
3): taken for topics written through the bucket's WAL, whose acknowledged writes the
bucket keeps beyond this disk, refused (INVALID_REPLICATION_FACTOR) for the others. And
min.insync.replicas above 1 refuses acks=all writes (NOT_ENOUGH_REPLICAS) that would rest
on one disk, as Kafka does when too few replicas are in sync."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from .cluster import KafkaServer


def create(admin: AdminClient, name: str, replication_factor: int, **configs: str) -> None:
    admin.create_topics([NewTopic(name, 1, replication_factor, config=configs)])[name].result(10)


def produce(server: KafkaServer, topic: str, acks: str) -> KafkaError | None:
    errors: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": server.bootstrap, "acks": acks, "message.timeout.ms": 3000,
                         "message.send.max.retries": 0})  # NOT_ENOUGH_REPLICAS is retriable: see it once
    producer.produce(topic, b"v", on_delivery=lambda err, _: errors.append(err))
    producer.flush(10)
    return errors[0]


def test_a_replication_factor_above_one_needs_the_wal(kafka_server: KafkaServer) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_server.bootstrap})
    with pytest.raises(KafkaException) as refused:
        create(admin, "plain", 3)
    assert refused.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert "remote.wal.enable" in str(refused.value)
    create(admin, "walled", 3, **{"remote.wal.enable": "true"})
    create(admin, "single", 1)
    assert produce(kafka_server, "walled", "all") is None


def test_min_insync_replicas_above_one_refuses_acks_all_on_one_disk(kafka_server: KafkaServer) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_server.bootstrap})
    create(admin, "strict", 1, **{"min.insync.replicas": "2"})
    create(admin, "strict-walled", 1, **{"min.insync.replicas": "2", "remote.wal.enable": "true"})
    error = produce(kafka_server, "strict", "all")
    assert error is not None and error.code() == KafkaError.NOT_ENOUGH_REPLICAS
    assert produce(kafka_server, "strict", "1") is None  # acks=1 asks for no replicas
    assert produce(kafka_server, "strict-walled", "all") is None  # the bucket holds it
