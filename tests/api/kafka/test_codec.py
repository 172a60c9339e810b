"""Response encoding: large record fields go out by reference, frames decode back."""

from __future__ import annotations

import os
import uuid
from dataclasses import fields, is_dataclass
from datetime import timedelta
from types import NoneType, UnionType
from typing import Any, get_args, get_origin

import pytest
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from api.kafka.apis import APIS
from api.kafka.codec import SIZE, build, decode_request, encode_response, nested, request_type, response_type

from .wire import request_frame


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


def _sample(entity_type: type) -> Any:
    """An entity with a value in every field (tagged ones too, so they are written)."""
    values = {}
    for f in fields(entity_type):
        field_type = f.type
        if get_origin(field_type) is UnionType:
            field_type = next(a for a in get_args(field_type) if a is not NoneType)
        array = get_origin(field_type) is tuple
        inner = get_args(field_type)[0] if array else field_type
        if is_dataclass(inner):
            value: Any = _sample(inner)
        else:
            value = _SAMPLES[f.metadata["kafka_type"]]
        values[f.name] = (value, value) if array else value
    return entity_type(**values)


_SAMPLES: dict[str, Any] = {
    "int8": 1, "int16": 2, "int32": 3, "int64": 4, "bool": True, "string": "s", "bytes": b"b", "records": b"r",
    "uuid": uuid.UUID(int=5), "timedelta_i32": timedelta(milliseconds=6), "timedelta_i64": timedelta(milliseconds=7),
}


@pytest.mark.parametrize("api_key,version", [(a.key, v) for a in APIS.values()
                                             for v in range(a.min_version, a.max_version + 1)])
def test_every_request_version_in_the_table_passes_the_guard_and_decodes(api_key: int, version: int) -> None:
    request = _sample(request_type(api_key, version))
    frame = request_frame(request, 9)[SIZE.size:]
    decoded = decode_request(frame, api_key, version)
    assert (decoded.correlation_id, decoded.body) == (9, request)
