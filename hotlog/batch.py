"""Kafka RecordBatch v2 headers: parse, validate and rewrite without touching records.

The append path reads only the 61-byte header of each batch and checks its CRC-32C;
records stay opaque bytes, compressed or not.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from crc32c import crc32c

from .errors import CorruptRecordError

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the part not counted by batchLength
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD
MAGIC = 2
CRC_START = 21  # the CRC covers attributes .. end of batch

# Field positions inside the header.
BATCH_LENGTH_AT = 8
ATTRIBUTES_AT = 21
LAST_OFFSET_DELTA_AT = 23
MAX_TIMESTAMP_AT = 35

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20
NO_TIMESTAMP = -1

_OFFSET_AND_LENGTH = struct.Struct(">qi")
_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes the batch takes in the log."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_BIT)


class BatchPosition(NamedTuple):
    """A batch's header and where the batch starts in its file or buffer."""

    position: int
    header: BatchHeader


class OffsetAndSize(NamedTuple):
    base_offset: int
    size: int  # bytes the batch takes in the log


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the header at `pos` without validating; the caller knows 61 bytes are there."""
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


def peek_offset_and_size(buf: memoryview | bytes, pos: int) -> OffsetAndSize:
    """Base offset and total size of the batch at `pos`, from its first 12 bytes."""
    base_offset, batch_length = _OFFSET_AND_LENGTH.unpack_from(buf, pos)
    return OffsetAndSize(base_offset, batch_length + LOG_OVERHEAD)


def validate_batch(buf: memoryview, pos: int = 0, *, stored: bool = False) -> BatchHeader:
    """Validate the batch starting at `pos` in `buf`: lengths, magic, counts and CRC-32C.

    A `stored` batch (read back from a log) may have fewer records than offsets, or none:
    the log cleaner keeps a batch's offset range while it removes records (Kafka's way)."""
    available = len(buf) - pos
    if available < HEADER_SIZE:
        raise CorruptRecordError(f"truncated batch: {available} bytes, a header needs {HEADER_SIZE}")
    fields = HEADER.unpack_from(buf, pos)
    # Plain locals, not the header's properties: this runs once per batch on the append path.
    _, batch_length, _, magic, crc, attributes, last_offset_delta, _, _, _, _, _, record_count = fields
    size = batch_length + LOG_OVERHEAD
    if batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(f"batch length {batch_length} is below the minimum {MIN_BATCH_LENGTH}")
    if size > available:
        raise CorruptRecordError(f"truncated batch: length says {size} bytes, {available} present")
    if magic != MAGIC:
        raise CorruptRecordError(f"unsupported magic {magic}; only RecordBatch v2 (magic 2) is accepted")
    if record_count <= 0 or last_offset_delta != record_count - 1:
        if record_count < 0 or last_offset_delta < 0:
            raise CorruptRecordError(f"bad record count {record_count} or last offset delta {last_offset_delta}")
        if record_count > last_offset_delta + 1 or (record_count and not stored):
            # Kafka's LogValidator refuses these: the batch would claim offsets it has no records for.
            raise CorruptRecordError(
                f"inconsistent batch: {record_count} records but last offset delta {last_offset_delta}"
            )
        if not record_count and not stored and not attributes & CONTROL_BIT:
            raise CorruptRecordError("empty batch")
    if attributes & COMPRESSION_MASK > 4:
        raise CorruptRecordError(f"unknown compression codec {attributes & COMPRESSION_MASK}")
    actual = crc32c(buf[pos + CRC_START : pos + size])
    if actual != crc:
        raise CorruptRecordError(f"CRC mismatch: header says {crc:#010x}, data gives {actual:#010x}")
    return BatchHeader._make(fields)


def validate_batches(data: bytes | bytearray | memoryview, *, stored: bool = False) -> list[BatchPosition]:
    """Validate back-to-back batches filling `data` exactly; return each one's position and
    header. `stored`: read back from a log (validate_batch)."""
    view = memoryview(data)
    batches: list[BatchPosition] = []
    pos = 0
    while pos < len(view):
        header = validate_batch(view, pos, stored=stored)
        batches.append(BatchPosition(pos, header))
        pos += header.size
    if not batches:
        raise CorruptRecordError("no record batch in the request")
    return batches


def pack_batch(header: BatchHeader, records: bytes) -> bytes:
    """A batch of `header`'s fields around `records` (as stored: compressed if the batch is);
    its length and CRC-32C are computed here."""
    batch = bytearray(HEADER.pack(*header._replace(batch_length=MIN_BATCH_LENGTH + len(records), crc=0)))
    batch += records
    struct.pack_into(">I", batch, 17, crc32c(memoryview(batch)[CRC_START:]))
    return bytes(batch)


def encode_base_offset(base_offset: int) -> bytes:
    return _I64.pack(base_offset)


def set_log_append_time(batch: bytearray, pos: int, timestamp_ms: int) -> None:
    """Mark the batch at `pos` as log-append-time stamped with `timestamp_ms`; refresh its CRC."""
    header = parse_header(batch, pos)
    struct.pack_into(">h", batch, pos + ATTRIBUTES_AT, header.attributes | TIMESTAMP_TYPE_BIT)
    _I64.pack_into(batch, pos + MAX_TIMESTAMP_AT, timestamp_ms)
    crc = crc32c(memoryview(batch)[pos + CRC_START : pos + header.size])
    struct.pack_into(">I", batch, pos + 17, crc)
