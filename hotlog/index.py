"""Sparse indexes of a segment, in Kafka's byte layouts.

`.index`: (relative offset u32, file position u32) per entry.
`.timeindex`: (timestamp i64, relative offset u32) per entry.
Entries are kept in memory as two native arrays (bisect works on them) and appended
to the file on flush; the file is trimmed to its entries and fsynced when sealed.
"""

from __future__ import annotations

import os
import struct
from array import array
from bisect import bisect_left, bisect_right

from .errors import DiskWriteError


class SparseIndex:
    """Two parallel monotonic columns; the first is the search key."""

    ENTRY = struct.Struct(">qq")

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        self.max_entries = max(1, max_bytes // self.ENTRY.size)
        self.keys = array("q")
        self.values = array("q")
        self._persisted = 0  # entries already in the file

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def is_full(self) -> bool:
        return len(self.keys) >= self.max_entries

    def append(self, key: int, value: int) -> None:
        self.keys.append(key)
        self.values.append(value)

    def floor(self, key: int) -> int:
        """Slot of the last entry with entry key <= `key`, or -1."""
        return bisect_right(self.keys, key) - 1

    def load(self) -> bool:
        """Read entries from the file; False if it is missing or not a whole number of entries."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return False
        if not self.load_bytes(data):
            return False
        self._persisted = len(self.keys)
        return True

    def load_bytes(self, data: bytes) -> bool:
        """Take entries from an index file's bytes (local or fetched from the object store)."""
        if len(data) % self.ENTRY.size:
            return False
        self.keys = array("q")
        self.values = array("q")
        for key, value in self.ENTRY.iter_unpack(data):
            self.keys.append(key)
            self.values.append(value)
        return True

    @property
    def size_bytes(self) -> int:
        return len(self.keys) * self.ENTRY.size

    def write_pending(self) -> None:
        """Append entries not yet in the file (page cache only; fsync is the caller's)."""
        if self._persisted == len(self.keys):
            return
        pending = b"".join(
            self.ENTRY.pack(k, v) for k, v in zip(self.keys[self._persisted :], self.values[self._persisted :])
        )
        _append_or_undo(self.path, pending)
        self._persisted = len(self.keys)

    def rewrite(self) -> None:
        """Write the whole index anew (after a rebuild or truncation) and fsync it."""
        data = b"".join(self.ENTRY.pack(k, v) for k, v in zip(self.keys, self.values))
        with open(self.path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._persisted = len(self.keys)

    def fsync(self) -> None:
        self.write_pending()
        fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def truncate_entries(self, count: int) -> None:
        """Keep the first `count` entries."""
        del self.keys[count:]
        del self.values[count:]
        if self._persisted > count:
            self._persisted = count
            with open(self.path, "r+b") as f:
                f.truncate(count * self.ENTRY.size)

    def clear(self) -> None:
        self.truncate_entries(0)


class OffsetIndex(SparseIndex):
    """Relative offset of a batch's last record -> file position of that batch."""

    ENTRY = struct.Struct(">ii")

    def __init__(self, path: str, base_offset: int, max_bytes: int) -> None:
        super().__init__(path, max_bytes)
        self.base_offset = base_offset

    def add(self, last_offset: int, position: int) -> None:
        self.append(last_offset - self.base_offset, position)

    def position_for(self, offset: int) -> int:
        """File position from which a scan finds `offset`: the batch of the last entry at or before it."""
        slot = self.floor(offset - self.base_offset)
        return 0 if slot < 0 else self.values[slot]

    def position_floor(self, position: int) -> int:
        """Largest indexed batch position <= `position` (0 when none)."""
        slot = bisect_right(self.values, position) - 1
        return 0 if slot < 0 else self.values[slot]


class TimeIndex(SparseIndex):
    """Largest timestamp so far -> relative offset of the batch that holds it."""

    ENTRY = struct.Struct(">qi")

    def __init__(self, path: str, base_offset: int, max_bytes: int) -> None:
        super().__init__(path, max_bytes)
        self.base_offset = base_offset

    @property
    def last_timestamp(self) -> int:
        return self.keys[-1] if self.keys else -1

    def maybe_add(self, timestamp: int, offset: int) -> None:
        if timestamp > self.last_timestamp:
            self.append(timestamp, offset - self.base_offset)

    def offset_before(self, timestamp: int) -> int:
        """An offset whose batch and all earlier ones hold only timestamps below `timestamp`.

        Scanning from that batch finds the first record at or after `timestamp`."""
        slot = bisect_left(self.keys, timestamp) - 1
        return self.base_offset if slot < 0 else self.base_offset + self.values[slot]


def _append_or_undo(path: str, data: bytes) -> None:
    """Append `data` to the file, or leave the file as it was and raise DiskWriteError (a
    full or failing disk), so a later write does not land behind part of an entry. If the
    cut fails too, its OSError is raised."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DiskWriteError(f"{path}: {exc}") from exc
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:  # a full disk takes what fits, then raises ENOSPC
                view = view[os.write(fd, view):]
        except OSError as exc:
            os.ftruncate(fd, start)
            raise DiskWriteError(f"{path}: {exc}") from exc
    finally:
        os.close(fd)
