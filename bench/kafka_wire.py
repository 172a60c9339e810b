"""A load generator that costs its machine next to nothing: bench/kafka.py's `--client wire`.

kcat spends 2.7-3.0 CPU-s per GB producing and 1.15 consuming, so on a 2-core machine the
client, not the broker, sets the throughput of every run (docs/benchmarks.md). This client
speaks the protocol with no client library: a producer sends one Produce request, encoded
once, again and again (no idempotence, so the broker gives each copy new offsets), a
fixed number in flight, and reads each response's error codes; a consumer sends Fetch
requests, receives each response into one reused buffer, and walks only the record
batches' headers to count records and find the next offset. What either costs is one copy
of each byte through the socket, so the broker is the limit and its throughput is the
figure.

Both speak the versions Tansu and tierlog share: Produce v9, Fetch v4 (the last without
KIP-227's sessions or the log start offset, so its response is parsed by hand here).
"""

from __future__ import annotations

import io
import os
import socket
import struct
import threading
import time
from datetime import timedelta
from typing import Any

from kio.index import load_response_schema
from kio.schema.fetch.v4.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.serial import entity_reader, entity_writer

from hotlog.records import Record, build_batch

SIZE = struct.Struct(">i")
IN_FLIGHT = 8  # Produce requests sent and not yet answered
REQUEST_BYTES = 1024 * 1024  # one request's batches together, as librdkafka's are at batch.size=1 MiB
FETCH_PARTITION_BYTES = 16 * 1024 * 1024
FETCH_BYTES = 64 * 1024 * 1024
_BATCH_HEADER = struct.Struct(">qi")  # base offset, batch length
_LAST_OFFSET_DELTA = struct.Struct(">i")  # at byte 23 of a batch
_RECORD_COUNT = struct.Struct(">i")  # at byte 57 of a batch
_BATCH_OVERHEAD = 12  # the base offset and length before a batch's counted bytes


def frame(request: Any, correlation_id: int) -> bytes:
    """A request with its header and size prefix."""
    header_type = request.__header_schema__
    out = io.BytesIO()
    entity_writer(header_type)(out, header_type(request_api_key=request.__api_key__,
                                                request_api_version=request.__version__,
                                                correlation_id=correlation_id, client_id="bench-wire"))
    entity_writer(type(request))(out, request)
    return SIZE.pack(out.tell()) + out.getvalue()


def receive_into(sock: socket.socket, buffer: bytearray) -> memoryview:
    """The next response frame (without its size prefix), in `buffer`, grown if too small."""
    view = memoryview(buffer)
    _fill(sock, view[:4])
    (size,) = SIZE.unpack_from(buffer)
    if size > len(buffer):
        raise SystemExit(f"wire: a response of {size} bytes, over the buffer's {len(buffer)}")
    _fill(sock, view[:size])
    return view[:size].toreadonly()


def _fill(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise SystemExit("wire: the broker closed the connection")
        got += n


def produce(port: int, topic: str, count: int, acks: str, partitions: int, message_bytes: int) -> float:
    """Seconds to send `count` messages of `message_bytes` to `topic`'s `partitions`, every
    request acknowledged with no error."""
    per_batch = max(1, REQUEST_BYTES // partitions // (message_bytes + 8))
    batch = build_batch([Record(None, os.urandom(message_bytes))] * per_batch)
    requests = -(-count // (per_batch * partitions))
    request = ProduceRequest(transactional_id=None, acks=1 if acks == "1" else -1, timeout=timedelta(seconds=30),
                             topic_data=(TopicProduceData(name=topic, partition_data=tuple(
                                 PartitionProduceData(index=p, records=batch) for p in range(partitions))),))
    data = frame(request, 0)  # every copy has correlation id 0: responses come back in order
    response_type = load_response_schema(0, 9)
    read_header, read_body = entity_reader(response_type.__header_schema__), entity_reader(response_type)
    slots = threading.Semaphore(IN_FLIGHT)
    failures: list[str] = []

    def answers(sock: socket.socket) -> None:
        buffer = bytearray(64 * 1024)
        try:
            for _ in range(requests):
                response = receive_into(sock, buffer)
                _, used = read_header(response, 0)
                body = read_body(response, used)[0]
                codes = {p.error_code for t in body.responses for p in t.partition_responses}
                if codes != {0}:
                    failures.append(f"error codes {sorted(codes)}")
                    return
                slots.release()
        except BaseException as error:  # the sender must not wait on a slot that never frees
            failures.append(repr(error))
        finally:
            for _ in range(IN_FLIGHT):
                slots.release()

    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.perf_counter()
        reader = threading.Thread(target=answers, args=(sock,), daemon=True)
        reader.start()
        for _ in range(requests):
            slots.acquire()
            if failures:
                break
            sock.sendall(data)
        reader.join()
        elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"wire produce to {topic}: {failures[0]}")
    return elapsed


def consume(port: int, topic: str, count: int, partitions: int) -> float:
    """Seconds to read `count` records from the start of `topic`'s `partitions`, from the
    first response on."""
    offsets = [0] * partitions
    seen = 0
    buffer = bytearray(FETCH_BYTES + 1024 * 1024)
    response_type = load_response_schema(1, 4)
    read_header = entity_reader(response_type.__header_schema__)
    start = None
    with socket.create_connection(("127.0.0.1", port)) as sock:
        deadline = time.perf_counter() + 300
        correlation_id = 0
        while seen < count and time.perf_counter() < deadline:
            correlation_id += 1
            sock.sendall(frame(FetchRequest(
                replica_id=-1, max_wait=timedelta(milliseconds=100), min_bytes=1, max_bytes=FETCH_BYTES,
                isolation_level=0, topics=(FetchTopic(topic=topic, partitions=tuple(
                    FetchPartition(partition=p, fetch_offset=offsets[p], partition_max_bytes=FETCH_PARTITION_BYTES)
                    for p in range(partitions))),)), correlation_id))
            response = receive_into(sock, buffer)
            _, used = read_header(response, 0)
            records = _fetched(response, used, offsets)
            if records:
                start = start or time.perf_counter()
                seen += records
    if seen < count:
        raise SystemExit(f"wire consume of {topic}: {seen} of {count} records")
    return time.perf_counter() - (start or time.perf_counter())


def _fetched(response: memoryview, pos: int, offsets: list[int]) -> int:
    """Records in a Fetch v4 response body from `pos`; moves `offsets` past each partition's
    last whole batch. A batch cut short by the size limits is fetched again next time."""
    pos += 4  # throttle time
    (topics,) = struct.unpack_from(">i", response, pos)
    pos += 4
    records = 0
    for _ in range(topics):
        (name_length,) = struct.unpack_from(">h", response, pos)
        pos += 2 + name_length
        (count,) = struct.unpack_from(">i", response, pos)
        pos += 4
        for _ in range(count):
            partition, error_code = struct.unpack_from(">ih", response, pos)
            if error_code:
                raise SystemExit(f"wire consume: partition {partition} answered error code {error_code}")
            pos += 4 + 2 + 8 + 8  # high watermark, last stable offset
            (aborted,) = struct.unpack_from(">i", response, pos)
            pos += 4 + max(aborted, 0) * 16
            (size,) = struct.unpack_from(">i", response, pos)
            pos += 4
            end = pos + max(size, 0)
            while pos + _BATCH_OVERHEAD <= end:
                base_offset, length = _BATCH_HEADER.unpack_from(response, pos)
                if pos + _BATCH_OVERHEAD + length > end:
                    break
                (delta,) = _LAST_OFFSET_DELTA.unpack_from(response, pos + 23)
                (in_batch,) = _RECORD_COUNT.unpack_from(response, pos + 57)
                records += in_batch
                offsets[partition] = base_offset + delta + 1
                pos += _BATCH_OVERHEAD + length
            pos = end
    return records
