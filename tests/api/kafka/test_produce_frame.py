"""The zero-copy Produce decoder against kio's: the same request from every frame kio
writes, each partition's records a view into the frame, and RequestDecodeError (only) for
frames that do not hold a Produce request."""

from __future__ import annotations

import struct
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.kafka.codec import DecodedRequest, check_request, decode_checked, peek_header, request_type
from api.kafka.errors import RequestDecodeError
from api.kafka.guard import ManyElements
from api.kafka.produce_frame import decode_produce

from .wire import SIZE, request_frame

VERSIONS = range(3, 13)
PRODUCE = 0


Topics = list[tuple[str, list[tuple[int, bytes | None]]]]  # (name, [(partition index, records)])

# Topics (one with a non-ASCII name, one of no partitions), partitions with records (one of
# 200 kB: a length of three varint bytes), empty and null ones.
SAMPLE_TOPICS: Topics = [
    ("orders", [(0, b"batch-0" * 40), (3, b""), (7, None), (8, bytes(200_000))]),
    ("zahlungen-é-日本", [(1, bytes(range(256)))]),
    ("", []),
]
SMALL_TOPICS: Topics = [("orders", [(0, b"batch"), (3, b""), (7, None)]), ("zahlungen-é", [(1, b"x")]), ("", [])]


def kio_request(version: int, transactional_id: str | None = "tx-é", topics: Topics = SAMPLE_TOPICS,
                acks: int = -1, timeout_ms: int = 30_500) -> Any:
    schema = request_type(PRODUCE, version)
    topic = schema.__dataclass_fields__["topic_data"].type.__args__[0]
    partition = topic.__dataclass_fields__["partition_data"].type.__args__[0]
    return schema(transactional_id=transactional_id, acks=acks, timeout=timedelta(milliseconds=timeout_ms),
                  topic_data=tuple(topic(name=name, partition_data=tuple(
                      partition(index=index, records=records) for index, records in partitions))
                      for name, partitions in topics))


def receive_buffer(frame: bytes) -> memoryview:
    """A frame as the broker holds it: a view of a writable buffer, without the size prefix."""
    return memoryview(bytearray(frame[SIZE.size:]))


def small_frame(version: int) -> bytes:
    """Of a few hundred bytes, for tests that try every prefix or many mutations."""
    return request_frame(kio_request(version, topics=SMALL_TOPICS), 41)[SIZE.size:]


def as_kio_decodes(frame: memoryview, version: int) -> DecodedRequest:
    frame = frame.toreadonly()  # kio's reader refuses a writable buffer
    check_request(frame, PRODUCE, version)
    return decode_checked(frame, PRODUCE, version)


def assert_same(ours: DecodedRequest, kio: DecodedRequest) -> None:
    assert (ours.api_key, ours.api_version, ours.correlation_id, ours.client_id) == \
        (kio.api_key, kio.api_version, kio.correlation_id, kio.client_id)
    assert (ours.body.transactional_id, ours.body.acks, ours.body.timeout) == \
        (kio.body.transactional_id, kio.body.acks, kio.body.timeout)
    assert [t.name for t in ours.body.topic_data] == [t.name for t in kio.body.topic_data]
    for topic, kio_topic in zip(ours.body.topic_data, kio.body.topic_data, strict=True):
        assert [(p.index, None if p.records is None else bytes(p.records)) for p in topic.partition_data] == \
            [(p.index, p.records) for p in kio_topic.partition_data]


@pytest.mark.parametrize("client_id", ["wire-test", None, "клиент"])
@pytest.mark.parametrize("transactional_id", ["tx-é", None])
@pytest.mark.parametrize("version", VERSIONS)
def test_every_version_decodes_as_kio_does_with_records_left_in_the_frame(
        version: int, transactional_id: str | None, client_id: str | None) -> None:
    frame = receive_buffer(request_frame(kio_request(version, transactional_id), 41, client_id))  # type: ignore[arg-type]
    ours = decode_produce(frame, version)
    assert_same(ours, as_kio_decodes(frame, version))
    assert (ours.correlation_id, ours.client_id, ours.body.transactional_id) == (41, client_id, transactional_id)
    records = [p.records for t in ours.body.topic_data for p in t.partition_data]
    assert sum(r is None for r in records) == 1
    for view in (r for r in records if r is not None):
        assert isinstance(view, memoryview) and view.readonly
        assert view.obj is frame.obj, "records copied out of the frame"


@pytest.mark.parametrize("version", VERSIONS)
def test_bytes_after_the_body_are_ignored(version: int) -> None:
    frame = small_frame(version)
    with_trailer = memoryview(frame + b"\x00\x01\xff")
    assert_same(decode_produce(with_trailer, version), as_kio_decodes(memoryview(frame), version))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_truncation_is_refused(version: int) -> None:
    frame = small_frame(version)
    for length in range(len(frame)):
        with pytest.raises(RequestDecodeError, match=f"malformed ProduceRequest v{version}: "):
            decode_produce(memoryview(frame[:length]), version)


# Frames written by hand, to break one field at a time.
def i16(value: int) -> bytes:
    return struct.pack(">h", value)


def i32(value: int) -> bytes:
    return struct.pack(">i", value)


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def plain_string(text: bytes) -> bytes:
    return i16(len(text)) + text


def compact(data: bytes) -> bytes:
    """A compact string or bytes: the length plus one."""
    return uvarint(len(data) + 1) + data


NO_TAGS = b"\x00"
NULL_COMPACT = uvarint(0)
ONE_TAG = uvarint(1) + uvarint(12) + uvarint(2) + b"ta"  # tag 12 of 2 bytes: a field a later Kafka may add


def plain_frame(topic_count: bytes = i32(1), name: bytes = plain_string(b"t"), partition_count: bytes = i32(1),
                records: bytes = i32(3) + b"abc", api: bytes = i16(PRODUCE) + i16(3)) -> bytes:
    """Produce v3: header v1 (client id "c"), transactional id null, acks 1, timeout 5 s."""
    return (api + i32(9) + plain_string(b"c") + i16(-1) + i16(1) + i32(5000)
            + topic_count + name + partition_count + i32(0) + records)


def flexible_frame(topic_count: bytes = uvarint(2), name: bytes = compact(b"t"), partition_count: bytes = uvarint(2),
                   records: bytes = compact(b"abc"), header_tags: bytes = NO_TAGS, partition_tags: bytes = NO_TAGS,
                   topic_tags: bytes = NO_TAGS, body_tags: bytes = NO_TAGS) -> bytes:
    """Produce v9: header v2 (client id "c", plain), the same body with compact fields."""
    return (i16(PRODUCE) + i16(9) + i32(9) + plain_string(b"c") + header_tags + NULL_COMPACT + i16(1) + i32(5000)
            + topic_count + name + partition_count + i32(0) + records + partition_tags + topic_tags + body_tags)


def test_the_hand_written_frames_are_the_ones_kio_writes() -> None:
    """So that each case below breaks exactly the field it names."""
    for frame, version in ((plain_frame(), 3), (flexible_frame(), 9)):
        kio = as_kio_decodes(memoryview(frame), version)
        assert kio.client_id == "c" and kio.body.transactional_id is None and kio.body.acks == 1
        assert [(t.name, [(p.index, p.records) for p in t.partition_data]) for t in kio.body.topic_data] == \
            [("t", [(0, b"abc")])]
        assert_same(decode_produce(memoryview(frame), version), kio)


def test_a_records_length_below_minus_one_is_null_as_kafka_reads_it() -> None:
    (topic,) = decode_produce(memoryview(plain_frame(records=i32(-5))), 3).body.topic_data
    assert topic.partition_data[0].records is None


def test_unknown_tagged_fields_are_skipped_as_kafka_skips_them() -> None:
    frame = flexible_frame(header_tags=ONE_TAG, partition_tags=ONE_TAG, topic_tags=ONE_TAG, body_tags=ONE_TAG)
    decoded = decode_produce(memoryview(frame), 9)
    (topic,) = decoded.body.topic_data
    (partition,) = topic.partition_data
    assert (decoded.client_id, topic.name, partition.index, bytes(partition.records)) == ("c", "t", 0, b"abc")


MALFORMED = {
    "null topics (plain)": (plain_frame(topic_count=i32(-1)), 3, "a null array of topics"),
    "negative topic count": (plain_frame(topic_count=i32(-7)), 3, "a null array of topics"),
    "null partitions (plain)": (plain_frame(partition_count=i32(-1)), 3, "a null array of partitions"),
    "null topics (compact)": (flexible_frame(topic_count=uvarint(0)), 9, "a null array of topics"),
    "null partitions (compact)": (flexible_frame(partition_count=uvarint(0)), 9, "a null array of partitions"),
    "a billion topics": (plain_frame(topic_count=i32(1 << 30)), 3, "1073741824 topics in the"),
    "a billion partitions": (flexible_frame(partition_count=uvarint(1 << 30)), 9, "1073741823 partitions in the"),
    "records past the end": (plain_frame(records=i32(4) + b"abc"), 3, "a length of 4 at byte 38 runs past the frame's end at 41"),
    "compact records past the end": (flexible_frame(records=uvarint(5000) + b"abc"), 9, r"a length of 4999 at byte \d+"),
    "null topic name (plain)": (plain_frame(name=i16(-1)), 3, "a null topic name"),
    "null topic name (compact)": (flexible_frame(name=uvarint(0)), 9, "a null topic name"),
    "topic name past the end": (plain_frame(name=i16(30_000) + b"t"), 3, r"a length of 30000 at byte \d+ runs past"),
    "compact name over 32767 bytes": (flexible_frame(name=uvarint(40_000)), 9, "topic name of 39999 bytes, more than"),
    "topic name not UTF-8": (plain_frame(name=plain_string(b"\xff\xfe")), 3, "a topic name that is not UTF-8"),
    "varint of six bytes": (flexible_frame(topic_count=b"\xff" * 6 + b"\x01"), 9, "a varint longer than five bytes"),
    "tagged field past the end": (flexible_frame(body_tags=uvarint(1) + uvarint(0) + uvarint(50) + b"x"), 9,
                                  r"a length of 50 at byte \d+ runs past"),
    "another API's header": (plain_frame(api=i16(1) + i16(3)), 3, "the header names API 1 v3"),
    "another version's header": (plain_frame(api=i16(PRODUCE) + i16(4)), 3, "the header names API 0 v4"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_frames_are_refused_with_what_is_wrong(case: str) -> None:
    frame, version, message = MALFORMED[case]
    with pytest.raises(RequestDecodeError, match=f"malformed ProduceRequest v{version}: .*{message}"):
        decode_produce(memoryview(frame), version)


@pytest.mark.parametrize("version", [3, 9])
def test_the_element_budget_is_the_guards(version: int) -> None:
    """The guard's pass is not run before this decoder: it counts topics and partitions as
    the guard does and, past the budget, sends the frame off the loop as the guard would."""
    frame = receive_buffer(request_frame(kio_request(version), 5))
    elements = check_request(frame.toreadonly(), PRODUCE, version)  # 3 topics, 5 partitions
    assert elements == 8
    assert decode_produce(frame, version, elements).body.topic_data
    for budget in (elements - 1, 2):  # too many partitions; too many topics
        with pytest.raises(ManyElements):
            check_request(frame.toreadonly(), PRODUCE, version, budget)
        with pytest.raises(ManyElements):
            decode_produce(frame, version, budget)


def test_a_version_outside_3_to_12_is_the_callers_mistake() -> None:
    with pytest.raises(ValueError, match="Produce v13 is not decoded here"):
        decode_produce(memoryview(small_frame(12)), 13)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, int]:
    version = draw(st.sampled_from(VERSIONS))
    frame = bytearray(small_frame(version))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(frame) - 1))
        kind = draw(st.sampled_from(["flip", "flip", "insert", "delete"]))
        if kind == "flip":
            frame[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            frame[at:at] = draw(st.binary(min_size=1, max_size=6))
        else:
            del frame[at:at + draw(st.integers(1, 6))]
    return bytes(frame), version


@settings(max_examples=1500, deadline=None)
@given(mutated())
def test_a_mutated_frame_is_refused_or_decoded_as_kio_decodes_it(case: tuple[bytes, int]) -> None:
    frame, version = case
    try:
        ours: DecodedRequest | None = decode_produce(memoryview(frame), version)
    except RequestDecodeError:
        ours = None
    try:
        kio: DecodedRequest | None = as_kio_decodes(memoryview(frame), version)
    except RequestDecodeError:
        kio = None  # also where Kafka takes the frame: unknown tagged fields, a records length below -1 (null)
    if ours is not None and kio is not None:
        assert_same(ours, kio)
    elif kio is not None:  # kio reads past a header naming another request; the broker never sends it here
        assert peek_header(frame)[:2] != (PRODUCE, version)


TEXT = st.text(st.characters(codec="utf-8"), max_size=20)  # no lone surrogates: kio cannot write them
INT16, INT32 = st.integers(-(1 << 15), (1 << 15) - 1), st.integers(-(1 << 31), (1 << 31) - 1)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VERSIONS), st.none() | TEXT, st.none() | TEXT, INT16, INT32,
       st.lists(st.tuples(TEXT, st.lists(st.tuples(INT32, st.none() | st.binary(max_size=300)), max_size=4)),
                max_size=4))
def test_any_request_kio_writes_decodes_as_kio_decodes_it(
        version: int, client_id: str | None, transactional_id: str | None, acks: int, timeout_ms: int,
        topics: Topics) -> None:
    request = kio_request(version, transactional_id, topics, acks, timeout_ms)
    frame = receive_buffer(request_frame(request, 5, client_id))  # type: ignore[arg-type]
    assert_same(decode_produce(frame, version), as_kio_decodes(frame, version))
