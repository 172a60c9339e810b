"""The hand-written Produce response encoder against kio's: byte for byte the frame kio
writes for the same answer, in every version the broker serves, and read back by kio's
decoder as that answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from api.kafka.codec import build, encode_response, nested, response_type
from api.kafka.produce_response import PartitionProduceResponse, ProduceResponse, TopicProduceResponse

VERSIONS = range(3, 13)
PRODUCE = 0


def kio_response(answer: ProduceResponse) -> Any:
    """The same answer as a kio entity, as the Produce handler built it before."""
    schema = response_type(PRODUCE, answer.version)
    topic_type = nested(schema, "responses")
    partition_type = nested(topic_type, "partition_responses")
    has_errors = answer.version >= 8
    error_type = nested(partition_type, "record_errors") if has_errors else None

    def partition(p: PartitionProduceResponse) -> Any:
        errors = () if error_type is None else tuple(
            build(error_type, batch_index=i, batch_index_error_message=p.error_message) for i in p.record_errors)
        append_time = None if p.log_append_time < 0 else datetime.fromtimestamp(p.log_append_time / 1000, tz=UTC)
        return build(partition_type, index=p.index, error_code=p.error_code, base_offset=p.base_offset,
                     log_append_time=append_time, log_start_offset=p.log_start_offset, record_errors=errors,
                     error_message=p.error_message)

    return build(schema, responses=tuple(
        build(topic_type, name=t.name, partition_responses=tuple(partition(p) for p in t.partition_responses))
        for t in answer.responses))


def joined(chunks: list[Any]) -> bytes:
    return b"".join(bytes(c) for c in chunks)


texts = st.text(max_size=300)
partitions = st.builds(
    PartitionProduceResponse,
    index=st.integers(0, 2**31 - 1),
    error_code=st.sampled_from(list(ErrorCode)),
    base_offset=st.integers(-1, 2**63 - 1),
    log_append_time=st.one_of(st.just(-1), st.integers(0, 4_102_444_800_000)),  # to 2100: a datetime holds its ms
    log_start_offset=st.integers(-1, 2**63 - 1),
    record_errors=st.lists(st.integers(0, 2**31 - 1), max_size=3).map(tuple),
    error_message=st.none() | texts,
)
topics = st.builds(TopicProduceResponse, name=st.text(max_size=249),
                   partition_responses=st.lists(partitions, max_size=5).map(tuple))
answers = st.builds(ProduceResponse, version=st.sampled_from(VERSIONS), responses=st.lists(topics, max_size=4).map(tuple))


@settings(max_examples=400, deadline=None)
@given(answer=answers, correlation_id=st.integers(-(2**31), 2**31 - 1))
def test_the_frame_is_the_one_kio_writes(answer: ProduceResponse, correlation_id: int) -> None:
    if answer.version < 8:  # before KIP-467 there is nothing to carry these in
        answer = ProduceResponse(answer.version, tuple(TopicProduceResponse(t.name, tuple(
            PartitionProduceResponse(p.index, p.error_code, p.base_offset, p.log_append_time, p.log_start_offset, (),
                                     None) for p in t.partition_responses)) for t in answer.responses))
    ours = joined(encode_response(correlation_id, answer))
    assert ours == joined(encode_response(correlation_id, kio_response(answer)))


def test_kio_reads_it_back_in_every_version() -> None:
    answer = ProduceResponse(0, (
        TopicProduceResponse("orders-é", (
            PartitionProduceResponse(0, ErrorCode.none, 1_000, 1_700_000_000_123, 17, (), None),
            PartitionProduceResponse(3, ErrorCode.invalid_record, -1, -1, 0, (2, 5), "record 2 has a null key"),
        )),
        TopicProduceResponse("empty", ()),
    ))
    for version in VERSIONS:
        frame = joined(ProduceResponse(version, answer.responses).frame(42))
        assert int.from_bytes(frame[:4], "big") == len(frame) - 4
        schema = response_type(PRODUCE, version)
        body_frame = memoryview(frame)[4:]
        header, used = entity_reader(schema.__header_schema__)(body_frame, 0)
        body, size = entity_reader(schema)(body_frame, used)
        assert header.correlation_id == 42 and used + size == len(body_frame)
        first, refused = body.responses[0].partition_responses
        assert (first.index, first.base_offset, int(first.log_append_time.timestamp() * 1000)) == \
            (0, 1_000, 1_700_000_000_123)
        assert refused.error_code == ErrorCode.invalid_record and refused.log_append_time is None
        if version >= 5:
            assert (first.log_start_offset, refused.log_start_offset) == (17, 0)
        if version >= 8:
            assert [e.batch_index for e in refused.record_errors] == [2, 5]
            assert refused.error_message == "record 2 has a null key"
        assert body.responses[1].name == "empty" and body.responses[1].partition_responses == ()
