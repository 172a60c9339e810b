"""The map pass's scan of each batch, kept for the clean pass of the same records, so a
dirty record goes through the per-record scan (hotlog/record_scan.py) once, not twice.

The columns are held within `log.cleaner.dedupe.buffer.size` together with the offset
map's table: as the table grows, the latest batches kept go first, and a batch not kept
is scanned again when it is cleaned.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .batch import BatchHeader

ENTRY_BYTES = 1024  # a batch's arrays' and dict entry's objects, beyond their data


class BatchColumns(NamedTuple):
    """One batch's records as numpy columns: what the cleaning of the batch needs."""

    offsets: np.ndarray
    hashes: np.ndarray  # as offset_map.key_hashes; a null key as b"" (has_key is False)
    has_key: np.ndarray
    tombstones: np.ndarray
    ends: np.ndarray  # as RecordFields.ends
    timestamp_deltas: np.ndarray

    @property
    def nbytes(self) -> int:
        return ENTRY_BYTES + sum(column.nbytes for column in self)


class ScanCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.clear()

    def clear(self) -> None:
        # The CRC tells a batch from another one written at the same offset since (a truncation).
        self._batches: dict[tuple[int, int], BatchColumns] = {}
        self.nbytes = 0

    def add(self, header: BatchHeader, columns: BatchColumns, map_bytes: int) -> None:
        if self.nbytes + columns.nbytes + map_bytes <= self.budget_bytes:
            self._batches[header.base_offset, header.crc] = columns
            self.nbytes += columns.nbytes

    def fit(self, map_bytes: int) -> None:
        """Drop the latest batches until they fit beside an offset map of `map_bytes`."""
        while self._batches and self.nbytes + map_bytes > self.budget_bytes:
            self.nbytes -= self._batches.popitem()[1].nbytes

    def take(self, header: BatchHeader) -> BatchColumns | None:
        columns = self._batches.pop((header.base_offset, header.crc), None)
        if columns is not None:
            self.nbytes -= columns.nbytes
        return columns
