"""gRPC status codes from the broker's one error taxonomy, over a real channel to a service
in this process (so a disk failure can be injected)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from api.grpc_server import GrpcServer
from api.grpc_service import TierlogService
from api.proto import tierlog_pb2 as pb
from api.proto import tierlog_pb2_grpc as pb_grpc
from broker.errors import ANSWERS
from broker.node import Broker
from broker.settings import BrokerSettings


@pytest.mark.parametrize("name", sorted({entry.grpc for entry in ANSWERS.values()}))
def test_every_status_the_taxonomy_names_is_a_grpc_status(name: str) -> None:
    assert grpc.StatusCode[name].name == name


def test_a_failed_fsync_is_unavailable_not_the_clients_mistake(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Kafka listener answers KAFKA_STORAGE_ERROR (retriable); gRPC must say UNAVAILABLE."""
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    async def scenario() -> None:
        broker = Broker(str(tmp_path / "data"), BrokerSettings())
        await broker.start()
        server = GrpcServer(TierlogService(broker), "127.0.0.1:0")
        server.bind()
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = pb_grpc.TierlogStub(channel)
                await stub.CreateTopic(pb.CreateTopicRequest(name="t", partitions=1))
                monkeypatch.setattr("hotlog.segment.os.fdatasync", failing_fsync)
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await stub.Produce(pb.ProduceRequest(topic="t", records=[pb.Record(value=b"v")]))
                assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value.details()
                assert "fsync" in (failed.value.details() or "")
                # The log is offline until a restart re-checks the disk: still UNAVAILABLE.
                with pytest.raises(grpc.aio.AioRpcError) as offline:
                    await stub.Produce(pb.ProduceRequest(topic="t", records=[pb.Record(value=b"w")]))
                assert offline.value.code() == grpc.StatusCode.UNAVAILABLE
                monkeypatch.undo()
        finally:
            await server.stop(1)
            await broker.stop()

    asyncio.run(scenario())
