"""What a Produce request costs the broker's Python, beside its bytes: in process, with no
socket, one request decoded, appended, answered (acks=all: once fsynced) and encoded, over
and over, its CPU time per request, user and system (`getrusage`: the worker threads'
fsyncs included).

    python bench/request_cost.py [--requests 3000]

Requests of one record of 100 bytes (the cost is all per request and per partition), to
1 and to 4 partitions, with acks=1 and acks=all (each partition's fsync is a hand-off to
a worker thread and back); and 1 MiB of 1 KiB records (the page-cache write and the CRC
come in), to 1 partition and spread over 4, each decoded both ways the connection
decodes a Produce: api/kafka/produce_frame.py (records left in the frame: a Produce
appended as it is read) and kio (records copied: one that waits for requests before it).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import shutil
import sys
import tempfile
from datetime import timedelta
from typing import NamedTuple

from kio.schema.produce.v9 import request as produce_v9
from kio.serial import entity_writer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from api.kafka.codec import decode_request, encode_response, response_type  # noqa: E402
from api.kafka.context import Call, KafkaContext  # noqa: E402
from api.kafka.produce import start_produce  # noqa: E402
from api.kafka.produce_frame import decode_produce  # noqa: E402
from broker.node import Broker  # noqa: E402
from broker.settings import BrokerSettings  # noqa: E402
from hotlog.records import Record, build_batch  # noqa: E402

PRODUCE, VERSION = 0, 9


def frame_of(records: bytes, partitions: int, acks: int) -> memoryview:
    """A Produce v9 request frame (no size prefix) with `records` for each of `partitions`."""
    request = produce_v9.ProduceRequest(transactional_id=None, acks=acks, timeout=timedelta(seconds=5), topic_data=(
        produce_v9.TopicProduceData(name="t", partition_data=tuple(
            produce_v9.PartitionProduceData(index=p, records=records) for p in range(partitions))),))
    out = io.BytesIO()
    header = request.__header_schema__
    entity_writer(header)(out, header(request_api_key=PRODUCE, request_api_version=VERSION, correlation_id=1,
                                      client_id="bench"))
    entity_writer(produce_v9.ProduceRequest)(out, request)
    return memoryview(out.getvalue()).toreadonly()


class Row(NamedTuple):
    label: str
    records: int  # per partition
    value_bytes: int
    partitions: int
    acks: int
    decoders: tuple[str, ...]
    requests: int


def rows(requests: int) -> list[Row]:
    small, large = requests, max(1, requests // 3)
    both = ("produce_frame", "kio")
    return [Row("1 record of 100 B", 1, 100, 1, 1, both, small),
            Row("1 record of 100 B to each of 4 partitions", 1, 100, 4, 1, ("kio",), small),
            Row("1 record of 100 B, acks=all", 1, 100, 1, -1, ("kio",), small),
            Row("1 record of 100 B to each of 4 partitions, acks=all", 1, 100, 4, -1, ("kio",), small),
            Row("1,000 records of 1 KiB", 1000, 1024, 1, 1, both, large),
            Row("250 records of 1 KiB to each of 4 partitions", 250, 1024, 4, 1, ("produce_frame",), large)]


def cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def measure(requests: int) -> None:
    folder = tempfile.mkdtemp(prefix="tierlog-request-cost-", dir=".")
    broker = Broker(folder, BrokerSettings())
    await broker.start()
    try:
        broker.logs.create_topic("t", 4)
        kafka = KafkaContext(broker, broker.groups, "127.0.0.1", 9092, "bench")
        call = Call(VERSION, "bench", "127.0.0.1", response_type(PRODUCE, VERSION))
        print("| request | decoder | us per request: CPU (user + system) | CPU-s per GB |")
        print("| --- | --- | --- | --- |")
        for row in rows(requests):
            batch = build_batch([Record(None, os.urandom(row.value_bytes)) for _ in range(row.records)])
            frame = frame_of(batch, row.partitions, row.acks)
            for decoder in row.decoders:
                user, system = cpu()
                for _ in range(row.requests):
                    decoded = decode_produce(frame, VERSION) if decoder == "produce_frame" else \
                        decode_request(frame, PRODUCE, VERSION)
                    encode_response(1, await start_produce(kafka, call, decoded.body))
                end_user, end_system = cpu()
                used = (end_user - user) + (end_system - system)
                per_request = [used / row.requests * 1e6, (end_user - user) / row.requests * 1e6,
                               (end_system - system) / row.requests * 1e6]
                print(f"| {row.label} | {decoder} | {per_request[0]:.1f} ({per_request[1]:.1f} + {per_request[2]:.1f}) "
                      f"| {used / (row.requests * len(frame) / 1e9):.3f} |")
    finally:
        await broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="small requests per figure (a third as many large)")
    asyncio.run(measure(parser.parse_args().requests))


if __name__ == "__main__":
    main()
