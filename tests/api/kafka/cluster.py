"""A `tierlog serve` process for Kafka clients, with settings that keep group tests fast."""

from __future__ import annotations

import socket
import time

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
