"""The Kafka Produce handler over the broker's write path, in-process."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.coordinator import GroupCoordinator
from broker.node import Broker
from tests.broker.support import run


def test_an_acks_all_produce_whose_fsync_fails_is_answered_kafka_storage_error(tmp_path: Any, monkeypatch) -> None:
    from datetime import timedelta

    from kio.schema.produce.v9 import request as produce_v9

    from api.kafka.codec import response_type
    from api.kafka.context import Call, KafkaContext
    from api.kafka.produce import handle_produce
    from hotlog.records import Record, build_batch

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        broker.logs.create_topic("t", 1)
        kafka = KafkaContext(broker, groups, "127.0.0.1", 9092, "cluster")
        request = produce_v9.ProduceRequest(
            transactional_id=None, acks=-1, timeout=timedelta(seconds=5),
            topic_data=(produce_v9.TopicProduceData(name="t", partition_data=(
                produce_v9.PartitionProduceData(index=0, records=build_batch([Record(None, b"v")])),)),))
        monkeypatch.setattr("hotlog.segment.os.fdatasync", failing_fsync)
        response = await handle_produce(kafka, Call(9, "client", "127.0.0.1", response_type(0, 9)), request)
        monkeypatch.undo()
        answer = response.responses[0].partition_responses[0]
        assert answer.error_code == ErrorCode.kafka_storage_error and "fsync" in answer.error_message

    run(str(tmp_path), scenario)
