"""What is known of a segment file's bytes: which ranges of batches passed their checks
(CRC-32C, length, magic, rising offsets), and where the first batch that failed starts.

Bytes this process appended were checked on the way in (the append path validates every
batch), and recovery checks what it scans; anything else on disk (a segment loaded after a
clean stop) is checked once before it is first served, and the scrubber checks it in the
background. Both record here what they found, so no batch is checked twice.
"""

from __future__ import annotations

import bisect
import threading

from .batch import HEADER_SIZE, LOG_OVERHEAD, peek_offset_and_size, validate_batch
from .errors import CorruptRecordError
from .open_files import pread_fully


class CheckedRanges:
    """Disjoint, merged [start, end) ranges of whole batches that passed, and `corrupt_at`:
    the position of the first batch found bad (never served again), or None. Bytes from
    `trusted_from` on were appended by this process (the append path validated them) and
    are never checked: appends cost nothing here."""

    def __init__(self, trusted_from: int) -> None:
        self.trusted_from = trusted_from
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._lock = threading.Lock()
        self.corrupt_at: int | None = None
        # A sendfile from the file failed on its side (EIO): its bytes go through pread from
        # then on, whose errors are the partition's, not the connection's.
        self.unsendable = False

    def add(self, start: int, end: int) -> None:
        if start >= end:
            return
        with self._lock:
            starts, ends = self._starts, self._ends
            if ends and ends[-1] == start:  # an append, or a scan going on: the common case
                ends[-1] = end
                return
            i = bisect.bisect_left(ends, start)  # first range that ends at or after `start`
            j = bisect.bisect_right(starts, end)  # ranges before j start at or before `end`
            if i < j:
                start, end = min(start, starts[i]), max(end, ends[j - 1])
            starts[i:j] = [start]
            ends[i:j] = [end]

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) not yet checked."""
        end = min(end, self.trusted_from)
        with self._lock:
            starts, ends = self._starts, self._ends
            found = []
            i = bisect.bisect_right(ends, start)  # first range ending past `start`
            while start < end:
                if i == len(starts) or starts[i] >= end:
                    found.append((start, end))
                    break
                if starts[i] > start:
                    found.append((start, starts[i]))
                start = ends[i]
                i += 1
            return found

    def mark_corrupt(self, position: int) -> None:
        """Never serve the batch at `position` (the first found bad is kept)."""
        with self._lock:
            if self.corrupt_at is None or position < self.corrupt_at:
                self.corrupt_at = position

    def check(self, data: memoryview, position: int, *, again: bool = False) -> int | None:
        """Check the unchecked parts of `data` (all of it `again`), whole batches read from
        file position `position`, and record what passed; the position of the first bad
        batch, or None."""
        end = position + len(data)
        corrupt_at = self.corrupt_at
        if corrupt_at is not None and position <= corrupt_at < end:
            return corrupt_at
        for start, stop in [(position, end)] if again else self.gaps(position, end):
            bad = first_bad_batch(data[start - position : stop - position], start)
            if bad is not None:
                self.mark_corrupt(bad)
                return bad
            self.add(start, stop)
        return None


def first_bad_batch(data: memoryview, position: int) -> int | None:
    """Check the batches filling `data` (read from file position `position`): each whole,
    of magic 2, its CRC-32C right, its base offset after the previous batch's last. The
    file position of the first that fails, or None."""
    at = 0
    next_offset = -1
    while at < len(data):
        try:
            header = validate_batch(data, at, stored=True)
        except CorruptRecordError:
            return position + at
        if header.base_offset < next_offset:
            return position + at
        next_offset = header.base_offset + header.last_offset_delta + 1
        at += header.batch_length + LOG_OVERHEAD
    return None


def whole_batches(fd: int, position: int, end: int, chunk_bytes: int) -> bytes:
    """From file position `position`, up to `chunk_bytes` of whole batches (one larger batch
    alone), none past `end`; empty when the batch there claims a length that cannot be."""
    data = pread_fully(fd, position, min(chunk_bytes, end - position))
    at = 0
    while at + LOG_OVERHEAD <= len(data):
        size = peek_offset_and_size(data, at).size
        if size < HEADER_SIZE or at + size > len(data):
            break
        at += size
    if at:
        return data if at == len(data) else data[:at]
    if len(data) < LOG_OVERHEAD:
        return b""
    size = peek_offset_and_size(data, 0).size
    if size < HEADER_SIZE or position + size > end:
        return b""
    return pread_fully(fd, position, size)
