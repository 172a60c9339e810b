"""One segment of a partition: a `.log` file of batches and its two sparse indexes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from crc32c import crc32c

from .batch import CRC_START, HEADER_SIZE, MAGIC, MIN_BATCH_LENGTH, BatchPosition, parse_header, peek_offset_and_size
from .checked import CheckedRanges, first_bad_batch, whole_batches
from .durable import fsync_path
from .errors import CorruptSegmentError, DiskWriteError
from .index import OffsetIndex, TimeIndex
from .open_files import DEFAULT_FILES, OpenFiles, SegmentFile, pread_fully
from .txn_index import TXN_INDEX_SUFFIX, TxnIndex

log = logging.getLogger(__name__)

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
INT32_MAX = 2**31 - 1
MAX_SEGMENT_BYTES = INT32_MAX  # the offset index keeps file positions as int32
_IOV_MAX = 1024
_SCAN_WINDOW = 64 * 1024
_RECOVERY_WINDOW = 8 * 1024 * 1024
CHECK_CHUNK_BYTES = 8 * 1024 * 1024  # read at once by a check at rest: the memory it holds


def segment_file_name(base_offset: int, suffix: str) -> str:
    return f"{base_offset:020d}{suffix}"


class PlacedBatch(NamedTuple):
    """What a segment indexes of a batch the log appends, offsets assigned."""

    last_offset: int
    max_timestamp: int
    size: int


class _LogFile(NamedTuple):
    """A segment's `.log` and what is known of its bytes: replaced together, in one step."""

    file: SegmentFile
    checks: CheckedRanges


@dataclass(frozen=True)
class FileSlice:
    """A byte range of whole batches in a segment file, ready for pread or sendfile.

    A slice pins its file's descriptor (`fd`) for as long as it lives, so a segment deleted
    by retention stays readable for readers already under way."""

    segment: LogSegment
    position: int
    size: int
    fd: int
    checks: CheckedRanges  # of the file `fd` reads

    def __len__(self) -> int:
        return self.size

    @property
    def checked(self) -> bool:
        """Whether every batch of the slice has passed its checks (or was appended by this
        process), so its bytes may go to a socket unread (sendfile) as they lie."""
        checks = self.checks
        known, end = checks.corrupt_at, self.position + self.size
        return not checks.unsendable and (known is None or not self.position <= known < end) and \
            not checks.gaps(self.position, end)

    def read(self) -> bytes:
        """The slice's bytes, each batch checked once per process before it is served. From
        a corrupt batch on, nothing: the batches before it, or CorruptSegmentError when the
        slice starts with it."""
        data = pread_fully(self.fd, self.position, self.size)
        known = self.checks.corrupt_at
        bad = self.checks.check(memoryview(data), self.position)
        if bad is None:
            return data
        if bad != known:
            log.error("%s: the batch at position %d failed its CRC-32C or header check: not served",
                      self.segment.log_path, bad)
        if bad == self.position:
            raise CorruptSegmentError(f"{self.segment.log_path}: the batch at position {bad} failed its "
                                      f"CRC-32C or header check; it is not served")
        return data[: bad - self.position]

    @property
    def end_offset(self) -> int:
        """The offset after the slice's last batch."""
        return self.segment.offset_at(self.position + self.size)


class LogSegment:
    def __init__(self, directory: str, base_offset: int, *, index_interval_bytes: int, index_max_bytes: int,
                 files: OpenFiles | None = None, suffix: str = "") -> None:
        """`suffix` follows every file name: the cleaner writes a replacement as `.cleaned`."""
        self.directory = directory
        self.base_offset = base_offset
        self.log_path = os.path.join(directory, segment_file_name(base_offset, LOG_SUFFIX) + suffix)
        self.offset_index = OffsetIndex(
            os.path.join(directory, segment_file_name(base_offset, INDEX_SUFFIX) + suffix), base_offset, index_max_bytes
        )
        self.time_index = TimeIndex(
            os.path.join(directory, segment_file_name(base_offset, TIME_INDEX_SUFFIX) + suffix), base_offset,
            index_max_bytes,
        )
        self.txn_index = TxnIndex(os.path.join(directory, segment_file_name(base_offset, TXN_INDEX_SUFFIX) + suffix))
        self.txn_index.load()
        self.index_interval_bytes = index_interval_bytes
        self._files = DEFAULT_FILES if files is None else files
        try:
            self.size = os.stat(self.log_path).st_size
        except FileNotFoundError:
            os.close(os.open(self.log_path, os.O_WRONLY | os.O_CREAT, 0o644))
            self.size = 0
        # No descriptor held: the LRU opens one when the file is next used.
        # What the file holds now came from an earlier process; appends from here on are ours.
        self._log = _LogFile(self._files.file(self.log_path), CheckedRanges(trusted_from=self.size))
        weakref.finalize(self, self._log.file.retire)  # a segment dropped unclosed holds none
        if self.size == 0:  # a new segment's indexes exist from the start, so an empty one loads
            for index in (self.offset_index, self.time_index):
                os.close(os.open(index.path, os.O_WRONLY | os.O_CREAT, 0o644))
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.bytes_since_index_entry = 0
        self.rolling_base_ms = int(time.time() * 1000)  # segment.ms counts from here
        self.flushed_size = self.size  # bytes known to be fsynced; the log lowers it when unsure
        self.rolled = False  # no more appends; indexes final
        self.sealed = False  # rolled and fsynced: immutable on disk
        self.deleted = False
        self.deleted_at: float | None = None  # time.monotonic() of the deletion

    # -- state -------------------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        return self.size == 0

    @property
    def size_bytes(self) -> int:
        """Bytes of the `.log` file, named as RemoteSegment's: retention counts either."""
        return self.size

    @property
    def checks(self) -> CheckedRanges:
        """What is known of the `.log`'s bytes, shared by the read path and the scrubber."""
        return self._log.checks

    @property
    def corrupt_at(self) -> int | None:
        """Position of the first batch found corrupt, or None: from there on nothing is served."""
        return self._log.checks.corrupt_at

    def mark_corrupt(self, position: int) -> None:
        """Never serve the batch at `position` (found bad by a check of the scrubber's)."""
        self._log.checks.mark_corrupt(position)

    @property
    def paths(self) -> tuple[str, str, str]:
        return self.log_path, self.offset_index.path, self.time_index.path

    @property
    def all_paths(self) -> tuple[str, str, str, str]:
        """Every file of the segment, the `.log` last (the cleaner's swap renames it last)."""
        return self.offset_index.path, self.time_index.path, self.txn_index.path, self.log_path

    def should_roll(self, incoming_bytes: int, last_offset: int, segment_bytes: int, segment_ms: int, now_ms: int) -> bool:
        """Whether an append must go to a new segment. An empty segment takes any append (the
        log refuses one above MAX_SEGMENT_BYTES), so a batch above `segment_bytes` fills a
        segment alone and the next append rolls."""
        if self.is_empty:
            return False
        return (
            self.size + incoming_bytes > segment_bytes
            or now_ms - self.rolling_base_ms >= segment_ms
            or self.offset_index.is_full
            or self.time_index.is_full
            or last_offset - self.base_offset > INT32_MAX
        )

    # -- writes ------------------------------------------------------------------------

    def append(self, iov: Sequence[bytes | memoryview], size: int, batches: Sequence[PlacedBatch]) -> None:
        """Write `iov` (whole batches, offsets already assigned) at the end and index `batches`.
        A write the disk refuses is cut back off and raised as DiskWriteError; if cutting it
        fails too, that OSError is raised (the file may end in part of a batch)."""
        start = self.size
        file = self._log.file
        fd = file.acquire()
        try:
            if len(iov) <= _IOV_MAX:
                written = os.writev(fd, iov)
            else:
                written = sum(os.writev(fd, iov[i : i + _IOV_MAX]) for i in range(0, len(iov), _IOV_MAX))
            if written != size:  # what fitted on a full disk
                raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (a short write: {written} of {size} bytes)")
        except OSError as exc:
            os.ftruncate(fd, start)  # leave the log as it was
            raise DiskWriteError(f"{self.log_path}: {exc}") from exc
        finally:
            file.release()
        if self.is_empty:
            self.rolling_base_ms = int(time.time() * 1000)
        position = start
        for last_offset, max_timestamp, batch_size in batches:
            self._index_batch(last_offset, max_timestamp, position)
            position += batch_size
            self.bytes_since_index_entry += batch_size
        self.size = position
        self.next_offset = batches[-1].last_offset + 1

    def _index_batch(self, last_offset: int, max_timestamp: int, position: int) -> None:
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = last_offset
        if self.bytes_since_index_entry > self.index_interval_bytes:
            self.offset_index.add(last_offset, position)
            self.time_index.maybe_add(self.max_timestamp, self.offset_of_max_timestamp)
            self.bytes_since_index_entry = 0

    def roll(self) -> None:
        """Stop taking appends: the final time index entry goes in; fsync comes with the next flush."""
        if self.max_timestamp >= 0:
            self.time_index.maybe_add(self.max_timestamp, self.offset_of_max_timestamp)
        self.offset_index.write_pending()
        self.time_index.write_pending()
        self.rolled = True

    def write_pending_indexes(self) -> None:
        self.offset_index.write_pending()
        self.time_index.write_pending()

    def sync(self) -> None:
        """fsync the data (and the indexes once rolled). Safe to call from a worker thread.

        The descriptor may be newer than the writes (the LRU closed the one they went
        through): Linux reports a writeback error to the first fsync of any descriptor that
        has not seen it (since 4.17), so the flush still learns of a lost write."""
        file = self._log.file
        fd = file.acquire()
        try:
            os.fdatasync(fd)
        finally:
            file.release()
        if self.rolled:
            self.offset_index.fsync()
            self.time_index.fsync()
            self.txn_index.fsync()

    def delete(self) -> None:
        """Unlink the files. A pinned descriptor closes when the last reader lets go."""
        self.deleted, self.deleted_at = True, time.monotonic()
        self._log.file.retire()
        for path in self.all_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Use the file no more (its log closed): the descriptor closes once no reader holds it."""
        self._log.file.retire()

    # -- reads -------------------------------------------------------------------------

    def pread(self, position: int, size: int) -> bytes:
        """Bytes as they are on disk, unchecked (FileSlice.read checks what it serves)."""
        file = self._log.file
        fd = file.acquire()
        try:
            return pread_fully(fd, position, size)
        finally:
            file.release()

    @contextlib.contextmanager
    def pinned_log(self) -> Iterator[int]:
        """The `.log`'s descriptor, never closed while the block runs (an upload reads it
        from a worker thread); FileNotFoundError once the segment is deleted."""
        if self.deleted:  # a reader's pin may keep the file open: an upload must not start on it
            raise FileNotFoundError(errno.ENOENT, "segment deleted", self.log_path)
        file = self._log.file
        fd = file.acquire()
        try:
            yield fd
        finally:
            file.release()

    def headers_from(self, position: int, end: int | None = None) -> Iterator[BatchPosition]:
        """Each batch from `position` on, reading headers only. The file stays pinned until
        the iteration ends (or the iterator is dropped)."""
        end = self.size if end is None else end
        window = b""
        window_start = position
        file = self._log.file
        fd = file.acquire()
        try:
            while position + HEADER_SIZE <= end:
                at = position - window_start
                if at < 0 or at + HEADER_SIZE > len(window):
                    window = os.pread(fd, _SCAN_WINDOW, position)
                    window_start, at = position, 0
                    if len(window) < HEADER_SIZE:
                        return
                header = parse_header(window, at)
                if header.batch_length < MIN_BATCH_LENGTH:
                    return
                yield BatchPosition(position, header)
                position += header.size
        finally:
            file.release()

    def offset_at(self, position: int) -> int:
        """Base offset of the batch starting at `position`; the segment's next offset at its end."""
        if position >= self.size:
            return self.next_offset
        return peek_offset_and_size(self.pread(position, 12), 0).base_offset

    def position_of(self, offset: int) -> BatchPosition | None:
        """The batch holding `offset` (or the first after it), or None past the end."""
        if offset >= self.next_offset:
            return None
        for found in self.headers_from(self.offset_index.position_for(offset)):
            if found.header.last_offset >= offset:
                return found
        return None

    def read(self, offset: int, max_bytes: int, *, max_offset: int | None = None, min_one: bool = True) -> FileSlice | None:
        """Whole batches from the one holding `offset`, up to `max_bytes` (at least one batch if
        `min_one`), stopping before any batch that starts at or after `max_offset`."""
        found = self.position_of(offset)
        if found is None:
            return None
        start, first = found
        if max_offset is not None and first.base_offset >= max_offset:
            return None
        limit = self.size
        if max_offset is not None and max_offset < self.next_offset:
            stop = self.position_of(max_offset)
            if stop is not None:
                position, header = stop
                limit = position if header.base_offset >= max_offset else position + header.size
        end = start + first.size
        if end > start + max_bytes and not min_one:
            return None
        target = min(start + max_bytes, limit)
        if target > end:
            scan_from = max(end, self.offset_index.position_floor(target))
            end = scan_from
            for position, header in self.headers_from(scan_from, limit):
                if position + header.size > target:
                    break
                end = position + header.size
        return self._slice(start, min(end, limit) - start)

    def _slice(self, position: int, size: int) -> FileSlice:
        file, checks = self._log
        found = FileSlice(self, position, size, file.acquire(), checks)
        weakref.finalize(found, file.release)  # the slice's pin lasts as long as the slice
        return found

    def batch_at_or_after_timestamp(self, timestamp: int, min_offset: int = 0) -> BatchPosition | None:
        """The first batch ending at or past `min_offset` whose max timestamp is >=
        `timestamp`, or None."""
        if self.max_timestamp < timestamp:
            return None
        start_offset = max(self.time_index.offset_before(timestamp), min_offset)
        for found in self.headers_from(self.offset_index.position_for(start_offset)):
            if found.header.max_timestamp >= timestamp and found.header.last_offset >= min_offset:
                return found
        return None

    # -- checks at rest (the scrubber's) ------------------------------------------------

    async def check(self, pace: Callable[[int], Awaitable[None]] | None = None, *, again: bool = False,
                    chunk_bytes: int = CHECK_CHUNK_BYTES) -> int | None:
        """Check every batch of the segment (meant for a sealed one) against its CRC-32C,
        `chunk_bytes` at a time in a worker thread, awaiting `pace(n)` before reading n bytes.
        Skips what is checked already, unless `again`. Returns the position of the first
        corrupt batch, marked so that it is never served, or None; what passed is recorded
        in `checks`, so reads do not check it again."""
        end = self.size
        position = 0
        while True:
            gaps = [(position, end)] if again else self._log.checks.gaps(position, end)
            if not gaps or gaps[0][0] >= end:
                return None
            position = gaps[0][0]
            if pace is not None:
                await pace(min(chunk_bytes, end - position))
            position, bad = await asyncio.to_thread(self._check_chunk, position, end, chunk_bytes, again)
            if bad is not None:
                return bad

    def _check_chunk(self, position: int, end: int, chunk_bytes: int, again: bool) -> tuple[int, int | None]:
        checks = self._log.checks
        with self.pinned_log() as fd:
            data = memoryview(whole_batches(fd, position, end, chunk_bytes))
        if not data:  # a length that cannot be
            checks.mark_corrupt(position)
            return end, position
        return position + len(data), checks.check(data, position, again=again)

    @property
    def replacement_path(self) -> str:
        """Where to write a good copy of the `.log` for `replace_log` (a start removes it)."""
        return self.log_path + ".tmp"

    async def replace_log(self, path: str) -> bool:
        """Replace the `.log` by the file at `path` (in the segment's folder: write it at
        `replacement_path`), a good copy of the same bytes, from the bucket. The copy must
        have the segment's size and every batch pass its checks, else CorruptSegmentError
        and nothing changes. It is fsynced and renamed over the `.log`, and reads use it
        from then on (a reader holding the old file finishes on it); the indexes stay valid,
        the bytes being the same. False, and the copy removed, if the segment was deleted or
        its log closed meanwhile."""
        try:
            await asyncio.to_thread(self._check_copy, path)
        except BaseException:
            _remove(path)
            raise
        file = self._log.file
        if file.retired:  # deleted: renaming now would bring a removed segment back
            _remove(path)
            return False
        os.replace(path, self.log_path)
        checks = CheckedRanges(trusted_from=0)  # every batch checked above
        self._log = _LogFile(self._files.file(self.log_path), checks)
        weakref.finalize(self, self._log.file.retire)
        file.retire()
        await asyncio.to_thread(fsync_path, self.directory)
        return True

    def _check_copy(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size != self.size:
                raise CorruptSegmentError(f"{path}: {size} bytes, not the segment's {self.size}: not taken")
            position = 0
            while position < size:
                data = memoryview(whole_batches(fd, position, size, CHECK_CHUNK_BYTES))
                bad = position if not data else first_bad_batch(data, position)
                if bad is not None:
                    raise CorruptSegmentError(f"{path}: the batch at position {bad} failed its check: not taken")
                position += len(data)
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- loading and recovery ----------------------------------------------------------

    def load(self) -> bool:
        """Open a segment after a clean shutdown: indexes from disk, tail from the last entry.
        False if the indexes are unusable (then `recover` rebuilds them)."""
        if not (self.offset_index.load() and self.time_index.load()):
            return False
        if self.offset_index.values and self.offset_index.values[-1] >= max(self.size, 1):
            return False
        if self.time_index.keys:
            self.max_timestamp = self.time_index.keys[-1]
            self.offset_of_max_timestamp = self.base_offset + self.time_index.values[-1]
        position = self.offset_index.position_for(2**62)
        end = position
        for at, header in self.headers_from(position):
            self.next_offset = header.next_offset
            if header.max_timestamp > self.max_timestamp:
                self.max_timestamp = header.max_timestamp
                self.offset_of_max_timestamp = header.last_offset
            end = at + header.size
        if end != self.size:
            return False
        self.bytes_since_index_entry = self.size - (self.offset_index.values[-1] if self.offset_index.values else 0)
        return True

    def recover(self, expected_base: int | None = None) -> int:
        """Validate every batch (lengths, magic, CRC, offsets), rebuild the indexes and cut the
        file at the first bad batch. Returns the number of bytes cut."""
        self.offset_index.clear()
        self.time_index.clear()
        self.max_timestamp = -1
        self.offset_of_max_timestamp = self.base_offset
        self.bytes_since_index_entry = 0
        self.next_offset = self.base_offset
        next_offset = self.base_offset if expected_base is None else expected_base
        file = self._log.file
        fd = file.acquire()
        try:
            cut = self._recover_from(fd, next_offset)
        finally:
            file.release()
        self.offset_index.rewrite()
        self.time_index.rewrite()
        return cut

    def _recover_from(self, fd: int, next_offset: int) -> int:
        file_size = os.fstat(fd).st_size
        position = 0
        window: bytes | memoryview = b""
        window_start = 0
        while position + HEADER_SIZE <= file_size:
            at = position - window_start
            if at + HEADER_SIZE > len(window):
                window = memoryview(self.pread(position, min(_RECOVERY_WINDOW, file_size - position)))
                window_start, at = position, 0
            header = parse_header(window, at)
            if header.batch_length < MIN_BATCH_LENGTH or header.magic != MAGIC or position + header.size > file_size:
                break
            if header.base_offset < next_offset or header.last_offset_delta < 0:
                break
            if at + header.size > len(window):
                window = memoryview(self.pread(position, max(_RECOVERY_WINDOW, header.size)))
                window_start, at = position, 0
            if crc32c(window[at + CRC_START : at + header.size]) != header.crc:
                break
            self._index_batch(header.last_offset, header.max_timestamp, position)
            position += header.size
            self.bytes_since_index_entry += header.size
            next_offset = header.next_offset
            self.next_offset = next_offset
        cut = file_size - position
        if cut:
            os.ftruncate(fd, position)
            self.txn_index.rewrite([t for t in self.txn_index.entries if t.last_offset < self.next_offset])
        self.size = position
        checks = CheckedRanges(trusted_from=0)  # every batch kept passed the checks an append makes
        self._log = self._log._replace(checks=checks)
        return cut


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
