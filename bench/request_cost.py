"""What a Produce request costs the broker's Python, beside its bytes: in process, with no
socket, one request of one partition decoded, appended, answered and encoded, over and
over, its CPU time per request (`time.process_time()`).

    python bench/request_cost.py [--requests 3000]

Two requests: one record of 100 bytes (the cost is all per request) and 1,000 records of
1 KiB (1 MiB: the page-cache write and the CRC come in), each decoded both ways the
connection decodes a Produce: api/kafka/produce_frame.py (records left in the frame,
used from 64 KiB) and kio (records copied).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta

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


def frame_of(records: bytes) -> memoryview:
    """A Produce v9 request frame (no size prefix) of one partition holding `records`."""
    request = produce_v9.ProduceRequest(transactional_id=None, acks=1, timeout=timedelta(seconds=5), topic_data=(
        produce_v9.TopicProduceData(name="t", partition_data=(
            produce_v9.PartitionProduceData(index=0, records=records),)),))
    out = io.BytesIO()
    header = request.__header_schema__
    entity_writer(header)(out, header(request_api_key=PRODUCE, request_api_version=VERSION, correlation_id=1,
                                      client_id="bench"))
    entity_writer(produce_v9.ProduceRequest)(out, request)
    return memoryview(out.getvalue()).toreadonly()


async def measure(requests: int) -> None:
    folder = tempfile.mkdtemp(prefix="tierlog-request-cost-", dir=".")
    broker = Broker(folder, BrokerSettings())
    await broker.start()
    try:
        broker.logs.create_topic("t", 1)
        kafka = KafkaContext(broker, broker.groups, "127.0.0.1", 9092, "bench")
        call = Call(VERSION, "bench", "127.0.0.1", response_type(PRODUCE, VERSION))
        print("| request | decoder | us per request | CPU-s per GB |")
        print("| --- | --- | --- | --- |")
        for label, records, size, n in (("1 record of 100 B", 1, 100, requests),
                                        ("1,000 records of 1 KiB", 1000, 1024, max(1, requests // 3))):
            frame = frame_of(build_batch([Record(None, bytes(size)) for _ in range(records)]))
            for decoder in ("produce_frame", "kio"):
                start = time.process_time()
                for _ in range(n):
                    decoded = decode_produce(frame, VERSION) if decoder == "produce_frame" else \
                        decode_request(frame, PRODUCE, VERSION)
                    encode_response(1, await start_produce(kafka, call, decoded.body))
                used = time.process_time() - start
                print(f"| {label} | {decoder} | {used / n * 1e6:.1f} | {used / (n * len(frame) / 1e9):.3f} |")
    finally:
        await broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="small requests per figure (a third as many large)")
    asyncio.run(measure(parser.parse_args().requests))


if __name__ == "__main__":
    main()
