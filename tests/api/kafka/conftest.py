from __future__ import annotations

from collections.abc import Iterator

import pytest

from .cluster import KafkaServer, serve


@pytest.fixture(scope="package")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """One server for the package's test modules (auto-created topics on); tests use topics
    and groups of their own, named after their module. A module that measures the broker
    process has its own instead (cluster.own_kafka_server)."""
    yield from serve(tmp_path_factory, "kafka")


@pytest.fixture(scope="package")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """A server that does not create topics on request, shared as kafka_server is."""
    yield from serve(tmp_path_factory, "kafka-strict", "auto.create.topics.enable=false")


@pytest.fixture
def restartable_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    server = KafkaServer(str(tmp_path_factory.mktemp("kafka-restart") / "data")).start()
    yield server
    if server.running:
        assert server.stop() == 0, server.log()
