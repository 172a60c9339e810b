"""Produce requests decoded without copying their records.

kio's reader copies each partition's `records` out of the frame into new bytes: for
Produce that is every produced byte, once more than the log needs (it appends memoryviews
with os.writev). This reader walks the fields of ProduceRequest v3-v12 by hand, exactly as
Kafka's ProduceRequest.json and RequestHeader.json lay them out, and gives each
partition's `records` as a read-only slice of the frame: the frame's buffer must then
outlive the request. The value types carry the attribute names of kio's ProduceRequest,
so the Produce handler reads either.

Work is per field, never per byte of records: a frame of one partition of 1 MiB costs what
a frame of one byte does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from .codec import DecodedRequest
from .errors import RequestDecodeError
from .guard import _Cursor

PRODUCE_API_KEY = 0
VERSIONS = range(3, 13)  # 3: the first with a transactional id; 13 names topics by id
FIRST_FLEXIBLE_VERSION = 9  # compact strings, arrays and bytes, tagged fields; header v2
MAX_STRING_LENGTH = 0x7FFF  # Kafka refuses a longer compact string: its plain form could not hold it


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


class _Reader(_Cursor):
    """The guard's bounds-checked cursor, with the readers of Produce's field types in
    their plain (v3-v8) or flexible (v9+) forms."""

    __slots__ = ("frame", "flexible")

    def __init__(self, frame: memoryview, flexible: bool) -> None:
        super().__init__(frame, 0, len(frame))
        self.frame, self.flexible = frame, flexible

    def string(self, what: str) -> str:
        text = self.nullable_string(what)
        if text is None:
            raise RequestDecodeError(f"a null {what}")
        return text

    def nullable_string(self, what: str, plain: bool = False) -> str | None:
        """`plain`: the request header's client id, never compact, even in header v2."""
        length = self.int16() if plain or not self.flexible else self.uvarint() - 1
        if length < 0:
            return None
        if length > MAX_STRING_LENGTH:
            raise RequestDecodeError(f"a {what} of {length} bytes, more than {MAX_STRING_LENGTH}")
        start = self.take(length)
        try:
            return str(self.frame[start:self.pos], "utf-8")
        except UnicodeDecodeError as exc:
            raise RequestDecodeError(f"a {what} that is not UTF-8: {exc}") from None

    def records(self) -> memoryview | None:
        length = self.uvarint() - 1 if self.flexible else self.int32()
        if length < 0:
            return None
        start = self.take(length)
        return self.frame[start:self.pos]

    def count(self, what: str) -> int:
        """An array's element count; Produce has no nullable arrays."""
        count = self.uvarint() - 1 if self.flexible else self.int32()
        if count < 0:
            raise RequestDecodeError(f"a null array of {what}")
        if count > self.end - self.pos:  # every element takes at least a byte: refuse before looping
            raise RequestDecodeError(f"{count} {what} in the {self.end - self.pos} bytes left")
        return count

    def skip_tagged_fields(self) -> None:
        """Produce v3-v12 and header v2 define no tagged fields: all are skipped, as Kafka skips
        the ones it does not know."""
        if not self.flexible:
            return
        for _ in range(self.uvarint()):
            self.uvarint()  # the tag
            self.take(self.uvarint())


def _partition(reader: _Reader) -> PartitionProduceData:
    partition = PartitionProduceData(reader.int32(), reader.records())
    reader.skip_tagged_fields()
    return partition


def _topic(reader: _Reader) -> TopicProduceData:
    name = reader.string("topic name")
    topic = TopicProduceData(name, tuple(_partition(reader) for _ in range(reader.count("partitions"))))
    reader.skip_tagged_fields()
    return topic


def decode_produce(frame: memoryview, api_version: int) -> DecodedRequest:
    """A Produce request frame (without its size prefix) of `api_version` (3-12), its records
    left in the frame; RequestDecodeError if the frame does not hold one. Bytes after the
    body are ignored, as Kafka does."""
    if api_version not in VERSIONS:
        raise ValueError(f"Produce v{api_version} is not decoded here, only v{VERSIONS[0]}-v{VERSIONS[-1]}")
    reader = _Reader(frame.toreadonly(), api_version >= FIRST_FLEXIBLE_VERSION)
    try:
        api_key, version, correlation_id = reader.int16(), reader.int16(), reader.int32()
        if (api_key, version) != (PRODUCE_API_KEY, api_version):
            raise RequestDecodeError(f"the header names API {api_key} v{version}")
        client_id = reader.nullable_string("client id", plain=True)
        reader.skip_tagged_fields()
        transactional_id = reader.nullable_string("transactional id")
        acks, timeout_ms = reader.int16(), reader.int32()
        topics = tuple(_topic(reader) for _ in range(reader.count("topics")))
        reader.skip_tagged_fields()
    except RequestDecodeError as exc:
        raise RequestDecodeError(f"malformed ProduceRequest v{api_version}: {exc}") from None
    body = ProduceRequest(transactional_id, acks, timedelta(milliseconds=timeout_ms), topics)
    return DecodedRequest(PRODUCE_API_KEY, api_version, correlation_id, client_id, body)
