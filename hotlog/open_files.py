"""Segment files' descriptors, bounded: opened on demand, closed least recently used.

A broker with ten thousand partitions would hold ten thousand `.log` descriptors if each
segment kept its own, past the usual limit of 1,024. Here a file holds a descriptor only
while it is used (an append, a read, an fsync, an upload) or while it is among the
`limit` most recently used; past that the least recently used idle one is closed, and
opened again when next needed. A file in use is pinned and never closed under its user.

A deleted file is retired: it is never opened again (its name may be reused by a new
segment), but a pinned descriptor stays open until its last user lets go, so a reader
that holds it reads the deleted bytes to the end, as it could when every segment kept
its descriptor for life.

Every method may be called from any thread (fsyncs and uploads run in workers).
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import threading
from collections import OrderedDict

from .errors import TooManyOpenFilesError
from .rate_limited import RateLimitedReport

log = logging.getLogger(__name__)

# What a broker leaves for sockets, index and snapshot files, the chunk cache and the
# object store's connections, as a share of RLIMIT_NOFILE.
_SEGMENT_SHARE = 2
_MIN_LIMIT = 16


def default_limit() -> int:
    """Half the soft RLIMIT_NOFILE (at least 16): the default of log.segment.open.files.max."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(_MIN_LIMIT, soft // _SEGMENT_SHARE)


class OpenFiles:
    """The LRU: at most `limit` descriptors held by idle files (pinned ones may pass it)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = default_limit() if limit is None else limit
        self._lock = threading.RLock()  # re-entrant: a pin's finalizer may run inside a locked call
        self._idle: OrderedDict[SegmentFile, None] = OrderedDict()  # open, unpinned; oldest first
        self._open = 0  # descriptors held, pinned or idle
        self._exhausted = RateLimitedReport(log)

    @property
    def open_count(self) -> int:
        return self._open

    def file(self, path: str) -> SegmentFile:
        """A handle on an existing file (read and append); no descriptor until first used."""
        return SegmentFile(self, path)

    def _open_fd(self, path: str) -> int:
        """Open `path`; on EMFILE or ENFILE close half the idle files and try once more."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            closed = self._close_idle(max(1, len(self._idle) // 2))
            try:
                fd = os.open(path, os.O_RDWR | os.O_APPEND)
            except OSError as again:
                if again.errno not in (errno.EMFILE, errno.ENFILE):
                    raise
                self._exhausted(f"out of file descriptors ({again.strerror}) with {self._open} segment "
                                     f"files open, {closed} idle ones closed: {path} cannot be opened; "
                                     f"raise the process's RLIMIT_NOFILE or lower log.segment.open.files.max")
                raise TooManyOpenFilesError(f"{path}: {again.strerror}; {self._open} segment files open") from again
            self._exhausted(f"out of file descriptors ({exc.strerror}): closed {closed} idle segment files "
                                 f"to open {path}; log.segment.open.files.max={self.limit} is above what the "
                                 f"process can hold beside its other files")
        self._open += 1
        return fd

    def _close_idle(self, count: int) -> int:
        closed = 0
        while self._idle and closed < count:
            oldest, _ = self._idle.popitem(last=False)
            oldest._close()
            closed += 1
        return closed

    def _trim(self) -> None:
        if self._open > self.limit:
            self._close_idle(self._open - self.limit)


class SegmentFile:
    """One segment file's descriptor through the LRU. `acquire` pins it (opening it if
    need be) and returns the descriptor; every `acquire` needs one `release`."""

    __slots__ = ("path", "_files", "_fd", "_pins", "_retired", "__weakref__")

    def __init__(self, files: OpenFiles, path: str) -> None:
        self.path = path
        self._files = files
        self._fd: int | None = None
        self._pins = 0
        self._retired = False

    def acquire(self) -> int:
        files = self._files
        with files._lock:
            fd = self._fd
            if fd is not None:  # the common case, once per append or read: keep it short
                if self._pins == 0:
                    del files._idle[self]
                self._pins += 1
                return fd
            if self._retired:
                raise FileNotFoundError(errno.ENOENT, "segment file deleted", self.path)
            fd = self._fd = files._open_fd(self.path)
            self._pins = 1
            files._trim()
            return fd

    def release(self) -> None:
        files = self._files
        with files._lock:
            self._pins -= 1
            if self._pins:
                return
            if self._retired:
                self._close()
            else:
                files._idle[self] = None
                if files._open > files.limit:
                    files._trim()

    def retire(self) -> None:
        """Never open the file again (deleted, or replaced by another); its descriptor
        closes now if idle, else when its last user releases it."""
        files = self._files
        with files._lock:
            self._retired = True
            if self._fd is not None and self._pins == 0:
                del files._idle[self]
                self._close()

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    @property
    def retired(self) -> bool:
        return self._retired

    def _close(self) -> None:
        """With the lock held, the file neither pinned nor in the idle list."""
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        self._files._open -= 1


def pread_fully(fd: int, position: int, size: int) -> bytes:
    """`size` bytes from `position`, fewer only at the end of the file."""
    data = os.pread(fd, size, position)
    while len(data) < size:  # pread may return short on large reads
        more = os.pread(fd, size - len(data), position + len(data))
        if not more:
            break
        data += more
    return data


DEFAULT_FILES = OpenFiles()  # the process's, for logs opened without a manager's own
