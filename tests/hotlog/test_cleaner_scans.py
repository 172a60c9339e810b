"""The offset map's growing table and the map pass's scans kept for the clean pass."""

from __future__ import annotations

import numpy as np

from hotlog.batch import parse_header
from hotlog.clean_segment import batch_columns
from hotlog.cleaner_scans import ScanCache
from hotlog.offset_map import OffsetMap
from hotlog.records import Record, build_batch


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
    cols = batch_columns(data, 0, header)
    cache = ScanCache(2 * cols.nbytes)
    cache.add(header, cols, map_bytes=0)
    cache.fit(map_bytes=cols.nbytes)
    assert cache.take(header) is cols
    cache.add(header, cols, map_bytes=0)
    cache.fit(map_bytes=cols.nbytes + 1)  # the map grew: the scan goes, the batch is scanned again
    assert cache.take(header) is None
    assert cache.nbytes == 0
