"""Idempotent producers against a real server: producer ids that are never reused, retries
answered with their first offsets, gaps and fenced epochs refused, and real clients whose
responses a proxy throws away (no duplicate, no gap)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer
from kafka import KafkaProducer
from kio.schema.errors import ErrorCode

from hotlog.records import decode_batches

from .cluster import KafkaServer
from .eos_support import (
    FAST,
    READ_UNCOMMITTED,
    DroppingProxy,
    create_topics,
    fetch_partition,
    init_producer_id,
    produce,
    producer_batch,
    read_values,
)
from .wire import Wire


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    server = KafkaServer(str(tmp_path_factory.mktemp("idempotence") / "data"),
                         "transaction.state.log.num.partitions=2").start()
    yield server
    if server.running:
        assert server.stop() == 0, server.log()


def kill_and_restart(server: KafkaServer) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    server.start()


def test_producer_ids_are_never_handed_out_twice_across_restarts_clean_or_killed(server: KafkaServer) -> None:
    seen: list[int] = []
    epochs: list[int] = []
    for restart in (server.restart, lambda: kill_and_restart(server), None):
        wire = Wire(server.bootstrap)
        for _ in range(3):
            producer_id, epoch = init_producer_id(wire)
            assert epoch == 0
            seen.append(producer_id)
        transactional = init_producer_id(wire, "the-same-app")
        seen.append(transactional[0])
        epochs.append(transactional[1])
        wire.close()
        if restart is not None:
            restart()
    idempotent = [pid for i, pid in enumerate(seen) if i % 4 != 3]
    assert len(set(idempotent)) == len(idempotent) == 9
    assert sorted(idempotent) == idempotent  # each restart continues above what it handed out
    # A transactional id keeps its producer id across restarts; only the epoch moves.
    assert len({pid for i, pid in enumerate(seen) if i % 4 == 3}) == 1 and epochs == [0, 1, 2]
    assert not set(idempotent) & {seen[3]}


def test_retries_get_their_first_offsets_gaps_and_old_epochs_are_refused_also_after_a_kill(
    server: KafkaServer,
) -> None:
    create_topics(server.bootstrap, "idem-wire", partitions=1)
    wire = Wire(server.bootstrap)
    producer_id, epoch = init_producer_id(wire)
    first = producer_batch(producer_id, epoch, 0, b"a", b"b", b"c")
    second = producer_batch(producer_id, epoch, 3, b"d", b"e")
    assert produce(wire, "idem-wire", 0, first) == (ErrorCode.none, 0)
    assert produce(wire, "idem-wire", 0, second) == (ErrorCode.none, 3)
    assert produce(wire, "idem-wire", 0, first) == (ErrorCode.none, 0)  # a retry: not written again
    assert produce(wire, "idem-wire", 0, second) == (ErrorCode.none, 3)
    gap = producer_batch(producer_id, epoch, 9, b"gap")
    assert produce(wire, "idem-wire", 0, gap)[0] == ErrorCode.out_of_order_sequence_number
    stranger, _ = init_producer_id(wire)  # no state in this partition: it cannot continue anything
    assert produce(wire, "idem-wire", 0, producer_batch(stranger, 0, 4, b"?"))[0] == ErrorCode.unknown_producer_id
    wire.close()

    kill_and_restart(server)  # the producer state comes back from snapshot and log
    wire = Wire(server.bootstrap)
    assert produce(wire, "idem-wire", 0, second) == (ErrorCode.none, 3)
    assert produce(wire, "idem-wire", 0, gap)[0] == ErrorCode.out_of_order_sequence_number
    bumped = producer_batch(producer_id, epoch + 1, 0, b"f")
    assert produce(wire, "idem-wire", 0, bumped) == (ErrorCode.none, 5)
    stale = producer_batch(producer_id, epoch, 5, b"stale")
    assert produce(wire, "idem-wire", 0, stale)[0] == ErrorCode.invalid_producer_epoch
    wire.close()
    assert read_values(server.bootstrap, "idem-wire", 1, committed_only=False) == {0: [b"a", b"b", b"c", b"d", b"e", b"f"]}


def test_confluent_retries_through_lost_responses_leave_no_duplicate_and_no_gap(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data = str(tmp_path_factory.mktemp("proxied") / "data")
    server = KafkaServer(data)
    proxy = DroppingProxy(server.kafka_port, every=5)
    server.extra += ("--conf", f"advertised.listeners=PLAINTEXT://127.0.0.1:{proxy.port}")  # clients use the proxy
    server.start()
    try:
        bootstrap = f"127.0.0.1:{proxy.port}"
        create_topics(server.bootstrap, "idem-proxy", partitions=2)
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 2,
                             "batch.num.messages": 50, "retry.backoff.ms": 20, **FAST})
        sent = 3000
        for i in range(sent):
            producer.produce("idem-proxy", value=str(i).encode(), partition=i % 2)
            if i % 100 == 99:
                producer.poll(0)
        assert producer.flush(60) == 0
        assert proxy.dropped >= 3, proxy.produce_responses
        got = read_values(server.bootstrap, "idem-proxy", 2, committed_only=False)
        for partition in (0, 1):
            assert [int(v) for v in got[partition]] == list(range(partition, sent, 2))  # in order, once each
    finally:
        proxy.close()
        assert server.stop() == 0, server.log()


def test_default_idempotent_producers_of_kafka_python_and_aiokafka_write_each_record_once(
        kafka_server: KafkaServer) -> None:
    server = kafka_server  # the package's: no restart here, topics of its own
    create_topics(server.bootstrap, "idem-kp", "idem-aio", partitions=1)
    kp = KafkaProducer(bootstrap_servers=server.bootstrap, linger_ms=5)  # idempotent by default
    for i in range(100):
        kp.send("idem-kp", str(i).encode())
    kp.flush(15)
    kp.close(5)

    async def aio() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=server.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            sends = [await producer.send("idem-aio", str(i).encode()) for i in range(100)]
            offsets = [(await s).offset for s in sends]
            assert offsets == list(range(100))
        finally:
            await producer.stop()

    asyncio.run(aio())
    for topic in ("idem-kp", "idem-aio"):
        assert read_values(server.bootstrap, topic, 1, committed_only=False)[0] == [str(i).encode() for i in range(100)]


def test_a_producer_whose_state_expired_starts_over_without_losing_or_doubling_records(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = KafkaServer(str(tmp_path_factory.mktemp("expiry") / "data"), "producer.id.expiration.ms=500",
                         "producer.id.expiration.check.interval.ms=100").start()
    try:
        create_topics(server.bootstrap, "idem-expiry", partitions=1)
        failed: list[object] = []
        producer = Producer({"bootstrap.servers": server.bootstrap, "enable.idempotence": True, "linger.ms": 2,
                             "on_delivery": lambda error, _: error and failed.append(error), **FAST})
        for i in range(20):
            producer.produce("idem-expiry", value=str(i).encode())
            if i == 9:
                assert producer.flush(10) == 0
                time.sleep(1.5)  # idle past producer.id.expiration.ms: the partition forgets it
        assert producer.flush(20) == 0 and not failed, failed  # UNKNOWN_PRODUCER_ID: librdkafka starts over
        got = read_values(server.bootstrap, "idem-expiry", 1, committed_only=False)
        assert got[0] == [str(i).encode() for i in range(20)]
        wire = Wire(server.bootstrap)
        records = fetch_partition(wire, "idem-expiry", 0, 0, READ_UNCOMMITTED).records
        wire.close()
        first, second = [b.header for b in decode_batches(records)]
        # The second half started over (sequence 0) as a new producer session, not at sequence 10.
        assert second.base_sequence == 0 and (second.producer_id, second.producer_epoch) != \
            (first.producer_id, first.producer_epoch)
    finally:
        assert server.stop() == 0, server.log()


def test_a_producer_id_block_that_cannot_be_reserved_is_a_storage_error(tmp_path) -> None:
    from broker.txn.producer_ids import BLOCK_SIZE, ProducerIdAllocator
    from hotlog.errors import LogStorageError

    (tmp_path / "not-a-folder").write_text("")
    broken = ProducerIdAllocator(str(tmp_path / "not-a-folder" / "data"), lambda: 0)
    with pytest.raises(LogStorageError, match="cannot reserve producer ids"):
        asyncio.run(broken.allocate())

    async def many() -> list[int]:
        allocator = ProducerIdAllocator(str(tmp_path / "data"), lambda: 7)
        return list(await asyncio.gather(*(allocator.allocate() for _ in range(BLOCK_SIZE + 5))))

    ids = asyncio.run(many())  # concurrent callers across a block boundary: distinct, in order
    assert ids == list(range(7, 7 + BLOCK_SIZE + 5))
    assert (tmp_path / "data" / "producer-id-block").read_text() == str(7 + 2 * BLOCK_SIZE)
