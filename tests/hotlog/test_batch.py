"""RecordBatch v2 headers: parsing, validation and the rewrites the log does."""

import struct

import pytest
from crc32c import crc32c

from hotlog.batch import (
    HEADER_SIZE,
    MIN_BATCH_LENGTH,
    encode_base_offset,
    parse_header,
    peek_offset_and_size,
    set_log_append_time,
    validate_batch,
    validate_batches,
)
from hotlog.errors import CorruptRecordError
from hotlog.records import decode_batch

from .support import BASE_TS, make_batch


def refresh_crc(batch: bytearray) -> bytearray:
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
    return batch


def test_header_fields_match_what_was_built():
    data = make_batch(5, producer_id=42, producer_epoch=3, base_sequence=7, base_offset=100, transactional=True)
    header = validate_batch(memoryview(data))
    assert header.size == len(data)
    assert (header.base_offset, header.last_offset, header.next_offset) == (100, 104, 105)
    assert header.magic == 2 and header.record_count == 5 and header.last_offset_delta == 4
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (42, 3, 7)
    assert header.base_timestamp == BASE_TS and header.max_timestamp == BASE_TS + 4
    assert header.is_transactional and not header.is_control and not header.log_append_time
    assert peek_offset_and_size(data, 0) == (100, len(data))
    assert crc32c(data[21:]) == header.crc


def test_rewriting_the_base_offset_keeps_the_crc_valid():
    data = make_batch(3)
    moved = encode_base_offset(12345) + data[8:]
    header = validate_batch(memoryview(moved))
    assert header.base_offset == 12345 and header.crc == parse_header(data).crc
    assert [r.offset for r in decode_batch(moved).records] == [12345, 12346, 12347]


def test_log_append_time_stamps_max_timestamp_and_refreshes_the_crc():
    data = bytearray(b"xx" + make_batch(3))  # at a position other than 0
    set_log_append_time(data, 2, 99_999)
    header = validate_batch(memoryview(data), 2)
    assert header.log_append_time and header.max_timestamp == 99_999
    assert all(r.timestamp == 99_999 for r in decode_batch(bytes(data[2:])).records)


def test_validate_batches_returns_each_position_and_rejects_a_trailing_fragment():
    a, b = make_batch(2), make_batch(3, tag=b"b")
    found = validate_batches(a + b)
    assert [(b.position, b.header.record_count) for b in found] == [(0, 2), (len(a), 3)]
    with pytest.raises(CorruptRecordError, match="truncated"):
        validate_batches(a + b[:30])
    with pytest.raises(CorruptRecordError, match="truncated"):
        validate_batches(a + b[:-1])
    with pytest.raises(CorruptRecordError, match="no record batch"):
        validate_batches(b"")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:HEADER_SIZE - 1], "truncated batch"),
        (lambda b: b[:-3], "truncated batch"),
        (lambda b: b[:16] + b"\x01" + b[17:], "magic"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 0x40]), "CRC mismatch"),
        (lambda b: b[:8] + struct.pack(">i", MIN_BATCH_LENGTH - 1) + b[12:], "below the minimum"),
        (lambda b: refresh_crc(bytearray(b[:57] + struct.pack(">i", -1) + b[61:])), "record count"),
        (lambda b: refresh_crc(bytearray(b[:21] + struct.pack(">h", 5) + b[23:])), "compression codec"),
        (lambda b: refresh_crc(bytearray(b[:23] + struct.pack(">i", 999) + b[27:])), "inconsistent batch"),
    ],
    ids=["short-header", "short-body", "magic", "crc", "length", "count", "codec", "offset-delta"],
)
def test_bad_batches_raise_corrupt_record_error(damage, message):
    with pytest.raises(CorruptRecordError, match=message):
        validate_batch(memoryview(bytes(damage(make_batch(4)))))


def test_an_empty_data_batch_is_rejected_but_an_empty_control_batch_is_not():
    data = bytearray(make_batch(1))
    struct.pack_into(">i", data, 57, 0)
    with pytest.raises(CorruptRecordError, match="empty batch"):
        validate_batch(memoryview(refresh_crc(data)))
    struct.pack_into(">h", data, 21, 0x20)  # the control bit
    assert validate_batch(memoryview(refresh_crc(data))).is_control
