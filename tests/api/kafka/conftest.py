from __future__ import annotations

from collections.abc import Iterator

import pytest

from .cluster import KafkaServer


@pytest.fixture(scope="module")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """One server per test module (auto-created topics on); tests use topics of their own."""
    server = KafkaServer(str(tmp_path_factory.mktemp("kafka") / "data")).start()
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """A server that does not create topics on request."""
    server = KafkaServer(str(tmp_path_factory.mktemp("kafka-strict") / "data"),
                         "auto.create.topics.enable=false").start()
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture
def restartable_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    server = KafkaServer(str(tmp_path_factory.mktemp("kafka-restart") / "data")).start()
    yield server
    if server.running:
        assert server.stop() == 0, server.log()
