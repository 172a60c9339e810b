"""Produce requests decoded without copying their records.

kio's reader copies each partition's `records` out of the frame into new bytes: for
Produce that is every produced byte, once more than the log needs (it appends memoryviews
with os.writev). This reader walks the fields of ProduceRequest v3-v12 by hand, exactly as
Kafka's ProduceRequest.json and RequestHeader.json lay them out (and as Kafka's generated
readers read them: a negative length is null, tagged fields it does not know are
skipped), and gives each partition's `records` as a read-only slice of the frame: the
frame's buffer must then outlive the request. The value types carry the attribute names
of kio's ProduceRequest, so the Produce handler reads either.

Work is per field, never per byte of records, and in as few Python calls as it takes: a
request's fixed cost is what small produce requests pay per byte.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from .codec import REQUEST_PREFIX, DecodedRequest
from .errors import RequestDecodeError
from .guard import ManyElements

PRODUCE_API_KEY = 0
VERSIONS = range(3, 13)  # 3: the first with a transactional id; 13 names topics by id
FIRST_FLEXIBLE_VERSION = 9  # compact strings, arrays and bytes, tagged fields; header v2
MAX_STRING_LENGTH = 0x7FFF  # Kafka refuses a longer compact string: its plain form could not hold it

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_ACKS_TIMEOUT = struct.Struct(">hi")


@dataclass(frozen=True, slots=True)
class PartitionProduceData:
    index: int
    records: memoryview | None  # a read-only slice of the request frame


@dataclass(frozen=True, slots=True)
class TopicProduceData:
    name: str
    partition_data: tuple[PartitionProduceData, ...]


@dataclass(frozen=True, slots=True)
class ProduceRequest:
    transactional_id: str | None
    acks: int
    timeout: timedelta
    topic_data: tuple[TopicProduceData, ...]


# Each reader takes the frame and a position and returns what it read and the position
# after it. Past the frame's end, a fixed-width field raises struct.error and a varint
# byte IndexError (decode_produce turns both into RequestDecodeError); a slice would not
# raise, so each is checked.
Length = Callable[[memoryview, int], tuple[int, int]]  # a length or count (negative: null)


def _past_end(frame: memoryview, pos: int, length: int) -> RequestDecodeError:
    return RequestDecodeError(f"a length of {length} at byte {pos} runs past the frame's end at {len(frame)}")


def _int16_length(frame: memoryview, pos: int) -> tuple[int, int]:
    return _I16.unpack_from(frame, pos)[0], pos + 2


def _int32_length(frame: memoryview, pos: int) -> tuple[int, int]:
    return _I32.unpack_from(frame, pos)[0], pos + 4


def _uvarint(frame: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = frame[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift == 35:
            raise RequestDecodeError("a varint longer than five bytes")


def _compact_length(frame: memoryview, pos: int) -> tuple[int, int]:
    """The length plus one as an unsigned varint (0: null)."""
    byte = frame[pos]
    if byte < 0x80:  # one byte: counts, names
        return byte - 1, pos + 1
    value, pos = _uvarint(frame, pos)
    return value - 1, pos


def _tagged_fields_end(frame: memoryview, pos: int) -> int:
    """Where the tagged fields at `pos` end. Produce v3-v12 and header v2 define none: each
    is skipped, as Kafka skips the ones it does not know."""
    if not frame[pos]:  # none, nearly always
        return pos + 1
    count, pos = _uvarint(frame, pos)
    for _ in range(count):
        _, pos = _uvarint(frame, pos)  # the tag
        size, pos = _uvarint(frame, pos)
        if pos + size > len(frame):
            raise _past_end(frame, pos, size)
        pos += size
    return pos


@dataclass(frozen=True, slots=True)
class _Layout:
    """How a version writes lengths: plain (v3-v8) or compact, with tagged fields (v9+)."""

    string_length: Length
    length: Length  # of bytes, records and arrays
    flexible: bool

    def tagged_fields_end(self, frame: memoryview, pos: int) -> int:
        return _tagged_fields_end(frame, pos) if self.flexible else pos


_PLAIN = _Layout(_int16_length, _int32_length, False)
_FLEXIBLE = _Layout(_compact_length, _compact_length, True)


def _nullable_string(frame: memoryview, pos: int, string_length: Length, what: str) -> tuple[str | None, int]:
    length, pos = string_length(frame, pos)
    if length < 0:
        return None, pos
    if length > MAX_STRING_LENGTH:
        raise RequestDecodeError(f"a {what} of {length} bytes, more than {MAX_STRING_LENGTH}")
    end = pos + length
    if end > len(frame):
        raise _past_end(frame, pos, length)
    try:
        return str(frame[pos:end], "utf-8"), end
    except UnicodeDecodeError as exc:
        raise RequestDecodeError(f"a {what} that is not UTF-8: {exc}") from None


def _count(frame: memoryview, pos: int, layout: _Layout, what: str) -> tuple[int, int]:
    """An array's element count; Produce has no nullable arrays."""
    count, pos = layout.length(frame, pos)
    if count < 0:
        raise RequestDecodeError(f"a null array of {what}")
    if count > len(frame) - pos:  # every element takes a byte at least: refused before looping
        raise RequestDecodeError(f"{count} {what} in the {len(frame) - pos} bytes left")
    return count, pos


def _topic(frame: memoryview, pos: int, layout: _Layout, room: int) -> tuple[TopicProduceData, int]:
    """A topic's data, if its partitions fit in `room` (elements left in the budget)."""
    name, pos = _nullable_string(frame, pos, layout.string_length, "topic name")
    if name is None:
        raise RequestDecodeError("a null topic name")
    count, pos = _count(frame, pos, layout, "partitions")
    if count > room:  # before the loop: a frame of millions of partitions is decoded off the loop
        raise ManyElements(f"{count} partitions of {name!r}, more than the {room} elements left")
    length, flexible, frame_end = layout.length, layout.flexible, len(frame)
    partitions = []
    for _ in range(count):  # the loop run once per partition: its checks inline, not calls
        index = _I32.unpack_from(frame, pos)[0]
        size, pos = length(frame, pos + 4)
        records = None
        if size >= 0:
            if pos + size > frame_end:
                raise _past_end(frame, pos, size)
            records = frame[pos:pos + size]
            pos += size
        partitions.append(PartitionProduceData(index, records))
        if flexible:
            pos = _tagged_fields_end(frame, pos) if frame[pos] else pos + 1
    return TopicProduceData(name, tuple(partitions)), layout.tagged_fields_end(frame, pos)


def _request(frame: memoryview, api_version: int, element_budget: int | None) -> DecodedRequest:
    layout = _FLEXIBLE if api_version >= FIRST_FLEXIBLE_VERSION else _PLAIN
    api_key, version, correlation_id = REQUEST_PREFIX.unpack_from(frame)
    if (api_key, version) != (PRODUCE_API_KEY, api_version):
        raise RequestDecodeError(f"the header names API {api_key} v{version}")
    # The client id is a plain string in header v2 too.
    client_id, pos = _nullable_string(frame, REQUEST_PREFIX.size, _int16_length, "client id")
    pos = layout.tagged_fields_end(frame, pos)
    transactional_id, pos = _nullable_string(frame, pos, layout.string_length, "transactional id")
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(frame, pos)
    count, pos = _count(frame, pos + _ACKS_TIMEOUT.size, layout, "topics")
    room = len(frame) if element_budget is None else element_budget - count  # the frame bounds counts anyway
    if room < 0:
        raise ManyElements(f"{count} topics, more than {element_budget} elements")
    topics = []
    for _ in range(count):
        topic, pos = _topic(frame, pos, layout, room)
        room -= len(topic.partition_data)
        topics.append(topic)
    layout.tagged_fields_end(frame, pos)  # then bytes after the body, ignored as Kafka does
    body = ProduceRequest(transactional_id, acks, timedelta(milliseconds=timeout_ms), tuple(topics))
    return DecodedRequest(PRODUCE_API_KEY, api_version, correlation_id, client_id, body)


def decode_produce(frame: memoryview, api_version: int, element_budget: int | None = None) -> DecodedRequest:
    """A Produce request frame (without its size prefix) of `api_version` (3-12), its records
    left in the frame; RequestDecodeError if the frame does not hold one, ManyElements once
    its topics and partitions pass `element_budget` (as api/kafka/guard.py counts them, so
    the frame needs no pass of the guard's first)."""
    if api_version not in VERSIONS:
        raise ValueError(f"Produce v{api_version} is not decoded here, only v{VERSIONS[0]}-v{VERSIONS[-1]}")
    try:
        return _request(frame.toreadonly(), api_version, element_budget)
    except RequestDecodeError as exc:
        raise RequestDecodeError(f"malformed ProduceRequest v{api_version}: {exc}") from None
    except (struct.error, IndexError):
        raise RequestDecodeError(f"malformed ProduceRequest v{api_version}: the frame ends inside a field") from None
