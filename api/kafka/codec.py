"""Kafka frames <-> kio entities.

A request frame is a header then a body; which header version (v1, or v2 with tagged
fields) follows from the API key and version, so the first 8 bytes are read by hand and
kio decodes the rest. Responses are written by kio into a `FrameWriter`, which keeps
large byte fields (fetched record batches) as references instead of copying them into
one buffer: they go to the socket as they came from the log.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from functools import cache
from types import NoneType, UnionType
from typing import IO, Any, cast, get_args, get_origin

from kio.index import KioIndexError, load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer
from kio.serial.errors import SerialError

from hotlog.segment import FileSlice

from .errors import RequestDecodeError
from .guard import EntityType, check_lengths

REQUEST_PREFIX = struct.Struct(">hhi")  # api key, api version, correlation id
SIZE = struct.Struct(">i")
SPLICE_MIN_BYTES = 16 * 1024  # byte fields at least this large are not copied



@dataclass(frozen=True)
class DecodedRequest:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any  # the kio request entity


def peek_header(frame: bytes | memoryview) -> tuple[int, int, int]:
    """(api key, api version, correlation id), readable before the schema is known."""
    if len(frame) < REQUEST_PREFIX.size:
        raise RequestDecodeError(f"a request frame of {len(frame)} bytes is too short for a header")
    return REQUEST_PREFIX.unpack_from(frame)


@cache
def request_type(api_key: int, api_version: int) -> EntityType:
    return load_request_schema(api_key, api_version)


@cache
def response_type(api_key: int, api_version: int) -> EntityType:
    return load_response_schema(api_key, api_version)


def has_schema(api_key: int, api_version: int) -> bool:
    try:
        request_type(api_key, api_version)
    except KioIndexError:
        return False
    return True


# What kio's native reader raises on bytes that do not fit the schema. KeyError is its
# answer to a tagged field it does not know (Kafka would skip those).
_DECODE_ERRORS = (SerialError, ValueError, TypeError, OverflowError, UnicodeDecodeError, IndexError, KeyError)


def decode_request(frame: bytes | memoryview, api_key: int, api_version: int,
                   element_budget: int | None = None) -> DecodedRequest:
    """Decode a whole request frame (without its size prefix) of a known API and version;
    ManyElements (before any decoding) if its arrays hold more than `element_budget`."""
    check_request(frame, api_key, api_version, element_budget)
    return decode_checked(frame, api_key, api_version)


def check_request(frame: bytes | memoryview, api_key: int, api_version: int, element_budget: int | None = None) -> int:
    """The frame's count of array elements, once its lengths are checked (RequestDecodeError)."""
    return check_lengths(frame, request_type(api_key, api_version), element_budget)


def decode_checked(frame: bytes | memoryview, api_key: int, api_version: int) -> DecodedRequest:
    """Decode a frame that `check_request` passed."""
    schema = request_type(api_key, api_version)
    # Bytes after the body are ignored, as Kafka does: librdkafka's all-topics Metadata
    # request (v9+) carries three.
    try:
        header, used = entity_reader(schema.__header_schema__)(frame, 0)
        body, _ = entity_reader(schema)(frame, used)
    except _DECODE_ERRORS as exc:
        raise RequestDecodeError(f"malformed {schema.__name__} v{api_version}: {exc}") from None
    return DecodedRequest(api_key, api_version, header.correlation_id, header.client_id, body)


# A response frame's pieces: bytes, or batches still in a segment file (sendfile).
Chunk = bytes | bytearray | memoryview | FileSlice


class FrameWriter:
    """A kio `Writable` collecting one response frame as a list of buffers.

    Small writes are packed into a bytearray; large ones are kept by reference, and so are
    fetched batches given as their FileSlice (kio only asks a value's len() and writes it),
    which the connection sends from the page cache."""

    def __init__(self) -> None:
        self._chunks: list[Chunk] = []
        self._current = bytearray(SIZE.size)  # the size prefix, filled in by `finish`
        self._size = 0

    def write(self, data: Chunk) -> int:
        n = len(data)
        if n >= SPLICE_MIN_BYTES:
            self._chunks.append(self._current)
            self._chunks.append(data)
            self._current = bytearray()
        else:
            self._current += data.read() if isinstance(data, FileSlice) else data
        self._size += n
        return n

    def finish(self) -> list[Chunk]:
        self._chunks.append(self._current)
        first = self._chunks[0]
        assert isinstance(first, bytearray)
        SIZE.pack_into(first, 0, self._size)
        return [chunk for chunk in self._chunks if len(chunk)]


class HandEncoded:
    """A response that writes its own frame, where kio's entities cost too much Python
    (produce_response.py)."""

    __slots__ = ()

    def frame(self, correlation_id: int) -> list[Chunk]:
        raise NotImplementedError


def encode_response(correlation_id: int, response: Any) -> list[Chunk]:
    """A response frame (size prefix, header, body) as buffers for the socket.

    The header version comes from the response schema; kio already gives ApiVersions
    header v0 for every version, as clients expect."""
    if isinstance(response, HandEncoded):
        return response.frame(correlation_id)
    header_type = response.__header_schema__
    out = FrameWriter()
    sink = cast(IO[bytes], out)  # kio types its sinks as streams; it only calls write()
    entity_writer(header_type)(sink, header_type(correlation_id=correlation_id))
    entity_writer(type(response))(sink, response)
    return out.finish()


# -- building version-dependent entities ---------------------------------------------


@cache
def _field_names(entity_type: EntityType) -> frozenset[str]:
    return frozenset(f.name for f in fields(entity_type))


def build(entity_type: EntityType, **values: Any) -> Any:
    """An entity of `entity_type` from the values its version has; the others are dropped,
    so one handler serves every version of an API."""
    names = _field_names(entity_type)
    return entity_type(**{k: v for k, v in values.items() if k in names})


def has_field(entity_type: EntityType, name: str) -> bool:
    return name in _field_names(entity_type)


@cache
def nested(entity_type: EntityType, name: str) -> EntityType:
    """The entity type held by field `name` (an entity, an optional one, or a tuple of them)."""
    for f in fields(entity_type):
        if f.name == name:
            field_type = f.type
            if get_origin(field_type) is UnionType:
                field_type = next(a for a in get_args(field_type) if a is not NoneType)
            if get_origin(field_type) is tuple:
                field_type = get_args(field_type)[0]
            return field_type
    raise KeyError(f"{entity_type.__name__} has no field {name!r}")
