"""Length checks on a request frame before kio decodes it.

kio's native reader sizes an array from the count on the wire before reading a single
element, so a frame claiming two billion elements aborts the whole process with an
allocation failure. This walk follows the same schema without building anything and
refuses a frame whose counts or lengths run past its end, or that has a null array where
the schema has none (kio would pass the None on); only then does kio decode it.

The walk also counts the array elements, which is what decoding (and most handlers)
costs: with a budget it stops as soon as the counts pass it, before walking them, so a
frame of millions of elements costs the event loop nothing to recognise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields, is_dataclass
from functools import cache
from types import NoneType, UnionType
from typing import Any, get_args, get_origin

from .errors import RequestDecodeError

# A kio entity class: a frozen dataclass whose schema attributes (__flexible__,
# __header_schema__) are set at run time and that @cache keys on: typed as Any.
EntityType = Any

_FIXED = {"int8": 1, "bool": 1, "int16": 2, "int32": 4, "timedelta_i32": 4, "int64": 8, "timedelta_i64": 8,
          "uuid": 16, "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8, "float64": 8, "error_code": 2,
          "datetime_i64": 8}
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


@dataclass(frozen=True)
class _Field:
    kafka_type: str | None  # None: an entity
    entity: EntityType | None
    array: bool
    nullable: bool  # an array that may be null; an entity behind an int8 marker (KIP-893)
    legacy_string: bool  # the request header's client id is never compact


@dataclass(frozen=True)
class _Plan:
    flexible: bool
    fields: tuple[_Field, ...]
    tagged: dict[int, _Field]


@cache
def _plan(entity_type: EntityType) -> _Plan:
    regular, tagged = [], {}
    for f in fields(entity_type):
        field_type, nullable = f.type, False
        if get_origin(field_type) is UnionType:
            nullable = NoneType in get_args(field_type)
            field_type = next(a for a in get_args(field_type) if a is not NoneType)
        array = get_origin(field_type) is tuple
        inner = get_args(field_type)[0] if array else field_type
        entity: EntityType | None = inner if isinstance(inner, type) and is_dataclass(inner) else None
        step = _Field(
            None if entity else f.metadata["kafka_type"], entity, array,
            nullable and (array or entity is not None) and "tag" not in f.metadata,
            entity_type.__name__ == "RequestHeader" and f.name == "client_id",
        )
        if "tag" in f.metadata:
            tagged[f.metadata["tag"]] = step
        else:
            regular.append(step)
    return _Plan(entity_type.__flexible__, tuple(regular), tagged)


class ManyElements(Exception):
    """The frame's arrays hold more elements than the budget: decode it off the event loop."""


class _Cursor:
    __slots__ = ("buf", "pos", "end", "elements", "budget")

    def __init__(self, buf: bytes | memoryview, pos: int, end: int, budget: int | None = None) -> None:
        self.buf, self.pos, self.end = buf, pos, end
        self.elements = 0
        self.budget = budget

    def take(self, n: int) -> int:
        if n < 0 or self.pos + n > self.end:
            raise RequestDecodeError(f"a length of {n} runs past the end of the request")
        start = self.pos
        self.pos += n
        return start

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.buf[self.take(1)]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise RequestDecodeError("a varint longer than five bytes")

    def int16(self) -> int:
        return int(_I16.unpack_from(self.buf, self.take(2))[0])

    def int32(self) -> int:
        return int(_I32.unpack_from(self.buf, self.take(4))[0])


def _skip_value(cursor: _Cursor, field: _Field, flexible: bool) -> None:
    if field.entity is not None:
        if field.nullable and not field.array and cursor.buf[cursor.take(1)] == 0xFF:
            return
        _skip_entity(cursor, field.entity)
        return
    kind = field.kafka_type
    size = _FIXED.get(kind)  # type: ignore[arg-type]
    if size is not None:
        cursor.take(size)
    elif kind == "string":
        length = cursor.uvarint() - 1 if flexible and not field.legacy_string else cursor.int16()
        cursor.take(max(length, 0))
    elif kind in ("bytes", "records"):
        length = cursor.uvarint() - 1 if flexible else cursor.int32()
        cursor.take(max(length, 0))
    else:
        raise RequestDecodeError(f"no length rule for field type {kind!r}")


def _skip_field(cursor: _Cursor, field: _Field, flexible: bool) -> None:
    if not field.array:
        _skip_value(cursor, field, flexible)
        return
    count = cursor.uvarint() - 1 if flexible else cursor.int32()
    if count < 0 and not field.nullable:  # kio would hand the handler a None
        raise RequestDecodeError("a null array where the schema requires one")
    if count > cursor.end - cursor.pos:  # every element takes at least one byte
        raise RequestDecodeError(f"an array of {count} elements in {cursor.end - cursor.pos} bytes")
    cursor.elements += max(count, 0)
    if cursor.budget is not None and cursor.elements > cursor.budget:
        raise ManyElements(f"more than {cursor.budget} array elements")
    for _ in range(count):
        _skip_value(cursor, field, flexible)


def _skip_entity(cursor: _Cursor, entity_type: EntityType) -> None:
    plan = _plan(entity_type)
    for field in plan.fields:
        _skip_field(cursor, field, plan.flexible)
    if not plan.flexible:
        return
    for _ in range(cursor.uvarint()):
        tag = cursor.uvarint()
        size = cursor.uvarint()
        start = cursor.take(size)
        known = plan.tagged.get(tag)
        if known is not None:  # kio decodes known tags: their contents must fit too
            inner = _Cursor(cursor.buf, start, start + size,
                            None if cursor.budget is None else cursor.budget - cursor.elements)
            _skip_field(inner, known, True)
            cursor.elements += inner.elements


def check_lengths(frame: bytes | memoryview, request_type: EntityType, budget: int | None = None) -> int:
    """The frame's count of array elements; raise RequestDecodeError unless every count and
    length in it fits inside it, ManyElements once the count passes `budget`."""
    cursor = _Cursor(frame, 0, len(frame), budget)
    _skip_entity(cursor, request_type.__header_schema__)
    _skip_entity(cursor, request_type)
    return cursor.elements
