"""Records inside batches: build and decode, every codec, and damage the decoder must catch."""

import os
import struct

import cramjam
import pytest
from crc32c import crc32c

from hotlog.batch import HEADER_SIZE
from hotlog.errors import CorruptRecordError
from hotlog.records import CODECS, SNAPPY, Record, build_batch, compress, decode_batch, decode_batches, decompress

RECORDS = [
    Record(b"key", b"value", (("trace", b"abc"), ("none", None), ("unicodé", b"")), 1_000),
    Record(None, b"no key", (), 999),  # an earlier timestamp: a negative delta
    Record(b"no value", None, (), 5_000),
    Record(b"", b"", (), 2**40),
    Record(b"big", os.urandom(70_000), (), 1_001),
]


@pytest.mark.parametrize("codec", sorted(CODECS.values()))
def test_records_come_back_as_built_with_every_codec(codec):
    data = build_batch(RECORDS, base_offset=10, compression=codec)
    decoded = decode_batch(data)
    assert decoded.header.compression == codec
    assert decoded.header.max_timestamp == 2**40 and decoded.header.base_timestamp == 1_000
    assert [(r.key, r.value, r.headers, r.timestamp) for r in decoded.records] == [
        (r.key, r.value, r.headers, r.timestamp) for r in RECORDS
    ]
    assert [r.offset for r in decoded.records] == list(range(10, 15))


def test_records_without_a_timestamp_get_now():
    decoded = decode_batch(build_batch([Record(b"a", b"b")], now_ms=123_456))
    assert decoded.records[0].timestamp == 123_456 == decoded.header.max_timestamp


def test_a_batch_needs_a_record():
    with pytest.raises(ValueError):
        build_batch([])


def test_decode_batches_skips_a_partial_batch_at_the_end():
    a = build_batch(RECORDS[:2], base_offset=0)
    b = build_batch(RECORDS[2:], base_offset=2)
    assert [len(d.records) for d in decode_batches(a + b[: len(b) // 2])] == [2]
    assert [len(d.records) for d in decode_batches(a + b)] == [2, 3]
    assert list(decode_batches(a[:11])) == []


def test_snappy_without_xerial_framing_also_decodes():
    body = b"hello snappy " * 100
    assert decompress(SNAPPY, bytes(cramjam.snappy.compress_raw(body))) == body
    assert decompress(SNAPPY, compress(SNAPPY, body)) == body


@pytest.mark.parametrize("codec", [c for c in CODECS.values() if c])
def test_a_payload_that_does_not_decompress_is_a_corrupt_record(codec):
    data = bytearray(build_batch(RECORDS, compression=codec))
    data[HEADER_SIZE:] = b"\x00" * 16 + b"\xff" * (len(data) - HEADER_SIZE - 16)
    struct.pack_into(">i", data, 8, len(data) - 12)
    struct.pack_into(">I", data, 17, crc32c(bytes(data[21:])))  # a valid CRC over garbage
    with pytest.raises(CorruptRecordError):
        decode_batch(bytes(data))


def test_a_record_whose_length_disagrees_with_its_fields_is_a_corrupt_record():
    data = bytearray(build_batch([Record(b"k", b"v", (), 1)]))
    data[HEADER_SIZE] += 2  # record length varint: one more than the fields (zigzag 2 = +1)
    data += b"\x00"
    struct.pack_into(">i", data, 8, len(data) - 12)
    struct.pack_into(">I", data, 17, crc32c(bytes(data[21:])))
    with pytest.raises(CorruptRecordError, match="record length"):
        decode_batch(bytes(data))


def test_a_record_running_past_the_batch_is_a_corrupt_record():
    data = bytearray(build_batch([Record(b"k", b"v", (), 1)]))
    data[HEADER_SIZE] += 40
    struct.pack_into(">I", data, 17, crc32c(bytes(data[21:])))
    with pytest.raises(CorruptRecordError):
        decode_batch(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [lambda x: x + b"\x00\x00", lambda x: x[:16] + struct.pack(">i", -4) + x[20:],
     lambda x: x[:16] + struct.pack(">i", 1 << 20) + x[20:]],
    ids=["torn-length", "negative-length", "length-past-end"],
)
def test_broken_xerial_snappy_framing_is_a_corrupt_record(damage):
    framed = compress(SNAPPY, b"hello " * 100)
    with pytest.raises(CorruptRecordError):
        decompress(SNAPPY, damage(framed))
