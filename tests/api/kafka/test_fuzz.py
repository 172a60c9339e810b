"""Fuzzing the request decoder and the server: random bytes and mutated valid requests
either decode or raise RequestDecodeError, and a server fed them keeps serving."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.create_topics.v7 import request as create_topics_v7
from kio.schema.join_group.v9 import request as join_v9
from kio.schema.offset_commit.v8 import request as commit_v8
from kio.schema.sync_group.v5 import request as sync_v5

from api.kafka.apis import APIS
from api.kafka.codec import decode_request, peek_header
from api.kafka.errors import RequestDecodeError

from .cluster import KafkaServer, own_kafka_server
from .test_protocol import batch, fetch, metadata, produce
from .wire import SIZE, Wire, request_frame

kafka_server = own_kafka_server()  # this module's own: it feeds the broker mutated requests

VERSIONED_APIS = [(api.key, version) for api in APIS.values() for version in
                  range(api.min_version, api.max_version + 1)]


def valid_requests() -> list[Any]:
    return [
        metadata("fuzz-a", "fuzz-b"),
        produce("fuzz-a", batch(b"one", b"two")),
        fetch("fuzz-a", 0, 50),
        join_v9.JoinGroupRequest(
            group_id="fuzz-g", session_timeout=timedelta(seconds=10), rebalance_timeout=timedelta(seconds=1),
            member_id="", protocol_type="consumer", reason=None,
            protocols=(join_v9.JoinGroupRequestProtocol(name="range", metadata=b"m"),)),
        sync_v5.SyncGroupRequest(group_id="fuzz-g", generation_id=1, member_id="m", assignments=()),
        commit_v8.OffsetCommitRequest(group_id="fuzz-g", member_id="", topics=(commit_v8.OffsetCommitRequestTopic(
            name="fuzz-a", partitions=(commit_v8.OffsetCommitRequestPartition(
                partition_index=0, committed_offset=1, committed_metadata=""),)),)),
        create_topics_v7.CreateTopicsRequest(topics=(create_topics_v7.CreatableTopic(
            name="fuzz-created", num_partitions=2, replication_factor=1, assignments=(), configs=()),)),
    ]


FRAMES = [request_frame(r, i)[SIZE.size:] for i, r in enumerate(valid_requests())]


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(FRAMES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "flip", "flip", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(frame) - 1)))
        if kind == "flip" and frame:
            frame[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del frame[at:]
        elif kind == "insert":
            frame[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif frame:
            del frame[at : at + draw(st.integers(1, 8))]
    return bytes(frame)


def decode_or_refuse(frame: bytes) -> None:
    try:
        api_key, api_version, _ = peek_header(frame)
    except RequestDecodeError:
        return
    api = APIS.get(api_key)
    if api is None or not api.supports(api_version):
        return  # the server closes the connection before decoding
    try:
        decode_request(frame, api_key, api_version)
    except RequestDecodeError:
        pass


# A mutated Fetch v12 the fuzzer found: a partitions count of billions. kio sizes a vector
# from it before reading an element, and the allocation failure aborts the process.
KIO_ABORT = bytes.fromhex(
    "0001000c000000020009776972652d7465737400ffffffff00000032000000017fffffff00000000000766757ab4f0b1"
    "fb5e8f907a2d610200000000ffffffff0000000000000000ffffffffffffffcbffffffff001000000000010100"
)


def test_a_huge_array_count_is_refused_before_kio_allocates_for_it() -> None:
    with pytest.raises(RequestDecodeError, match="an array of 25491699763 elements"):
        decode_request(KIO_ABORT, 1, 12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VERSIONED_APIS), st.binary(max_size=200))
def test_random_bodies_decode_or_raise_request_decode_error(api: tuple[int, int], body: bytes) -> None:
    key, version = api
    decode_or_refuse(key.to_bytes(2, "big") + version.to_bytes(2, "big") + b"\x00\x00\x00\x01" + body)


@settings(max_examples=400, deadline=None)
@given(mutated_frames())
def test_mutated_requests_decode_or_raise_request_decode_error(frame: bytes) -> None:
    decode_or_refuse(frame)


def test_a_server_fed_mutated_requests_keeps_serving(kafka_server: KafkaServer) -> None:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])
    @given(mutated_frames())
    def send(frame: bytes) -> None:
        wire = Wire(kafka_server.bootstrap, timeout=0.3)
        try:
            wire.send_raw(SIZE.pack(len(frame)) + frame)
            wire.receive_frame()  # an answer, or a closed connection, or a parked long poll
        except (TimeoutError, ConnectionError):
            pass
        finally:
            wire.close()

    send()
    healthy = Wire(kafka_server.bootstrap)
    healthy.send(metadata(f"fuzz-after-{uuid.uuid4().hex[:8]}"), 1)
    assert healthy.receive(3, 12)[0] == 1
    healthy.close()
    # Every request was answered or refused as bad input; no handler failed.
    assert "failed" not in kafka_server.log() and "Traceback" not in kafka_server.log()
