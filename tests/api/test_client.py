"""The Python client (api.client) against `tierlog serve`, and committed offsets across a restart."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from api.client import Admin, Consumer, NewRecord, Producer, TierlogError
from hotlog.partitioner import partition_for_key
from testkit.ports import free_port

from .server import TierlogServer


def test_readme_example(tierlog_server: TierlogServer) -> None:
    server = tierlog_server.grpc_address
    Admin(server).create_topic("events", partitions=3)
    Producer(server).send("events", b"hello", key=b"user-1")
    messages = Consumer("events", server, start="beginning").poll(timeout=1.0)
    assert [(m.partition, m.offset, m.key, m.value) for m in messages] == [
        (partition_for_key(b"user-1", 3), 0, b"user-1", b"hello")]


def test_consumer_polls_and_streams(tierlog_server: TierlogServer) -> None:
    server = tierlog_server.grpc_address
    with Admin(server) as admin, Producer(server) as producer:
        admin.create_topic("stream", partitions=2)
        producer.send_many("stream", [NewRecord(b"%d" % i, timestamp_ms=1000 * i) for i in range(1, 6)], partition=0)
        with Consumer("stream", server, start=datetime.fromtimestamp(3, UTC)) as consumer:
            assert [m.value for m in consumer.poll(0)] == [b"3", b"4", b"5"]
            assert consumer.positions == {0: 5, 1: 0}
            assert consumer.poll(0.2) == []
        with Consumer("stream", server, start="latest") as consumer:
            assert consumer.positions == {0: 5, 1: 0}
            later = threading.Thread(target=lambda: (time.sleep(0.3), producer.send("stream", b"pushed", partition=1)))
            later.start()
            message = next(iter(consumer))
            later.join()
            assert (message.partition, message.offset, message.value) == (1, 0, b"pushed")


def test_client_errors_carry_status_codes(tierlog_server: TierlogServer) -> None:
    with pytest.raises(TierlogError) as caught:
        Producer(tierlog_server.grpc_address).send("missing", b"x")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND and "missing" in caught.value.message
    with pytest.raises(TierlogError) as caught:
        Admin(f"127.0.0.1:{free_port()}", timeout=5).list_topics()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and "cannot reach tierlog" in caught.value.message
    with pytest.raises(ValueError):
        Producer(tierlog_server.grpc_address).send_many("missing", [NewRecord(b"x")], compression="brotli")


def _stream_until_error(consumer: Consumer, errors: list[TierlogError]) -> None:
    try:
        for _ in consumer:
            pass
    except TierlogError as error:
        errors.append(error)


def test_committed_offsets_survive_a_restart(tmp_path: Path) -> None:
    server = TierlogServer(str(tmp_path / "data")).start()
    address = server.grpc_address
    try:
        Admin(address).create_topic("jobs", partitions=2)
        Producer(address).send_many("jobs", [NewRecord(b"job %d" % i) for i in range(10)], partition=1)
        consumer = Consumer("jobs", address, start="beginning", group="workers")
        assert len(consumer.poll(0)) == 10
        consumer.commit()
        Consumer("jobs", address, start="beginning", group="other").commit()  # another group, its own offsets
        ended: list[TierlogError] = []
        subscriber = threading.Thread(target=_stream_until_error, args=(Consumer("jobs", address), ended))
        subscriber.start()
        time.sleep(0.5)  # subscribed and waiting
    finally:
        stopping = time.monotonic()
        assert server.stop() == 0, server.log()
    # A waiting subscriber does not hold the shutdown up: its stream ends, and it is told why.
    assert time.monotonic() - stopping < 3
    subscriber.join(5)
    assert ended[0].code == grpc.StatusCode.UNAVAILABLE and "shutting down" in ended[0].message
    assert os.path.exists(tmp_path / "data" / ".clean-shutdown")

    server.start()
    address = server.grpc_address
    try:
        assert Consumer("jobs", address, group="workers").positions == {0: 0, 1: 10}
        assert Consumer("jobs", address, start="latest", group="other").positions == {0: 0, 1: 0}
        Producer(address).send("jobs", b"job 10", partition=1)
        resumed = Consumer("jobs", address, start="beginning", group="workers")
        assert [m.value for m in resumed.poll(1.0)] == [b"job 10"]
        # A deleted and recreated topic starts with no committed offsets.
        Admin(address).delete_topic("jobs")
        Admin(address).create_topic("jobs", partitions=2)
        assert Consumer("jobs", address, start="latest", group="workers").positions == {0: 0, 1: 0}
    finally:
        assert server.stop() == 0, server.log()


def test_internal_topics_are_written_by_the_broker_only(tmp_path: Path) -> None:
    """gRPC clients may not write or delete `__consumer_offsets` (as the Kafka listener
    refuses them): garbage there would stop the broker from starting again."""
    server = TierlogServer(str(tmp_path / "data")).start()
    try:
        address = server.grpc_address
        Admin(address).create_topic("jobs")
        Producer(address).send("jobs", b"job")
        consumer = Consumer("jobs", address, start="beginning", group="workers")
        assert len(consumer.poll(1.0)) == 1
        consumer.commit()  # creates __consumer_offsets
        for internal in ("__consumer_offsets", "__transaction_state"):
            with pytest.raises(TierlogError) as refused:
                Producer(address).send_many(internal, [NewRecord(os.urandom(20), os.urandom(5)) for _ in range(50)],
                                            partition=0)
            assert refused.value.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        with pytest.raises(TierlogError) as refused:
            Admin(address).delete_topic("__consumer_offsets")
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and "internal topic" in refused.value.message
        with pytest.raises(TierlogError) as refused:  # the broker makes it, with its own configs
            Admin(address).create_topic("__transaction_state", partitions=1)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and "internal topic" in refused.value.message
    finally:
        assert server.stop() == 0, server.log()
    server.start()
    try:
        assert Consumer("jobs", server.grpc_address, group="workers").positions == {0: 1}
    finally:
        assert server.stop() == 0, server.log()
