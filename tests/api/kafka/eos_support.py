"""What the exactly-once tests share: exact frames for producer ids and transactions, a
TCP proxy that loses Produce responses, and readers for committed and uncommitted data."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from datetime import timedelta
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12 import request as fetch_v12
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.list_offsets.v9 import request as list_offsets_v9
from kio.schema.produce.v9 import request as produce_v9

from hotlog.records import Record, build_batch

from .wire import SIZE, Wire

PRODUCE, FETCH, LIST_OFFSETS, INIT_PRODUCER_ID = 0, 1, 2, 22
READ_UNCOMMITTED, READ_COMMITTED = 0, 1
FAST = {"topic.metadata.refresh.interval.ms": 1000, "socket.connection.setup.timeout.ms": 3000}
# For a consumer that reads to the end of a partition: the broker answers a fetch with
# nothing new after 10 ms, not librdkafka's 500, so the end shows at once. (A consumer that
# lists its topic before assign() knows the leader: without it librdkafka finds it and asks
# for the start offset only 500 ms later.)
QUICK_READ = {"fetch.wait.max.ms": 10}


def create_topics(bootstrap: str, *names: str, partitions: int = 2, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, partitions, 1, config=config or {}) for n in names])
    for future in futures.values():
        future.result(15)


def init_producer_id(wire: Wire, transactional_id: str | None = None, timeout_ms: int = 60_000) -> tuple[int, int]:
    wire.send(InitProducerIdRequest(transactional_id=transactional_id,
                                    transaction_timeout=timedelta(milliseconds=timeout_ms),
                                    producer_id=-1, producer_epoch=-1), 1)
    response = wire.receive(INIT_PRODUCER_ID, 4)[1]
    assert response.error_code == ErrorCode.none, response
    return response.producer_id, response.producer_epoch


def producer_batch(producer_id: int, epoch: int, sequence: int, *values: bytes, transactional: bool = False) -> bytes:
    return build_batch([Record(None, v) for v in values], producer_id=producer_id, producer_epoch=epoch,
                       base_sequence=sequence, transactional=transactional)


def produce(wire: Wire, topic: str, partition: int, records: bytes,
            transactional_id: str | None = None) -> tuple[ErrorCode, int]:
    """(error, base offset) of one acks=all produce."""
    wire.send(produce_v9.ProduceRequest(transactional_id=transactional_id, acks=-1, timeout=timedelta(seconds=5),
                                        topic_data=(produce_v9.TopicProduceData(name=topic, partition_data=(
                                            produce_v9.PartitionProduceData(index=partition, records=records),)),)), 1)
    answer = wire.receive(PRODUCE, 9)[1].responses[0].partition_responses[0]
    return answer.error_code, answer.base_offset


def list_offset(wire: Wire, topic: str, partition: int, timestamp: int, isolation: int = READ_UNCOMMITTED) -> int:
    wire.send(list_offsets_v9.ListOffsetsRequest(replica_id=-1, isolation_level=isolation, topics=(
        list_offsets_v9.ListOffsetsTopic(name=topic, partitions=(list_offsets_v9.ListOffsetsPartition(
            partition_index=partition, current_leader_epoch=-1, timestamp=timestamp),)),)), 1)
    answer = wire.receive(LIST_OFFSETS, 9)[1].topics[0].partitions[0]
    assert answer.error_code == ErrorCode.none, answer
    return answer.offset


def fetch_partition(wire: Wire, topic: str, partition: int, offset: int, isolation: int) -> Any:
    """One Fetch v12 of a partition: its response entity (records, LSO, aborted list)."""
    wire.send(fetch_v12.FetchRequest(
        replica_id=-1, max_wait=timedelta(milliseconds=0), min_bytes=1, max_bytes=1 << 20,
        isolation_level=isolation, session_id=0, session_epoch=-1, rack_id="",
        topics=(fetch_v12.FetchTopic(topic=topic, partitions=(fetch_v12.FetchPartition(
            partition=partition, current_leader_epoch=-1, fetch_offset=offset, last_fetched_epoch=-1,
            log_start_offset=-1, partition_max_bytes=1 << 20),)),),
        forgotten_topics_data=(),
    ), 1)
    return wire.receive(FETCH, 12)[1].responses[0].partitions[0]


def read_values(bootstrap: str, topic: str, partitions: int, *, committed_only: bool,
                seconds: float = 20) -> dict[int, list[bytes]]:
    """Every value of the topic by partition, read from offset 0 to the end an isolation
    level allows (the LSO for read_committed)."""
    isolation = "read_committed" if committed_only else "read_uncommitted"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                         "isolation.level": isolation, "enable.auto.commit": False,
                         "enable.partition.eof": True, **FAST, **QUICK_READ})
    consumer.list_topics(topic, timeout=10)  # see ahead of assign()
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    at_end: set[int] = set()
    deadline = time.monotonic() + seconds
    try:
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, f"{topic}: no end of partition after {seconds} s: {got}"
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                assert message.error().code() == -191, message.error()  # _PARTITION_EOF
                at_end.add(message.partition())
                continue
            at_end.discard(message.partition())
            got[message.partition()].append(message.value())
    finally:
        consumer.close()
    return got


class DroppingProxy:
    """A TCP proxy in front of the broker that closes the client's connection instead of
    passing on every `every`-th Produce response: the broker has appended, the client
    never hears of it and retries. The broker advertises the proxy's port."""

    def __init__(self, target_port: int, every: int) -> None:
        self.target_port = target_port
        self.every = every
        self.produce_responses = 0
        self.dropped = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        produce_ids: set[int] = set()

        async def requests() -> None:
            while True:
                frame = await _frame(client_reader)
                api_key, _, correlation_id = struct.unpack_from(">hhi", frame, 4)
                if api_key == PRODUCE:
                    produce_ids.add(correlation_id)
                broker_writer.write(frame)

        async def responses() -> None:
            while True:
                frame = await _frame(broker_reader)
                (correlation_id,) = struct.unpack_from(">i", frame, 4)
                if correlation_id in produce_ids:
                    produce_ids.discard(correlation_id)
                    self.produce_responses += 1
                    if self.produce_responses % self.every == 0:
                        self.dropped += 1
                        return  # lost: the connection closes under the client
                client_writer.write(frame)

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(responses())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            client_writer.close()
            broker_writer.close()

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            connections = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in connections:
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


async def _frame(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(4)
    return head + await reader.readexactly(SIZE.unpack(head)[0])
