"""History that lives in the object store, read through `tierlog serve` as users read it:
over gRPC and with kcat, then again from a server restored from the bucket alone."""

from __future__ import annotations

import shutil
import subprocess
import time

import grpc

from api.proto import tierlog_pb2 as pb
from api.proto import tierlog_pb2_grpc as pb_grpc

from .kafka.test_kcat import END_AT_ONCE
from .server import TierlogServer
from .test_grpc import create, fetch, record

TIERED = (
    "--conf", "remote.log.manager.task.interval.ms=100",
    "--conf", "log.local.retention.bytes=4096",
    "--conf", "remote.log.chunk.bytes=4096",
    "--conf", "remote.log.chunk.cache.bytes=65536",
)


def replay(stub: pb_grpc.TierlogStub, topic: str) -> list[tuple[int, bytes]]:
    seen: list[tuple[int, bytes]] = []
    offset = 0
    while True:
        response = fetch(stub, topic, 0, offset, max_bytes=3000)
        if not response.partitions:
            return seen
        part = response.partitions[0]
        seen += [(r.offset, r.value) for r in part.records]
        offset = part.next_offset


def wait_until_mostly_remote(stub: pb_grpc.TierlogStub, topic: str) -> pb.PartitionTierStatus:
    deadline = time.monotonic() + 20
    while True:
        [row] = stub.TierStatus(pb.TierStatusRequest(topic=topic)).partitions
        if row.local_log_start_offset > 100 and row.remote_log_start_offset == 0 and row.local_bytes < row.remote_bytes:
            return row
        assert time.monotonic() < deadline, row
        time.sleep(0.1)


def test_offsets_in_the_object_store_read_like_local_ones_and_survive_losing_the_disk(tmp_path) -> None:
    sent = [(i, f"event {i}".encode().ljust(100, b".")) for i in range(400)]
    cache_dir = tmp_path / "chunk-cache"  # e.g. another disk than the log's, holding other files
    cache_dir.mkdir()
    (cache_dir / "keep.txt").write_text("not the cache's")
    server = TierlogServer(str(tmp_path / "data"), *TIERED,
                           "--conf", f"remote.log.chunk.cache.dir={cache_dir}").start()
    try:
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = pb_grpc.TierlogStub(channel)
            create(stub, "history", **{"segment.bytes": "4096", "retention.ms": "-1"})
            for start in range(0, 400, 20):
                stub.Produce(pb.ProduceRequest(topic="history", partition=0,
                                               records=[record(v) for _, v in sent[start : start + 20]]))
            wait_until_mostly_remote(stub, "history")
            assert replay(stub, "history") == sent
            # The cache's folder is made there (empty: a folder store's chunks are its files mapped).
            assert (cache_dir / "remote-chunk-cache").is_dir()
            assert (cache_dir / "keep.txt").read_text() == "not the cache's"
            assert not (tmp_path / "data" / "remote-chunk-cache").exists()
        kcat = subprocess.run(
            ["kcat", "-C", "-b", f"127.0.0.1:{server.kafka_port}", "-t", "history", "-p", "0",
             "-o", "beginning", "-e", *END_AT_ONCE, "-q", "-f", "%o %s\n"],
            capture_output=True, text=True, timeout=60,
        )
        assert kcat.returncode == 0, kcat.stderr
        assert kcat.stdout.splitlines() == [f"{o} {v.decode()}" for o, v in sent]
    finally:
        server.stop()

    # A new machine: an empty data folder, the same bucket.
    shutil.rmtree(tmp_path / "data")
    restored = TierlogServer(str(tmp_path / "fresh"), *TIERED)
    restored.objects_dir = server.objects_dir
    restored.start()
    try:
        with grpc.insecure_channel(restored.grpc_address) as channel:
            stub = pb_grpc.TierlogStub(channel)
            tiered = [(o, v) for o, v in sent if o < stub.TierStatus(
                pb.TierStatusRequest(topic="history")).partitions[0].remote_log_end_offset]
            assert len(tiered) > 300
            assert replay(stub, "history") == tiered
            appended = stub.Produce(pb.ProduceRequest(topic="history", partition=0, records=[record(b"after")]))
            assert appended.partitions[0].base_offset == len(tiered)
    finally:
        restored.stop()


def test_copy_quota_paces_uploads(tmp_path) -> None:
    """remote.log.manager.copy.max.bytes.per.second holds uploads to the rate asked for."""
    quota = 20_000
    server = TierlogServer(str(tmp_path / "data"), "--conf", "remote.log.manager.task.interval.ms=50",
                           "--conf", f"remote.log.manager.copy.max.bytes.per.second={quota}",
                           "--conf", "remote.log.manager.copier.thread.pool.size=2").start()
    try:
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = pb_grpc.TierlogStub(channel)
            create(stub, "paced", **{"segment.bytes": "4096", "retention.ms": "-1"})
            start = time.monotonic()  # uploads may begin with the first sealed segment
            for _ in range(30):  # ~120 KiB in 4 KiB segments: six seconds of quota
                stub.Produce(pb.ProduceRequest(topic="paced", partition=0, records=[record(b"x" * 1000)] * 4))
            time.sleep(max(0.0, start + 2.0 - time.monotonic()))
            [row] = stub.TierStatus(pb.TierStatusRequest(topic="paced")).partitions
            elapsed = time.monotonic() - start
            # One second of burst, one segment in flight per upload slot, on top of the rate.
            assert 0 < row.remote_bytes <= quota * (elapsed + 1) + 2 * 4096, (row.remote_bytes, elapsed)
            assert row.remote_log_end_offset < 29 * 4  # most segments still wait their turn
    finally:
        server.stop()
