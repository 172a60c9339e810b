from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from api.proto import tierlog_pb2_grpc as pb_grpc

from .server import TierlogServer


@pytest.fixture(scope="package")
def tierlog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TierlogServer]:
    """One server for the package's modules that use it; tests use topics of their own."""
    # Tiering passes every 200 ms, so small segments reach the object store within a test.
    server = TierlogServer(str(tmp_path_factory.mktemp("tierlog") / "data"),
                           "--conf", "remote.log.manager.task.interval.ms=200").start()
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def grpc_channel(tierlog_server: TierlogServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(tierlog_server.grpc_address) as ch:
        yield ch


@pytest.fixture(scope="module")
def grpc_stub(grpc_channel: grpc.Channel) -> pb_grpc.TierlogStub:
    return pb_grpc.TierlogStub(grpc_channel)
