"""The offset map's growing table and the map pass's scans kept for the clean pass."""

from __future__ import annotations

import numpy as np
import pytest

from hotlog.batch import BatchPosition, parse_header
from hotlog.clean_segment import batch_columns, batch_payload
from hotlog.cleaner_scans import ScanCache
from hotlog.offset_map import OffsetMap
from hotlog.record_scan import scan_records
from hotlog.records import GZIP, NONE, Record, build_batch


def test_the_offset_map_grows_to_its_full_table_and_keeps_every_key():
    offset_map = OffsetMap(1 << 20)
    rng = np.random.default_rng(1)
    last: dict[int, int] = {}
    for start in range(0, 40_000, 1_000):
        hashes = rng.integers(1, 30_000, size=1_000, dtype=np.int64)
        offsets = np.arange(start, start + 1_000, dtype=np.int64)
        assert offset_map.room(hashes) == len(hashes)
        offset_map.put(hashes, offsets)
        last.update(zip(hashes.tolist(), offsets.tolist()))
    assert offset_map.size == len(last)
    assert offset_map.memory_bytes <= 1 << 20
    keys = np.array(list(last), dtype=np.int64)
    assert offset_map.get(keys).tolist() == list(last.values())
    assert offset_map.get(np.array([40_000], dtype=np.int64)).tolist() == [-1]


def test_scans_are_kept_within_the_budget_beside_the_map():
    data = bytes(build_batch([Record(b"k%d" % i, b"v") for i in range(10)], base_offset=0))
    header = parse_header(data, 0)
    [cols] = batch_columns(data, [BatchPosition(0, header)])
    cache = ScanCache(2 * cols.nbytes)
    cache.add(header, cols, map_bytes=0)
    cache.fit(map_bytes=cols.nbytes)
    assert cache.take(header) is cols
    cache.add(header, cols, map_bytes=0)
    cache.fit(map_bytes=cols.nbytes + 1)  # the map grew: the scan goes, the batch is scanned again
    assert cache.take(header) is None
    assert cache.nbytes == 0


@pytest.mark.parametrize("compression", [NONE, GZIP])
def test_a_chunk_scanned_at_once_has_the_fields_of_each_batch_scanned_alone(compression):
    rng = np.random.default_rng(2)
    batches = []
    for base in range(0, 600, 150):  # records of 0 B to 20 KiB, timestamps minutes apart, null keys and values
        records = [Record(None if i % 7 == 0 else b"k%d" % rng.integers(1 << 40), None if i % 5 == 0 else
                          bytes(int(rng.integers(0, 20_000)) if i % 9 == 0 else i), (), 1_000_000 + i * 70_000)
                   for i in range(int(rng.integers(1, 150)))]
        batches.append(bytes(build_batch(records, base_offset=base, compression=compression)))
    data = b"".join(batches)
    positions, at = [], 0
    for batch in batches:
        positions.append(BatchPosition(at, parse_header(data, at)))
        at += len(batch)
    for (at, header), cols in zip(positions, batch_columns(data, positions)):
        fields = scan_records(batch_payload(data, at, header), header.record_count)
        assert cols.ends.tolist() == fields.ends
        assert cols.offsets.tolist() == [header.base_offset + d for d in fields.offset_deltas]
        assert cols.timestamp_deltas.tolist() == fields.timestamp_deltas
        assert cols.has_key.tolist() == [k is not None for k in fields.keys]
        assert cols.hashes[cols.has_key].tolist() == [hash(k) or 1 for k in fields.keys if k is not None]
        assert cols.tombstones.tolist() == fields.tombstones
