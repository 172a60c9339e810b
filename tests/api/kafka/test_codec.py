"""Response encoding: large record fields go out by reference, frames decode back."""

from __future__ import annotations

import os
from datetime import timedelta

from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from api.kafka.codec import SIZE, build, encode_response, nested, response_type


def test_fetched_records_are_spliced_into_the_frame_without_a_copy() -> None:
    response = response_type(1, 12)
    topic = nested(response, "responses")
    partition = nested(topic, "partitions")
    records = os.urandom(100_000)
    entity = build(response, throttle_time=timedelta(0), error_code=ErrorCode.none, session_id=0, responses=(
        build(topic, topic="t", partitions=(build(
            partition, partition_index=0, error_code=ErrorCode.none, high_watermark=5, last_stable_offset=5,
            log_start_offset=0, aborted_transactions=None, records=records),)),))
    chunks = encode_response(77, entity)
    assert any(chunk is records for chunk in chunks)
    frame = b"".join(chunks)
    assert SIZE.unpack_from(frame)[0] == len(frame) - SIZE.size
    header, used = entity_reader(response.__header_schema__)(frame, SIZE.size)
    decoded, _ = entity_reader(response)(frame, SIZE.size + used)
    assert header.correlation_id == 77 and decoded == entity


def test_build_keeps_only_the_fields_of_the_version() -> None:
    v0 = build(response_type(3, 0), throttle_time=timedelta(0), brokers=(), cluster_id="c", controller_id=0,
               topics=())
    assert not hasattr(v0, "cluster_id")
    v12 = build(response_type(3, 12), throttle_time=timedelta(0), brokers=(), cluster_id="c", controller_id=0,
                topics=())
    assert v12.cluster_id == "c"
