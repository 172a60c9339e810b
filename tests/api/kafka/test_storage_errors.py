"""Storage that fails under `tierlog serve`, as clients meet it: a full disk (a small tmpfs
as the data folder) and a corrupt object in the bucket (the folder store and moto's S3).
The partitions concerned are answered KAFKA_STORAGE_ERROR (gRPC: UNAVAILABLE), the other
partitions of the same request are served, the connection stays up, a metric counts each
answer, nothing torn or wrong is ever stored or served, and room coming back heals it
without a restart."""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12 import request as fetch_v12
from kio.schema.produce.v9 import request as produce_v9
from prometheus_client import REGISTRY

from api.kafka.codec import response_type
from api.kafka.context import Call, KafkaContext
from api.kafka.fetch import handle_fetch
from api.kafka.file_send import FileSend
from api.proto import tierlog_pb2 as pb
from api.proto import tierlog_pb2_grpc as pb_grpc
from broker.groups.coordinator import GroupCoordinator
from broker.node import Broker
from hotlog.records import decode_batches
from hotlog.segment import FileSlice
from testkit.moto_server import MotoServer

from ...broker.support import run
from ..server import http_get
from ..test_grpc import create, record, status_of
from .cluster import KafkaServer
from .test_confluent import assign
from .test_protocol import FETCH, METADATA, PRODUCE, batch, metadata
from .wire import Wire

BIG = 64 * 1024
LEFT_FREE = 512 * 1024  # beside the filler: what produce fills up


@pytest.fixture
def small_disk(tmp_path: Any) -> Iterator[str]:
    """An 8 MiB tmpfs to be the data folder: a disk that fills in a second."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield str(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def produce(wire: Wire, correlation_id: int, topic: str, batches: dict[int, bytes]) -> dict[int, tuple[int, int]]:
    """acks=all: partition -> (error code, base offset)."""
    wire.send(produce_v9.ProduceRequest(transactional_id=None, acks=-1, timeout=timedelta(seconds=5), topic_data=(
        produce_v9.TopicProduceData(name=topic, partition_data=tuple(
            produce_v9.PartitionProduceData(index=p, records=records) for p, records in batches.items())),)),
        correlation_id)
    answer_id, response = wire.receive(PRODUCE, 9)
    assert answer_id == correlation_id
    return {p.index: (p.error_code, p.base_offset) for p in response.responses[0].partition_responses}


def read_back(server: KafkaServer, topic: str, partition: int) -> list[bytes | None]:
    """Every value of the partition through raw fetches, each batch CRC-checked on the way."""
    wire = Wire(server.bootstrap)
    values: list[bytes | None] = []
    offset = 0
    for correlation_id in range(1000):
        wire.send(fetch_request(topic, {partition: offset}), correlation_id)
        part = wire.receive(FETCH, 12)[1].responses[0].partitions[0]
        assert part.error_code == ErrorCode.none
        batches = list(decode_batches(part.records or b""))
        if not batches:
            wire.close()
            return values
        for decoded in batches:
            values += [r.value for r in decoded.records]
            offset = decoded.header.next_offset
    raise AssertionError("the read did not reach the end")


def fetch_request(topic: str, partitions: dict[int, int]) -> Any:
    """Fetch v12 of each partition from its offset, answered at once."""
    return fetch_v12.FetchRequest(max_wait=timedelta(0), min_bytes=1, forgotten_topics_data=(), topics=(
        fetch_v12.FetchTopic(topic=topic, partitions=tuple(
            fetch_v12.FetchPartition(partition=p, fetch_offset=offset, partition_max_bytes=1 << 20)
            for p, offset in partitions.items())),))


def storage_errors(server: KafkaServer, protocol: str, api: str, error: str) -> float:
    _, text = http_get(f"{server.http_url}/metrics")
    found = re.search(rf'^tierlog_storage_errors_total\{{api="{api}",error="{error}",protocol="{protocol}"\}} (\S+)$',
                      text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def fill(folder: str, leave: int) -> str:
    """A file taking all but `leave` bytes of the folder's disk; returns its path."""
    path = os.path.join(folder, "filler")
    stats = os.statvfs(folder)
    size = stats.f_bavail * stats.f_frsize - leave
    with open(path, "wb") as f:
        for start in range(0, size, 1 << 20):
            f.write(b"\0" * min(1 << 20, size - start))
    return path


def test_a_full_disk_refuses_only_the_partition_it_cannot_hold_and_heals_once_there_is_room(
        small_disk: str) -> None:
    server = KafkaServer(small_disk, "num.partitions=2").start()
    wire = Wire(server.bootstrap)
    wire.send(metadata("full"), 1)
    assert wire.receive(METADATA, 12)[1].topics[0].error_code == ErrorCode.none
    assert produce(wire, 2, "full", {1: batch(b"small")}) == {1: (ErrorCode.none, 0)}
    filler = fill(small_disk, LEFT_FREE)
    acked: list[bytes | None] = []
    for i in range(2 * LEFT_FREE // BIG):
        value = b"%04d" % i + os.urandom(BIG)
        code, base = produce(wire, 10 + i, "full", {0: batch(value)})[0]
        if code != ErrorCode.none:
            break
        assert base == len(acked)
        acked.append(value)
    assert code == ErrorCode.kafka_storage_error and acked, (code, len(acked))
    # One request, two partitions: the one whose append fits (within its file's last page) is served.
    assert produce(wire, 100, "full", {0: batch(os.urandom(BIG)), 1: batch(b"fits")}) == {
        0: (ErrorCode.kafka_storage_error, -1), 1: (ErrorCode.none, 1)}
    assert storage_errors(server, "kafka", "Produce", "DiskWriteError") == 2
    with grpc.insecure_channel(server.grpc_address) as channel:
        refused = status_of(lambda: pb_grpc.TierlogStub(channel).Produce(
            pb.ProduceRequest(topic="full", partition=0, records=[record(os.urandom(BIG))])))
        assert refused.code() == grpc.StatusCode.UNAVAILABLE and "No space left" in (refused.details() or "")
    assert storage_errors(server, "grpc", "Produce", "DiskWriteError") == 1
    os.unlink(filler)  # room again: the same connection, no restart
    assert produce(wire, 101, "full", {0: batch(b"after")}) == {0: (ErrorCode.none, len(acked))}
    wire.close()
    assert server.stop() == 0, server.log()
    server.start()
    try:
        assert read_back(server, "full", 0) == [*acked, b"after"]  # no torn batch, no gap
        assert read_back(server, "full", 1) == [b"small", b"fits"]
    finally:
        assert server.stop() == 0, server.log()
    assert "API 0 failed" not in server.log()


TIERED = ("remote.log.manager.task.interval.ms=100", "log.local.retention.bytes=4096")
FIRST_SEGMENT = re.compile(r"corrupt-[0-9a-f-]{36}/0/0{20}-[0-9a-f-]{36}\.log$")  # partition 0, offset 0


def flip_a_byte(data: bytes) -> bytes:
    """One bit of the first batch's first record changed: its CRC-32C no longer matches."""
    at = 61 + 30
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def in_folder(objects_dir: str) -> Callable[[], bool]:
    def corrupt() -> bool:
        for folder, _, names in os.walk(objects_dir):
            for name in names:
                path = os.path.join(folder, name)
                if FIRST_SEGMENT.search(path):
                    with open(path, "rb") as f:
                        data = f.read()
                    with open(path, "wb") as f:
                        f.write(flip_a_byte(data))
                    return True
        return False
    return corrupt


def in_bucket(moto: MotoServer, bucket: str) -> Callable[[], bool]:
    def corrupt() -> bool:
        s3 = moto.client()
        for listed in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            if FIRST_SEGMENT.search(listed["Key"]):
                data = s3.get_object(Bucket=bucket, Key=listed["Key"])["Body"].read()
                s3.put_object(Bucket=bucket, Key=listed["Key"], Body=flip_a_byte(data))
                return True
        return False
    return corrupt


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> tuple[KafkaServer, Callable[[], bool]]:
    """A tiering server and how to flip a byte in its first tiered segment of partition 0."""
    if request.param == "folder":
        server = KafkaServer(str(tmp_path / "data"), *TIERED)
        return server, in_folder(server.objects_dir)
    moto: MotoServer = request.getfixturevalue("moto")
    bucket = moto.new_bucket()
    server = KafkaServer(str(tmp_path / "data"), *TIERED,
                         object_store=f"s3://{bucket}/tierlog?endpoint_url={moto.endpoint_url}")
    return server, in_bucket(moto, bucket)


def consume(server: KafkaServer, topic: str, until: Callable[[dict[int, list[bytes]]], bool],
            seconds: float) -> dict[int, list[bytes]]:
    """Values per partition read by confluent-kafka (check.crcs off, its default) from the start."""
    consumer = Consumer({"bootstrap.servers": server.bootstrap, "group.id": "corrupt-readers",
                         "enable.auto.commit": False, "fetch.error.backoff.ms": 100})
    assign(consumer, *(TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)))
    seen: dict[int, list[bytes]] = {0: [], 1: []}
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not until(seen):
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                seen[message.partition()].append(message.value())
    finally:
        consumer.close()
    return seen


def test_a_corrupt_object_in_the_bucket_is_an_error_for_its_partition_only(
        store: tuple[KafkaServer, Callable[[], bool]]) -> None:
    server, corrupt = store
    sent = {p: [b"p%d-%04d".ljust(100, b".") % (p, i) for i in range(200)] for p in (0, 1)}
    server.start()
    try:
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = pb_grpc.TierlogStub(channel)
            create(stub, "corrupt", 2, **{"segment.bytes": "4096", "retention.ms": "-1"})
            for p in (0, 1):
                for start in range(0, 200, 10):
                    stub.Produce(pb.ProduceRequest(topic="corrupt", partition=p,
                                                   records=[record(v) for v in sent[p][start : start + 10]]))
            deadline = time.monotonic() + 20
            while not all(row.local_log_start_offset > 0 and row.remote_log_start_offset == 0
                          for row in stub.TierStatus(pb.TierStatusRequest(topic="corrupt")).partitions):
                assert time.monotonic() < deadline, "offset 0 did not leave the disk for the bucket"
                time.sleep(0.1)
            assert corrupt()

            def done(seen: dict[int, list[bytes]]) -> bool:
                return len(seen[1]) == 200 and storage_errors(server, "kafka", "Fetch", "RemoteDataError") >= 1

            seen = consume(server, "corrupt", done, seconds=15)
            assert seen[1] == sent[1]  # the other partition, on the same connection, served whole
            assert seen[0] == []  # nothing past the corrupt first batch, and never its bytes
            assert storage_errors(server, "kafka", "Fetch", "RemoteDataError") >= 1
            refused = status_of(lambda: stub.Fetch(pb.FetchRequest(
                topic="corrupt", partitions=[pb.PartitionOffset(partition=0, offset=0)])))
            assert refused.code() == grpc.StatusCode.UNAVAILABLE
            assert storage_errors(server, "grpc", "Fetch", "RemoteDataError") == 1
    finally:
        assert server.stop() == 0, server.log()
    assert "API 1 failed" not in server.log()


def test_a_local_read_the_disk_fails_is_an_error_for_its_partition_only(tmp_path: Any, monkeypatch) -> None:
    """The first fetch hands both partitions' batches to the socket unread (sendfile); the
    disk's error comes as that sendfile fails, which cuts the connection. From then on the
    file is read by pread, so the client's next fetch gets the error for partition 0 only."""
    real_pread, real_sendfile = os.pread, os.sendfile

    def on_partition_0(fd: int) -> bool:
        return os.readlink(f"/proc/self/fd/{fd}").endswith("/eio-0/00000000000000000000.log")

    def pread(fd: int, size: int, position: int) -> bytes:
        if on_partition_0(fd):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_pread(fd, size, position)

    def sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        if on_partition_0(in_fd):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_sendfile(out_fd, in_fd, offset, count)

    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        broker.logs.create_topic("eio", 2)
        for p in (0, 1):
            broker.write.append("eio", p, batch(b"on %d" % p), protocol="test")
        kafka = KafkaContext(broker, groups, "127.0.0.1", 9092, "cluster")
        before = REGISTRY.get_sample_value("tierlog_storage_errors_total",
                                           {"protocol": "kafka", "api": "Fetch", "error": "OSError"}) or 0.0
        monkeypatch.setattr(os, "sendfile", sendfile)  # the batch headers' reads still pass
        call = Call(12, "client", "127.0.0.1", response_type(FETCH, 12))
        first = await handle_fetch(kafka, call, fetch_request("eio", {0: 0, 1: 0}))
        unread = {p.partition_index: p.records for p in first.responses[0].partitions}
        assert all(isinstance(records, FileSlice) for records in unread.values())
        server_side, client_side = socket.socketpair()
        with server_side, client_side, pytest.raises(OSError):
            FileSend(unread[0]).sendfile(server_side.fileno())
        assert not unread[0].checked and unread[1].checked  # partition 0's file: pread only, from now on
        monkeypatch.setattr(os, "pread", pread)
        response = await handle_fetch(kafka, call, fetch_request("eio", {0: 0, 1: 0}))
        monkeypatch.undo()
        parts = {p.partition_index: p for p in response.responses[0].partitions}
        assert parts[0].error_code == ErrorCode.kafka_storage_error and not parts[0].records
        assert parts[1].error_code == ErrorCode.none
        assert [r.value for b in decode_batches(parts[1].records.read()) for r in b.records] == [b"on 1"]
        assert REGISTRY.get_sample_value("tierlog_storage_errors_total",
                                         {"protocol": "kafka", "api": "Fetch", "error": "OSError"}) == before + 1

    run(str(tmp_path), scenario)
