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


def _produce_request(acks: int, timeout_s: float, partitions: int) -> Any:
    from datetime import timedelta

    from kio.schema.produce.v9 import request as produce_v9

    from hotlog.records import Record, build_batch

    return produce_v9.ProduceRequest(
        transactional_id=None, acks=acks, timeout=timedelta(seconds=timeout_s),
        topic_data=(produce_v9.TopicProduceData(name="t", partition_data=tuple(
            produce_v9.PartitionProduceData(index=p, records=build_batch([Record(None, b"v")]))
            for p in range(partitions))),))


def test_one_partitions_fsync_fails_or_stalls_and_the_others_in_the_request_are_answered(
        tmp_path: Any, monkeypatch) -> None:
    """Partitions of one acks=all request wait for their fsyncs together: each is answered for
    itself (a failed fsync KAFKA_STORAGE_ERROR, one past the request's timeout
    REQUEST_TIMED_OUT), and a stalled fsync that finishes later does not wedge the log."""
    import os
    import threading

    from api.kafka.codec import response_type
    from api.kafka.context import Call, KafkaContext
    from api.kafka.produce import handle_produce

    real_fsync = os.fdatasync
    stall = threading.Event()

    def fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if f"{os.sep}t-1{os.sep}" in name:
            raise OSError(5, "Input/output error")
        if f"{os.sep}t-2{os.sep}" in name:
            stall.wait(10)
        real_fsync(fd)

    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        broker.logs.create_topic("t", 3)
        kafka = KafkaContext(broker, groups, "127.0.0.1", 9092, "cluster")
        call = Call(9, "client", "127.0.0.1", response_type(0, 9))
        monkeypatch.setattr("hotlog.segment.os.fdatasync", fsync)
        response = await handle_produce(kafka, call, _produce_request(-1, 0.3, 3))
        codes = [(p.index, p.error_code) for p in response.responses[0].partition_responses]
        assert codes == [(0, ErrorCode.none), (1, ErrorCode.kafka_storage_error), (2, ErrorCode.request_timed_out)]
        stall.set()  # the stalled round ends with nobody waiting; the next one answers
        monkeypatch.undo()
        again = await handle_produce(kafka, call, _produce_request(-1, 5, 3))
        codes = [(p.index, p.error_code) for p in again.responses[0].partition_responses]
        # A failed fsync takes its log offline until restart (as a Kafka log directory goes).
        assert codes == [(0, ErrorCode.none), (1, ErrorCode.kafka_storage_error), (2, ErrorCode.none)]
        assert broker.logs.log("t", 2).recovery_point == 2

    run(str(tmp_path), scenario)
