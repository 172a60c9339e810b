"""The fields of records the log cleaner needs, read from a batch's (decompressed) records
without building a Record per message: where each record ends, its offset and timestamp
deltas, its key, and whether it is a tombstone (null value).

This is the one per-record loop of the cleaner; everything after it works on whole
columns (numpy) or on byte ranges. It is kept to the fewest Python operations a record
allows: one-byte varints (the common case for deltas and short keys) take no inner loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .batch import HEADER_SIZE, BatchPosition
from .errors import CorruptRecordError, InvalidRecordError
from .records import NONE, decompress, read_varint


class RecordFields(NamedTuple):
    """Columns, one entry per record, in the batch's order."""

    ends: list[int]  # record i spans [ends[i - 1] (0 for the first), ends[i]) of the records' bytes
    offset_deltas: list[int]
    timestamp_deltas: list[int]
    keys: list[bytes | None]
    tombstones: list[bool]


def scan_records(buf: bytes, count: int) -> RecordFields:
    """The fields of the `count` records filling `buf` (a batch's records, decompressed)."""
    ends: list[int] = []
    offset_deltas: list[int] = []
    timestamp_deltas: list[int] = []
    keys: list[bytes | None] = []
    tombstones: list[bool] = []
    pos = 0
    size = len(buf)
    try:
        for _ in range(count):
            b = buf[pos]
            if b < 0x80:
                length, pos = b >> 1, pos + 1
            elif buf[pos + 1] < 0x80:  # records of 64 bytes to 8 KiB
                length, pos = ((b & 0x7F) | buf[pos + 1] << 7) >> 1, pos + 2
            else:
                length, pos = read_varint(buf, pos)
            end = pos + length
            if length < 0 or end > size:
                raise CorruptRecordError("a record runs past its batch")
            pos += 1  # attributes
            b = buf[pos]
            if b < 0x80:
                timestamp_deltas.append((b >> 1) ^ -(b & 1))
                pos += 1
            else:
                value, pos = read_varint(buf, pos)
                timestamp_deltas.append(value)
            b = buf[pos]
            if b < 0x80:
                offset_deltas.append((b >> 1) ^ -(b & 1))
                pos += 1
            elif buf[pos + 1] < 0x80:  # deltas 64 to 8191: most records of a batch of more than 64
                value = (b & 0x7F) | buf[pos + 1] << 7
                offset_deltas.append((value >> 1) ^ -(value & 1))
                pos += 2
            else:
                value, pos = read_varint(buf, pos)
                offset_deltas.append(value)
            b = buf[pos]
            if b < 0x80:
                key_length, pos = (b >> 1) ^ -(b & 1), pos + 1
            else:
                key_length, pos = read_varint(buf, pos)
            if key_length < 0:
                keys.append(None)
            else:
                keys.append(buf[pos : pos + key_length])
                pos += key_length
            # A null value is the zigzag varint -1: the single byte 0x01.
            tombstones.append(pos < end and buf[pos] == 1)
            ends.append(end)
            pos = end
    except IndexError:
        raise CorruptRecordError("a record runs past its batch") from None
    if pos != size:
        raise CorruptRecordError(f"the records of a batch take {pos} bytes of {size}")
    return RecordFields(ends, offset_deltas, timestamp_deltas, keys, tombstones)


class ScannedBatches(NamedTuple):
    """The fields of many batches' records as columns, batch after batch."""

    ends: np.ndarray  # as RecordFields.ends, within each batch's records
    offset_deltas: np.ndarray
    timestamp_deltas: np.ndarray
    keys: list[bytes]  # b"" where has_key is False
    has_key: np.ndarray
    tombstones: np.ndarray


def _record_starts(buf: bytes, begins: Sequence[int], sizes: Sequence[int], counts: Sequence[int]) -> list[int]:
    """Where each record starts in `buf`, batch after batch: the one walk that must go
    record by record, as a record's length says where the next one starts."""
    starts: list[int] = []
    append = starts.append
    try:
        for pos, size, count in zip(begins, sizes, counts):
            limit = pos + size
            for _ in range(count):
                append(pos)
                b = buf[pos]
                if b < 0x80:
                    pos += 1 + (b >> 1)
                elif buf[pos + 1] < 0x80:  # records of 64 bytes to 8 KiB
                    pos += 2 + (((b & 0x7F) | buf[pos + 1] << 7) >> 1)
                else:
                    length, pos = read_varint(buf, pos)
                    if length < 0:
                        raise CorruptRecordError("a record of a negative length")
                    pos += length
            if pos != limit:  # a record running past its batch goes on past its end
                raise CorruptRecordError(f"the records of a batch take {pos - limit + size} bytes of {size}")
    except IndexError:
        raise CorruptRecordError("a record runs past its batch") from None
    return starts


def _varints(buf: bytes, arr: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The zigzag varints at positions `at` of `buf` (`arr` its bytes): their values and the
    positions after them. One- and two-byte varints are decoded as columns, longer ones alone."""
    b0 = arr[at].astype(np.int64)
    b1 = arr[at + 1].astype(np.int64)
    multi = b0 >= 0x80
    raw = np.where(multi, (b0 & 0x7F) | (b1 << 7), b0)
    values = (raw >> 1) ^ -(raw & 1)
    after = at + 1 + multi
    for i in np.flatnonzero(multi & (b1 >= 0x80)).tolist():
        values[i], after[i] = read_varint(buf, int(at[i]))
    return values, after


def scan_batches(buf: bytes, begins: Sequence[int], sizes: Sequence[int], counts: Sequence[int]) -> ScannedBatches:
    """The fields of the records of many batches at once (batch i's `counts[i]` records fill
    `sizes[i]` bytes of `buf` from `begins[i]`), so that the per-call cost of numpy is paid
    per chunk read, not per batch."""
    record_starts = np.array(_record_starts(buf, begins, sizes, counts), dtype=np.int64)
    arr = np.frombuffer(buf, dtype=np.uint8)
    first = np.asarray(begins, dtype=np.int64)
    batch_ends = first + np.asarray(sizes, dtype=np.int64)
    try:
        lengths, bodies = _varints(buf, arr, record_starts)
        end = bodies + lengths
        next_starts = np.concatenate([record_starts[1:], batch_ends[-1:]])
        next_starts[np.cumsum(counts, dtype=np.int64) - 1] = batch_ends
        if np.any(end != next_starts):  # as the walk found them, unless a length is negative
            raise CorruptRecordError("a record of a negative length")
        timestamp_deltas, at = _varints(buf, arr, bodies + 1)  # after the attributes
        offset_deltas, at = _varints(buf, arr, at)
        key_lengths, at = _varints(buf, arr, at)
    except IndexError:
        raise CorruptRecordError("a record runs past the records") from None
    values = at + np.maximum(key_lengths, 0)
    if np.any(values > end):
        raise CorruptRecordError("a record's key runs past the record")
    keys = list(map(buf.__getitem__, map(slice, at.tolist(), values.tolist())))  # no Python code per record
    # A null value is the zigzag varint -1, the byte 0x01 (a record without even that is no tombstone).
    tombstones = (values < end) & (arr[np.minimum(values, end - 1)] == 1)
    ends = end - np.repeat(first, counts)
    return ScannedBatches(ends, offset_deltas, timestamp_deltas, keys, key_lengths >= 0, tombstones)


def refuse_null_keys(data: bytes | bytearray | memoryview, batches: list[BatchPosition], partition: str) -> None:
    """Refuse an append to a compacted topic if a record has no key: compaction keeps the
    last record of each key, and Kafka refuses these too (INVALID_RECORD)."""
    view = memoryview(data)
    keyless: list[int] = []
    first = 0  # the batch's first record's index in the append
    for pos, header in batches:
        if not header.is_control:
            stored = view[pos + HEADER_SIZE : pos + header.size]
            payload = bytes(stored) if header.compression == NONE else decompress(header.compression, stored)
            keys = scan_records(payload, header.record_count).keys
            if None in keys:
                keyless += [first + i for i, key in enumerate(keys) if key is None]
        first += header.record_count
    if keyless:
        raise InvalidRecordError(f"compacted topic cannot accept a record without a key in partition {partition}",
                                 tuple(keyless))
