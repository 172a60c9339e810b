"""Exactly-once across the tiers: transactions, a killed consume-transform-produce loop and
an idempotent producer whose segments went to the object store and left the disk; read
back with read_committed and read_uncommitted, then again from a server restored from
the bucket alone."""

from __future__ import annotations

import shutil
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource
from kio.schema.errors import ErrorCode

from .cluster import KafkaServer
from .eos_support import (
    READ_COMMITTED,
    create_topics,
    fetch_partition,
    init_producer_id,
    list_offset,
    produce,
    producer_batch,
    read_values,
)
from .test_transactions import LATEST, TXN_CONF, assert_exactly_once, run_killed_worker, transactional
from .wire import Wire

TIERED = ("remote.log.manager.task.interval.ms=100", "log.local.retention.bytes=4096",
          "remote.log.chunk.bytes=4096", "remote.log.chunk.cache.bytes=65536")
SMALL_SEGMENTS = {"segment.bytes": "4096", "retention.ms": "-1"}
EARLIEST_LOCAL, LATEST_TIERED = -4, -5
FILLER = b"filler".ljust(900, b".")


def roll_and_wait_until_tiered(server: KafkaServer, partitions: list[tuple[str, int]]) -> None:
    """Append filler until everything written so far sits in uploaded segments, and wait
    until local retention has removed the oldest from the disk."""
    wire = Wire(server.bootstrap)
    failed: list[object] = []
    filler = Producer({"bootstrap.servers": server.bootstrap, "batch.size": 1000,  # batches under segment.bytes
                       "on_delivery": lambda error, _: error and failed.append(error)})
    targets = {tp: list_offset(wire, tp[0], tp[1], LATEST) for tp in partitions}
    for topic, partition in partitions:
        for _ in range(12):  # 12 x 900 bytes: the last record's segment rolls, retention can delete it
            filler.produce(topic, value=FILLER, partition=partition)
    assert filler.flush(10) == 0 and not failed, failed
    deadline = time.monotonic() + 30
    for (topic, partition), end in targets.items():
        while list_offset(wire, topic, partition, LATEST_TIERED) < end - 1 or \
                list_offset(wire, topic, partition, EARLIEST_LOCAL) == 0:
            assert time.monotonic() < deadline, f"{topic}-{partition} not tiered up to {end}:\n{server.log()[-3000:]}"
            time.sleep(0.1)
    wire.close()


def committed_and_all(server: KafkaServer, topic: str) -> tuple[dict[int, list[bytes]], dict[int, list[bytes]]]:
    def drop_filler(got: dict[int, list[bytes]]) -> dict[int, list[bytes]]:
        return {p: [v for v in values if v != FILLER] for p, values in got.items()}

    return (drop_filler(read_values(server.bootstrap, topic, 2, committed_only=True, seconds=30)),
            drop_filler(read_values(server.bootstrap, topic, 2, committed_only=False, seconds=30)))


def test_exactly_once_holds_for_history_in_the_object_store_and_after_a_restore_from_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data = tmp_path_factory.mktemp("eos-tiered")
    server = KafkaServer(str(data / "data"), *TXN_CONF, *TIERED).start()
    try:
        create_topics(server.bootstrap, "tt-multi", partitions=2, config=SMALL_SEGMENTS)
        create_topics(server.bootstrap, "tt-idem", partitions=1, config=SMALL_SEGMENTS)
        producer = transactional(server, "tt-multi")
        committed: dict[int, list[bytes]] = {0: [], 1: []}
        everything: dict[int, list[bytes]] = {0: [], 1: []}
        for round_ in range(16):
            commit = round_ % 3 != 1
            producer.begin_transaction()
            for i in range(8):
                value = f"{'commit' if commit else 'abort'}-{round_}-{i}".encode().ljust(200, b".")
                producer.produce("tt-multi", value=value, partition=i % 2)
                everything[i % 2].append(value)
                if commit:
                    committed[i % 2].append(value)
            producer.flush(10)  # written before the end: an abort drops what is still queued
            producer.commit_transaction(10) if commit else producer.abort_transaction(10)
        wire = Wire(server.bootstrap)
        producer_id, epoch = init_producer_id(wire)
        batches = [producer_batch(producer_id, epoch, 3 * n, *(b"idem-%d" % (3 * n + i) for i in range(3)))
                   for n in range(10)]
        for n, batch in enumerate(batches):
            assert produce(wire, "tt-idem", 0, batch) == (ErrorCode.none, 3 * n)
        wire.close()
        run_killed_worker(server, "tt", inputs=1500, victims=("worker", "server"), config=SMALL_SEGMENTS)
        roll_and_wait_until_tiered(server, [("tt-multi", 0), ("tt-multi", 1), ("tt-out", 0), ("tt-out", 1),
                                            ("tt-idem", 0)])
        # Read from offset 0: the oldest segments come from the object store now.
        assert committed_and_all(server, "tt-multi") == (committed, everything)
        wire = Wire(server.bootstrap)
        aborted = fetch_partition(wire, "tt-multi", 0, 0, READ_COMMITTED).aborted_transactions
        assert aborted[0].first_offset == 5  # round 1's: after 4 records and a marker
        assert produce(wire, "tt-idem", 0, batches[-1]) == (ErrorCode.none, 27)  # a retry, tiered already
        wire.close()
        assert_exactly_once(server, "tt", 1500)
        # The coordinator's own state stays on local disk: start-up reads it before tiering knows the bucket.
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        resource = ConfigResource("topic", "__transaction_state")
        configs = admin.describe_configs([resource])[resource].result(10)
        assert configs["remote.storage.enable"].value == "false"
    finally:
        assert server.stop() == 0, server.log()

    # A new machine: an empty data folder, the same bucket.
    shutil.rmtree(data / "data")
    restored = KafkaServer(str(data / "fresh"), *TXN_CONF, *TIERED)
    restored.objects_dir = server.objects_dir
    restored.start()
    try:
        assert committed_and_all(restored, "tt-multi") == (committed, everything)
        assert_exactly_once(restored, "tt", 1500, since_restore=True)
        wire = Wire(restored.bootstrap)
        # The producer keeps its idempotence: its last batch is known, the next one follows it.
        assert produce(wire, "tt-idem", 0, batches[-1]) == (ErrorCode.none, 27)
        gap = producer_batch(producer_id, epoch, 99, b"gap")
        assert produce(wire, "tt-idem", 0, gap)[0] == ErrorCode.out_of_order_sequence_number
        following = producer_batch(producer_id, epoch, 30, b"idem-30")
        end = list_offset(wire, "tt-idem", 0, LATEST)
        assert produce(wire, "tt-idem", 0, following) == (ErrorCode.none, end)
        # New producer ids start above every id the restored partitions know.
        assert init_producer_id(wire)[0] > producer_id
        wire.close()
    finally:
        assert restored.stop() == 0, restored.log()
