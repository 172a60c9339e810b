"""A `tierlog serve` process for Kafka clients, with settings that keep group tests fast."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ..server import STARTUP_SECONDS, TierlogServer

FAST_GROUPS = (
    "group.initial.rebalance.delay.ms=0",
    "group.min.session.timeout.ms=1000",
    "offsets.topic.num.partitions=3",
)


class KafkaServer(TierlogServer):
    def __init__(self, data_dir: str, *conf: str, object_store: str = "") -> None:
        """`object_store`: a URL instead of the folder beside the data folder."""
        args = [arg for setting in (*FAST_GROUPS, *conf) for arg in ("--conf", setting)]
        if object_store:
            args += ["--object-store", object_store]
        super().__init__(data_dir, *args)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> KafkaServer:
        super().start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:  # healthz answers for gRPC; the Kafka listener starts right after it
            try:
                socket.create_connection(("127.0.0.1", self.kafka_port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no Kafka listener on {self.bootstrap}:\n{self.log()}") from None
                time.sleep(0.02)

    def restart(self) -> None:
        assert self.stop() == 0, self.log()
        self.start()


def serve(tmp_path_factory: pytest.TempPathFactory, name: str, *conf: str) -> Iterator[KafkaServer]:
    """For a fixture to `yield from`: a server in a new folder, stopped (cleanly) after its scope."""
    server = KafkaServer(str(tmp_path_factory.mktemp(name) / "data"), *conf).start()
    yield server
    assert server.stop() == 0, server.log()


def own_kafka_server() -> Any:
    """A module's own `kafka_server` fixture (`kafka_server = own_kafka_server()` in it), in
    place of the one the package's modules share: for the modules that measure the broker
    process (its memory, CPU) or fuzz it, which other modules' topics and clients would load."""

    @pytest.fixture(scope="module")
    def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
        yield from serve(tmp_path_factory, "kafka")

    return kafka_server
