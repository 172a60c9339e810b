"""Transactions against a real server with real clients: commit and abort across topics
and partitions, read_committed against read_uncommitted, offsets committed inside
transactions, fencing, timeouts, SIGKILL in the middle, and a consume-transform-produce
loop killed again and again whose output holds each input exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaProducer
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KpTopicPartition
from kio.schema.add_partitions_to_txn.v3 import request as add_partitions_v3_schema
from kio.schema.end_txn.v1.request import EndTxnRequest as EndTxnV1
from kio.schema.end_txn.v3.request import EndTxnRequest as EndTxnV3
from kio.schema.errors import ErrorCode
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.offset_fetch.v8 import request as offset_fetch_v8
from kio.schema.txn_offset_commit.v3 import request as txn_commit

from .cluster import KafkaServer
from .eos_support import (
    FAST,
    INIT_PRODUCER_ID,
    READ_COMMITTED,
    READ_UNCOMMITTED,
    create_topics,
    fetch_partition,
    init_producer_id,
    list_offset,
    produce,
    producer_batch,
    read_values,
)
from .wire import Wire

TXN_CONF = ("transaction.state.log.num.partitions=2",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms=200")
LATEST = -1
WORKER = os.path.join(os.path.dirname(__file__), "eos_worker.py")
END_TXN = {1: EndTxnV1, 3: EndTxnV3}


def init_producer_id_answer(wire: Wire, transactional_id: str, *, timeout_ms: int = 60_000,
                            session: tuple[int, int] = (-1, -1)) -> tuple[ErrorCode, int, int]:
    wire.send(InitProducerIdRequest(transactional_id=transactional_id,
                                    transaction_timeout=timedelta(milliseconds=timeout_ms),
                                    producer_id=session[0], producer_epoch=session[1]), 1)
    answer = wire.receive(INIT_PRODUCER_ID, 4)[1]
    return answer.error_code, answer.producer_id, answer.producer_epoch


def fetch_committed(wire: Wire, group: str, topic: str, *, require_stable: bool) -> tuple[ErrorCode, int]:
    """(error, committed offset) of partition 0 from OffsetFetch v8."""
    wire.send(offset_fetch_v8.OffsetFetchRequest(require_stable=require_stable, groups=(
        offset_fetch_v8.OffsetFetchRequestGroup(group_id=group, topics=(
            offset_fetch_v8.OffsetFetchRequestTopics(name=topic, partition_indexes=(0,)),)),)), 5)
    partition = wire.receive(9, 8)[1].groups[0].topics[0].partitions[0]
    return partition.error_code, partition.committed_offset


def add_partitions_v3(transactional_id: str, producer_id: int, epoch: int, topic: str, partition: int) -> Any:
    return add_partitions_v3_schema.AddPartitionsToTxnRequest(
        v3_and_below_transactional_id=transactional_id, v3_and_below_producer_id=producer_id,
        v3_and_below_producer_epoch=epoch, v3_and_below_topics=(
            add_partitions_v3_schema.AddPartitionsToTxnTopic(name=topic, partitions=(partition,)),))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    server = KafkaServer(str(tmp_path_factory.mktemp("txn") / "data"), *TXN_CONF).start()
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    server = KafkaServer(str(tmp_path_factory.mktemp("txn-kill") / "data"), *TXN_CONF).start()
    yield server
    if server.running:
        assert server.stop() == 0, server.log()


def transactional(server: KafkaServer, transactional_id: str, **extra: object) -> Producer:
    producer = Producer({"bootstrap.servers": server.bootstrap, "transactional.id": transactional_id,
                         "linger.ms": 2, **FAST, **extra})
    producer.init_transactions(15)
    return producer


def kill(server: KafkaServer) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)


def committed_offset(server: KafkaServer, group: str, topic: str, partition: int = 0) -> int:
    consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": group, **FAST})
    try:
        return int(consumer.committed([TopicPartition(topic, partition)], 10)[0].offset)
    finally:
        consumer.close()


def test_commits_and_aborts_across_topics_and_partitions_and_what_each_isolation_level_sees(
    server: KafkaServer,
) -> None:
    create_topics(server.bootstrap, "tx-a", "tx-b", partitions=2)
    targets = [("tx-a", 0), ("tx-a", 1), ("tx-b", 0), ("tx-b", 1)]
    producer = transactional(server, "tx-multi")
    committed: dict[tuple[str, int], list[bytes]] = {t: [] for t in targets}
    everything: dict[tuple[str, int], list[bytes]] = {t: [] for t in targets}
    wire = Wire(server.bootstrap)
    for round_, commit in enumerate((True, False, True, False, True)):
        producer.begin_transaction()
        for i in range(12):
            topic, partition = targets[i % 4]
            value = f"{'commit' if commit else 'abort'}-{round_}-{i}".encode()
            producer.produce(topic, value=value, partition=partition)
            everything[(topic, partition)].append(value)
            if commit:
                committed[(topic, partition)].append(value)
        producer.flush(10)
        # Open: read_committed stops at the first offset of the transaction.
        high = list_offset(wire, "tx-a", 0, LATEST)
        stable = list_offset(wire, "tx-a", 0, LATEST, READ_COMMITTED)
        assert stable == high - 3 and stable < high
        if commit:
            producer.commit_transaction(10)
        else:
            producer.abort_transaction(10)
        # Ended: the marker is written, the last stable offset is the high watermark again.
        assert list_offset(wire, "tx-a", 0, LATEST, READ_COMMITTED) == list_offset(wire, "tx-a", 0, LATEST) == high + 1
    for topic in ("tx-a", "tx-b"):
        assert read_values(server.bootstrap, topic, 2, committed_only=True) == {
            p: committed[(topic, p)] for p in (0, 1)}
        assert read_values(server.bootstrap, topic, 2, committed_only=False) == {
            p: everything[(topic, p)] for p in (0, 1)}
    # The fetch response lists the aborted transactions for read_committed only.
    aborted = fetch_partition(wire, "tx-b", 1, 0, READ_COMMITTED).aborted_transactions
    assert [a.first_offset for a in aborted] == [4, 12]  # rounds 1 and 3 (3 records and a marker per round)
    assert fetch_partition(wire, "tx-b", 1, 0, READ_UNCOMMITTED).aborted_transactions is None
    wire.close()


def test_offsets_sent_to_a_transaction_count_only_when_it_commits(server: KafkaServer) -> None:
    create_topics(server.bootstrap, "tx-src", "tx-sink", partitions=1)
    source = Producer({"bootstrap.servers": server.bootstrap})
    for i in range(10):
        source.produce("tx-src", value=str(i).encode())
    source.flush(10)
    consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "tx-group", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000, **FAST})
    consumer.subscribe(["tx-src"])
    seen: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(seen) < 10 and time.monotonic() < deadline:
        seen += [m.value() for m in consumer.consume(10, 0.5) if m.error() is None]
    assert len(seen) == 10
    producer = transactional(server, "tx-offsets")
    producer.begin_transaction()
    producer.produce("tx-sink", value=b"derived")
    producer.send_offsets_to_transaction([TopicPartition("tx-src", 0, 5)], consumer.consumer_group_metadata(), 10)
    producer.flush(10)
    # Pending until the commit: a consumer that asks for stable offsets (KIP-447) is told to
    # wait, one that does not sees no commit yet.
    wire = Wire(server.bootstrap)
    assert fetch_committed(wire, "tx-group", "tx-src", require_stable=True) == (ErrorCode.unstable_offset_commit, -1)
    assert fetch_committed(wire, "tx-group", "tx-src", require_stable=False) == (ErrorCode.none, -1)
    producer.commit_transaction(10)
    assert fetch_committed(wire, "tx-group", "tx-src", require_stable=True) == (ErrorCode.none, 5)
    wire.close()
    assert committed_offset(server, "tx-group", "tx-src") == 5
    producer.begin_transaction()
    producer.produce("tx-sink", value=b"dropped")
    producer.send_offsets_to_transaction([TopicPartition("tx-src", 0, 10)], consumer.consumer_group_metadata(), 10)
    producer.abort_transaction(10)
    assert committed_offset(server, "tx-group", "tx-src") == 5
    consumer.close()
    assert read_values(server.bootstrap, "tx-sink", 1, committed_only=True) == {0: [b"derived"]}


def test_a_new_producer_with_the_same_transactional_id_fences_the_old_one_and_aborts_its_transaction(
    server: KafkaServer,
) -> None:
    create_topics(server.bootstrap, "tx-fence", partitions=1)
    old = transactional(server, "tx-fenced")
    old.begin_transaction()
    old.produce("tx-fence", value=b"from the old one")
    old.flush(10)
    new = transactional(server, "tx-fenced")
    with pytest.raises(KafkaException) as failed:
        old.commit_transaction(10)
    assert failed.value.args[0].fatal(), failed.value.args[0]  # fenced: librdkafka gives up on it
    new.begin_transaction()
    new.produce("tx-fence", value=b"from the new one")
    new.commit_transaction(10)
    assert read_values(server.bootstrap, "tx-fence", 1, committed_only=True) == {0: [b"from the new one"]}
    assert read_values(server.bootstrap, "tx-fence", 1, committed_only=False) == {
        0: [b"from the old one", b"from the new one"]}


def test_a_transaction_that_outlives_its_timeout_is_aborted(server: KafkaServer) -> None:
    create_topics(server.bootstrap, "tx-slow", partitions=1)
    producer = transactional(server, "tx-slow", **{"transaction.timeout.ms": 1000, "message.timeout.ms": 1000})
    producer.begin_transaction()
    producer.produce("tx-slow", value=b"too late")
    producer.flush(10)
    wire = Wire(server.bootstrap)
    assert list_offset(wire, "tx-slow", 0, LATEST, READ_COMMITTED) == 0
    deadline = time.monotonic() + 10
    while list_offset(wire, "tx-slow", 0, LATEST, READ_COMMITTED) != list_offset(wire, "tx-slow", 0, LATEST):
        assert time.monotonic() < deadline, "the coordinator did not abort the timed out transaction"
        time.sleep(0.1)
    wire.close()
    with pytest.raises(KafkaException):
        producer.commit_transaction(10)
    assert read_values(server.bootstrap, "tx-slow", 1, committed_only=True) == {0: []}


def test_aiokafka_transactions_commit_and_abort_with_offsets(server: KafkaServer) -> None:
    create_topics(server.bootstrap, "tx-aio", "tx-aio-src", partitions=1)

    async def scenario() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=server.bootstrap, transactional_id="tx-aio")
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait("tx-aio", b"kept", partition=0)
                await producer.send_offsets_to_transaction({AioTopicPartition("tx-aio-src", 0): 3}, "aio-group")
            await producer.begin_transaction()
            await producer.send_and_wait("tx-aio", b"dropped", partition=0)
            await producer.send_offsets_to_transaction({AioTopicPartition("tx-aio-src", 0): 7}, "aio-group")
            await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(scenario())
    assert read_values(server.bootstrap, "tx-aio", 1, committed_only=True) == {0: [b"kept"]}
    assert read_values(server.bootstrap, "tx-aio", 1, committed_only=False) == {0: [b"kept", b"dropped"]}
    assert committed_offset(server, "aio-group", "tx-aio-src") == 3


def test_kafka_python_transactions_commit_and_abort_with_offsets(server: KafkaServer) -> None:
    create_topics(server.bootstrap, "tx-kp", "tx-kp-src", partitions=1)
    producer = KafkaProducer(bootstrap_servers=server.bootstrap, transactional_id="tx-kp")
    producer.init_transactions()
    producer.begin_transaction()
    producer.send("tx-kp", b"kept", partition=0)
    producer.send_offsets_to_transaction({KpTopicPartition("tx-kp-src", 0): OffsetAndMetadata(4, "", -1)}, "kp-group")
    producer.commit_transaction()
    producer.begin_transaction()
    producer.send("tx-kp", b"dropped", partition=0).get(10)
    producer.abort_transaction()
    producer.close(5)
    assert read_values(server.bootstrap, "tx-kp", 1, committed_only=True) == {0: [b"kept"]}
    assert read_values(server.bootstrap, "tx-kp", 1, committed_only=False) == {0: [b"kept", b"dropped"]}
    assert committed_offset(server, "kp-group", "tx-kp-src") == 4


def test_transactional_requests_that_do_not_fit_the_transaction_are_refused_and_write_nothing(
    server: KafkaServer,
) -> None:
    create_topics(server.bootstrap, "tx-wire", partitions=2)
    wire = Wire(server.bootstrap)
    assert init_producer_id_answer(wire, "tx-wire", timeout_ms=24 * 3600 * 1000)[0] == \
        ErrorCode.invalid_transaction_timeout
    producer_id, first_epoch = init_producer_id(wire, "tx-wire")
    # KIP-360: the session bumps its own epoch; a retry of that bump gets the same answer,
    # an older session is fenced.
    bumped = init_producer_id_answer(wire, "tx-wire", session=(producer_id, first_epoch))
    assert bumped == (ErrorCode.none, producer_id, first_epoch + 1)
    assert init_producer_id_answer(wire, "tx-wire", session=(producer_id, first_epoch)) == bumped
    assert init_producer_id_answer(wire, "tx-wire", session=(producer_id, first_epoch - 1))[0] == \
        ErrorCode.producer_fenced
    # A new producer (no session) bumps too; the session it replaced cannot pass for a retry.
    assert init_producer_id_answer(wire, "tx-wire") == (ErrorCode.none, producer_id, first_epoch + 2)
    assert init_producer_id_answer(wire, "tx-wire", session=(producer_id, first_epoch + 1))[0] == \
        ErrorCode.producer_fenced
    epoch = first_epoch + 2
    txn = partial(producer_batch, producer_id, epoch, transactional=True)
    assert produce(wire, "tx-wire", 0, txn(0, b"not added"), "tx-wire")[0] == ErrorCode.invalid_txn_state
    wire.send(add_partitions_v3("tx-wire", producer_id, epoch, "tx-wire", 0), 2)
    assert wire.receive(24, 3)[1].results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == \
        ErrorCode.none
    assert produce(wire, "tx-wire", 0, txn(0, b"no id"))[0] == ErrorCode.invalid_request
    assert produce(wire, "tx-wire", 1, txn(0, b"other partition"), "tx-wire")[0] == ErrorCode.invalid_txn_state
    # Behind a plain first batch, the transactional one is checked all the same.
    mixed = producer_batch(-1, -1, -1, b"plain") + txn(0, b"second batch")
    assert produce(wire, "tx-wire", 1, mixed, "tx-wire")[0] == ErrorCode.invalid_txn_state
    stale = producer_batch(producer_id, epoch - 1 if epoch else epoch + 1, 0, b"x", transactional=True)
    assert produce(wire, "tx-wire", 0, stale, "tx-wire")[0] == ErrorCode.invalid_producer_epoch
    no_sequence = producer_batch(producer_id, epoch, -1, b"x", transactional=True)
    assert produce(wire, "tx-wire", 0, no_sequence, "tx-wire")[0] == ErrorCode.invalid_record
    # TxnOffsetCommit needs AddOffsetsToTxn first; a stale epoch is fenced, in each version's words.
    wire.send(txn_commit.TxnOffsetCommitRequest(
        transactional_id="tx-wire", group_id="g", producer_id=producer_id, producer_epoch=epoch, generation_id=-1,
        member_id="", group_instance_id=None, topics=(txn_commit.TxnOffsetCommitRequestTopic(name="tx-wire", partitions=(
            txn_commit.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=1, committed_leader_epoch=-1,
                                                       committed_metadata=None),)),)), 3)
    assert wire.receive(28, 3)[1].topics[0].partitions[0].error_code == ErrorCode.invalid_txn_state
    for version, expected in ((1, ErrorCode.invalid_producer_epoch), (3, ErrorCode.producer_fenced)):
        request = END_TXN[version](transactional_id="tx-wire", producer_id=producer_id, producer_epoch=epoch + 7,
                                   committed=True)
        wire.send(request, 4)
        assert wire.receive(26, version)[1].error_code == expected
    assert list_offset(wire, "tx-wire", 0, LATEST) == list_offset(wire, "tx-wire", 1, LATEST) == 0  # nothing written
    wire.close()


def test_sigkill_in_the_middle_of_transactions(own_server: KafkaServer) -> None:
    server = own_server
    create_topics(server.bootstrap, "tx-kill", partitions=2)
    create_topics(server.bootstrap, "tx-kill-src", partitions=1)
    done = transactional(server, "tx-done")
    done.begin_transaction()
    for i in range(10):
        done.produce("tx-kill", value=f"committed-{i}".encode(), partition=i % 2)
    consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "kill-group", **FAST})
    done.send_offsets_to_transaction([TopicPartition("tx-kill-src", 0, 4)], consumer.consumer_group_metadata(), 10)
    consumer.close()
    done.commit_transaction(10)
    open_ = transactional(server, "tx-open")
    open_.begin_transaction()
    for i in range(10):
        open_.produce("tx-kill", value=f"open-{i}".encode(), partition=i % 2)
    open_.flush(10)
    wire = Wire(server.bootstrap)
    assert list_offset(wire, "tx-kill", 0, LATEST, READ_COMMITTED) == 6  # 5 records and a marker
    wire.close()

    kill(server)
    server.start()  # an unclean start: the coordinator aborts what was open
    wire = Wire(server.bootstrap)
    for partition in (0, 1):
        assert list_offset(wire, "tx-kill", partition, LATEST, READ_COMMITTED) == \
            list_offset(wire, "tx-kill", partition, LATEST) == 12  # data, commit, data, abort
    wire.close()
    assert read_values(server.bootstrap, "tx-kill", 2, committed_only=True) == {
        p: [f"committed-{i}".encode() for i in range(p, 10, 2)] for p in (0, 1)}
    assert committed_offset(server, "kill-group", "tx-kill-src") == 4
    with pytest.raises(KafkaException):
        open_.commit_transaction(10)  # its transaction is gone with its epoch
    again = transactional(server, "tx-open")
    again.begin_transaction()
    again.produce("tx-kill", value=b"after the restart", partition=0)
    again.commit_transaction(10)
    assert read_values(server.bootstrap, "tx-kill", 2, committed_only=True)[0][-1] == b"after the restart"


def test_consume_transform_produce_killed_again_and_again_writes_each_input_exactly_once(
    own_server: KafkaServer,
) -> None:
    run_killed_worker(own_server, "ctp", inputs=3000, victims=("worker", "server", "worker", "worker"))


def run_killed_worker(server: KafkaServer, prefix: str, *, inputs: int, victims: tuple[str, ...],
                      config: dict[str, str] | None = None) -> None:
    """Feed `inputs` values, run the worker, SIGKILL it (and the server) mid-flight, run it
    to the end; the output must hold each input once, in input order per partition."""
    source, sink = f"{prefix}-in", f"{prefix}-out"
    create_topics(server.bootstrap, source, sink, partitions=2, config=config)
    failed: list[object] = []
    feeder = Producer({"bootstrap.servers": server.bootstrap, "enable.idempotence": True, "linger.ms": 5,
                       "batch.size": 2000, "on_delivery": lambda error, _: error and failed.append(error)})
    for i in range(inputs):
        feeder.produce(source, value=str(i).encode(), partition=i % 2)
    assert feeder.flush(30) == 0 and not failed, failed
    command = [sys.executable, WORKER, server.bootstrap, source, sink, f"{prefix}-group", f"{prefix}-worker", "2"]
    wire = Wire(server.bootstrap)
    for victim in victims:
        worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = list_offset(wire, sink, 0, LATEST)
        deadline = time.monotonic() + 20
        while list_offset(wire, sink, 0, LATEST) < start + 50 and worker.poll() is None:  # mid-flight
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.05)
        if victim == "server":
            wire.close()
            kill(server)
            server.start()
            wire = Wire(server.bootstrap)
        worker.kill()
        worker.wait(10)
    wire.close()
    for _ in range(3):  # to the end; a run that meets a fenced or aborted transaction exits and is restarted
        finished = subprocess.run(command, timeout=90, capture_output=True, text=True)
        if finished.returncode == 0:
            break
    else:
        raise AssertionError(f"the worker never finished:\n{finished.stderr[-3000:]}\n{server.log()[-3000:]}")
    assert_exactly_once(server, prefix, inputs)


def assert_exactly_once(server: KafkaServer, prefix: str, inputs: int, *, since_restore: bool = False) -> None:
    source, sink = f"{prefix}-in", f"{prefix}-out"
    got = read_values(server.bootstrap, sink, 2, committed_only=True, seconds=30)
    got = {p: [v for v in values if v.startswith(b"out-")] for p, values in got.items()}  # not the filler
    wire = Wire(server.bootstrap)
    state = [(list_offset(wire, sink, p, LATEST, READ_COMMITTED), list_offset(wire, sink, p, LATEST),
              None if since_restore else committed_offset(server, f"{prefix}-group", source, p)) for p in (0, 1)]
    wire.close()
    for partition in (0, 1):
        assert got[partition] == [f"out-{i}".encode() for i in range(partition, inputs, 2)], (state, server.log())
