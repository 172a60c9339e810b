"""Records inside a RecordBatch v2: build batches from records and decode them back.

Only the API paths that hand records to people (gRPC, CLI, tables) use this module, and
the append path of a topic that recompresses batches (`recompress_batches`); otherwise
the append and fetch paths move whole batches.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cramjam

from .batch import (
    COMPRESSION_MASK,
    CONTROL_BIT,
    HEADER,
    LOG_OVERHEAD,
    MAGIC,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    BatchHeader,
    BatchPosition,
    pack_batch,
    parse_header,
    validate_batch,
)
from .errors import CorruptRecordError

NONE, GZIP, SNAPPY, LZ4, ZSTD = range(5)
CODECS = {"none": NONE, "gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}
_XERIAL_MAGIC = b"\x82SNAPPY\x00"


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp: int = -1  # ms since the epoch; -1 means "stamp it when building"
    offset: int = -1  # set when decoded from the log


@dataclass(frozen=True)
class DecodedBatch:
    header: BatchHeader
    records: list[Record] = field(default_factory=list)


def _zigzag_varint(value: int, out: bytearray) -> None:
    value = (value << 1) ^ (value >> 63)
    while value & ~0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def read_varint(buf: memoryview | bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint at `pos` (Kafka's record fields): its value and the position after it."""
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise CorruptRecordError("truncated varint in record")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise CorruptRecordError("varint too long in record")


def _write_bytes(value: bytes | None, out: bytearray) -> None:
    if value is None:
        _zigzag_varint(-1, out)
    else:
        _zigzag_varint(len(value), out)
        out += value


def _read_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    length, pos = read_varint(buf, pos)
    if length < 0:
        return None, pos
    if pos + length > len(buf):
        raise CorruptRecordError("record field runs past the batch")
    return bytes(buf[pos : pos + length]), pos + length


def compress(codec: int, data: bytes, level: int | None = None) -> bytes:
    """`data` compressed with `codec`, at `level` (None: the library's default; snappy has none)."""
    if codec == NONE:
        return data
    if codec == GZIP:
        return bytes(cramjam.gzip.compress(data, level=level))
    if codec == SNAPPY:
        # Java clients frame snappy the xerial way; every client reads it.
        block = bytes(cramjam.snappy.compress_raw(data))
        return _XERIAL_MAGIC + struct.pack(">ii", 1, 1) + struct.pack(">i", len(block)) + block
    if codec == LZ4:
        return bytes(cramjam.lz4.compress(data, level=level))
    if codec == ZSTD:
        return bytes(cramjam.zstd.compress(data, level=level))
    raise ValueError(f"unknown compression codec {codec}")


def decompress(codec: int, data: bytes | memoryview) -> bytes:
    try:
        if codec == NONE:
            return bytes(data)
        if codec == GZIP:
            return bytes(cramjam.gzip.decompress(data))
        if codec == SNAPPY:
            return _snappy_decompress(bytes(data))
        if codec == LZ4:
            return bytes(cramjam.lz4.decompress(data))
        if codec == ZSTD:
            return bytes(cramjam.zstd.decompress(data))
    except cramjam.DecompressionError as exc:
        raise CorruptRecordError(f"cannot decompress batch: {exc}") from exc
    raise CorruptRecordError(f"unknown compression codec {codec}")


def _snappy_decompress(data: bytes) -> bytes:
    if not data.startswith(_XERIAL_MAGIC):
        return bytes(cramjam.snappy.decompress_raw(data))
    out = bytearray()
    pos = len(_XERIAL_MAGIC) + 8  # magic, version, compatible version
    while pos < len(data):
        if pos + 4 > len(data):
            raise CorruptRecordError("truncated xerial snappy block length")
        (length,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if length < 0 or pos + length > len(data):
            raise CorruptRecordError(f"xerial snappy block of {length} bytes runs past the batch")
        out += cramjam.snappy.decompress_raw(data[pos : pos + length])
        pos += length
    return bytes(out)


def build_batch(
    records: Sequence[Record],
    *,
    base_offset: int = 0,
    compression: int = NONE,
    now_ms: int | None = None,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
    control: bool = False,
    log_append_time: bool = False,
    partition_leader_epoch: int = 0,
) -> bytes:
    """Encode records as one RecordBatch v2. Records without a timestamp get `now_ms`."""
    if not records:
        raise ValueError("a batch needs at least one record")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    timestamps = [r.timestamp if r.timestamp >= 0 else now for r in records]
    base_ts = timestamps[0]
    body = bytearray()
    for delta, (record, ts) in enumerate(zip(records, timestamps)):
        rec = bytearray(b"\x00")  # record attributes: unused
        _zigzag_varint(ts - base_ts, rec)
        _zigzag_varint(delta, rec)
        _write_bytes(record.key, rec)
        _write_bytes(record.value, rec)
        _zigzag_varint(len(record.headers), rec)
        for name, value in record.headers:
            _write_bytes(name.encode(), rec)
            _write_bytes(value, rec)
        _zigzag_varint(len(rec), body)
        body += rec
    payload = compress(compression, bytes(body))
    attributes = compression
    if log_append_time:
        attributes |= TIMESTAMP_TYPE_BIT
    if transactional:
        attributes |= TRANSACTIONAL_BIT
    if control:
        attributes |= CONTROL_BIT
    header = BatchHeader(
        base_offset, 0, partition_leader_epoch, MAGIC, 0, attributes, len(records) - 1, base_ts, max(timestamps),
        producer_id, producer_epoch, base_sequence, len(records),
    )
    return pack_batch(header, payload)


def recompress_batch(batch: memoryview, header: BatchHeader, codec: int, level: int | None = None) -> bytes:
    """The batch (validated, `header` its own) with its records in `codec` (NONE: uncompressed);
    every other header field kept, the length and CRC-32C computed anew."""
    records = decompress(header.compression, batch[HEADER.size : header.size])
    attributes = (header.attributes & ~COMPRESSION_MASK) | codec
    return pack_batch(header._replace(attributes=attributes), compress(codec, records, level))


def recompress_batches(data: bytes | bytearray | memoryview, batches: list[BatchPosition], codec: int,
                       level: int | None = None) -> tuple[bytes | bytearray | memoryview, list[BatchPosition]]:
    """Validated back-to-back `batches` of `data` with the records of those in another codec
    recompressed (Kafka's LogValidator, for a topic whose compression.type is not `producer`).
    Control batches stay as they are. Returns `data` and `batches` themselves when none changes."""
    if all(header.compression == codec or header.is_control for _, header in batches):
        return data, batches
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    for pos, header in batches:
        batch = view[pos : pos + header.size]
        same = header.compression == codec or header.is_control
        parts.append(batch if same else recompress_batch(batch, header, codec, level))
    out = b"".join(parts)
    placed: list[BatchPosition] = []
    pos = 0
    for part in parts:
        placed.append(BatchPosition(pos, parse_header(out, pos)))
        pos += len(part)
    return out, placed


def decode_batch(buf: bytes | memoryview, pos: int = 0) -> DecodedBatch:
    """Validate and decode the batch at `pos`, records included (decompressing as needed)."""
    view = memoryview(buf)
    header = validate_batch(view, pos, stored=True)
    payload = decompress(header.compression, view[pos + HEADER.size : pos + header.size])
    body = memoryview(payload)
    records: list[Record] = []
    at = 0
    for _ in range(header.record_count):
        length, at = read_varint(body, at)
        end = at + length
        if end > len(body):
            raise CorruptRecordError("record runs past the batch")
        at += 1  # record attributes
        ts_delta, at = read_varint(body, at)
        offset_delta, at = read_varint(body, at)
        key, at = _read_bytes(body, at)
        value, at = _read_bytes(body, at)
        header_count, at = read_varint(body, at)
        headers = []
        for _ in range(header_count):
            name, at = _read_bytes(body, at)
            hvalue, at = _read_bytes(body, at)
            headers.append(((name or b"").decode("utf-8", "replace"), hvalue))
        if at != end:
            raise CorruptRecordError("record length does not match its fields")
        timestamp = header.max_timestamp if header.log_append_time else header.base_timestamp + ts_delta
        records.append(Record(key, value, tuple(headers), timestamp, header.base_offset + offset_delta))
    return DecodedBatch(header, records)


def decode_batches(buf: bytes | memoryview) -> Iterable[DecodedBatch]:
    """Decode back-to-back batches; a partial batch at the end (as fetches may return) is skipped."""
    view = memoryview(buf)
    pos = 0
    while len(view) - pos >= LOG_OVERHEAD:
        _, length = struct.unpack_from(">qi", view, pos)
        if pos + LOG_OVERHEAD + length > len(view):
            break
        yield decode_batch(view, pos)
        pos += LOG_OVERHEAD + length
