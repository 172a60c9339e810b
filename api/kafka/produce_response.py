"""Produce responses encoded by hand: the request's decoder's other half (produce_frame.py).

kio builds a frozen entity for every partition's answer, checks each field's type, and
writes the frame through a writer per field: most of the Python a Produce of a few
partitions costs besides its append. These value types carry the names of kio's
ProduceResponse fields, so a reader of the answer reads either; `frame` writes the bytes
of ProduceResponse v3-v12 exactly as kio (and Kafka's ProduceResponse.json) lay them out,
a struct call per partition. The tagged fields of v10+ (a partition's current leader, the
node endpoints) are left out, as their defaults are: this broker leads every partition.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from .codec import Chunk, HandEncoded

FIRST_FLEXIBLE_VERSION = 9  # compact strings and arrays, tagged fields; response header v1
_LOG_START_VERSION = 5
_RECORD_ERRORS_VERSION = 8

_HEAD = struct.Struct(">ii")  # the frame's size, then the correlation id
_PARTITION = struct.Struct(">ihqq")  # index, error code, base offset, log append time
_PARTITION_WITH_START = struct.Struct(">ihqqq")  # and the log start offset (v5+)
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_NO_TAGS = b"\x00"


@dataclass(frozen=True, slots=True)
class PartitionProduceResponse:
    index: int
    error_code: ErrorCode
    base_offset: int  # -1 when refused
    log_append_time: int  # ms; -1 under CreateTime
    log_start_offset: int
    record_errors: tuple[int, ...]  # the indexes of the records that failed the batch (KIP-467)
    error_message: str | None  # also each record error's message


@dataclass(frozen=True, slots=True)
class TopicProduceResponse:
    name: str
    partition_responses: tuple[PartitionProduceResponse, ...]


@dataclass(frozen=True, slots=True)
class ProduceResponse(HandEncoded):
    version: int
    responses: tuple[TopicProduceResponse, ...]

    def frame(self, correlation_id: int) -> list[Chunk]:
        """The response frame (size prefix, header, body), never throttled."""
        version = self.version
        flexible = version >= FIRST_FLEXIBLE_VERSION
        out = bytearray(_HEAD.size)
        if flexible:
            out += _NO_TAGS  # the header's
        _count(out, len(self.responses), flexible)
        partition = _PARTITION_WITH_START if version >= _LOG_START_VERSION else _PARTITION
        with_start = version >= _LOG_START_VERSION
        with_errors = version >= _RECORD_ERRORS_VERSION
        for topic in self.responses:
            _string(out, topic.name, flexible)
            _count(out, len(topic.partition_responses), flexible)
            for p in topic.partition_responses:
                if with_start:
                    out += partition.pack(p.index, p.error_code, p.base_offset, p.log_append_time, p.log_start_offset)
                else:
                    out += partition.pack(p.index, p.error_code, p.base_offset, p.log_append_time)
                if with_errors:
                    _count(out, len(p.record_errors), flexible)
                    for batch_index in p.record_errors:
                        out += _I32.pack(batch_index)
                        _string(out, p.error_message, flexible)
                        if flexible:
                            out += _NO_TAGS
                    _string(out, p.error_message, flexible)
                if flexible:
                    out += _NO_TAGS
            if flexible:
                out += _NO_TAGS
        out += _I32.pack(0)  # throttle time
        if flexible:
            out += _NO_TAGS
        _HEAD.pack_into(out, 0, len(out) - 4, correlation_id)
        return [out]


def _uvarint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def _count(out: bytearray, count: int, flexible: bool) -> None:
    if flexible:
        _uvarint(out, count + 1)
    else:
        out += _I32.pack(count)


def _string(out: bytearray, value: str | None, flexible: bool) -> None:
    """A nullable string (null as Kafka writes it: length -1, or 0 when compact)."""
    if value is None:
        out += b"\x00" if flexible else _I16.pack(-1)
        return
    data = value.encode()
    if flexible:
        _uvarint(out, len(data) + 1)
    else:
        out += _I16.pack(len(data))
    out += data
