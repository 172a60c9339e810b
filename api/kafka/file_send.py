"""Fetched batches on their way from a segment file to a client's socket.

On a plain TCP connection `os.sendfile` hands the page cache's pages to the socket: no
read into a fresh buffer, no copy into the socket from user space (Kafka's zero-copy
fetch). A TLS connection encrypts in user space, so there the bytes are read a slice at a
time and written through the transport, as any other response bytes.
"""

from __future__ import annotations

import errno
import os
import time

from prometheus_client import Counter

from hotlog.open_files import pread_fully
from hotlog.segment import FileSlice

SENDFILE_BYTES = Counter("tierlog_kafka_fetch_sendfile_bytes_total",
                         "Fetched batch bytes a Kafka listener sent from the page cache by sendfile, uncopied")

# How long a response may go on sending from a segment deleted under it (retention, a
# deleted topic): Kafka's file.delete.delay.ms default, after which Kafka closes a deleted
# segment's channel. A client reading slowly, however slowly, cannot keep a deleted
# segment's disk space and descriptor past it.
DELETED_SEGMENT_GRACE_S = 60.0


class SegmentGoneError(OSError):
    """The segment was deleted more than DELETED_SEGMENT_GRACE_S ago: the response is cut."""


# What a sendfile raises when the client is gone, not the file.
_SOCKET_ERRORS = frozenset((errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED, errno.ETIMEDOUT))


class FileSend:
    """What is left to send of one FileSlice. It holds the slice, and so its pin on the
    segment's descriptor, until the last byte has gone."""

    __slots__ = ("piece", "position", "left")

    def __init__(self, piece: FileSlice) -> None:
        self.piece = piece
        self.position = piece.position
        self.left = piece.size

    def sendfile(self, socket_fd: int) -> int:
        """Send as much as the socket takes now (it is non-blocking); the bytes sent, 0 when
        it is full. Raises OSError if the client is gone or the file cannot be read (then
        the file's later fetches read it by pread, and fail for its partition only), and
        SegmentGoneError once the segment has been deleted too long."""
        self._check_kept()
        try:
            sent = os.sendfile(socket_fd, self.piece.fd, self.position, self.left)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno not in _SOCKET_ERRORS:  # the file's side: read it by pread from now on
                self.piece.checks.unsendable = True
            raise
        if sent == 0:  # the file ends before the slice does: truncated under us
            self.piece.checks.unsendable = True
            raise OSError(f"{self.piece.segment.log_path} ended {self.left} bytes before a fetched slice")
        self._advance(sent)
        SENDFILE_BYTES.inc(sent)
        return sent

    def take(self, most: int) -> bytes:
        """The next bytes, at most `most`, read (for a transport that copies them anyway).
        Raises OSError if the file cannot be read, as `sendfile`."""
        self._check_kept()
        want = min(most, self.left)
        try:
            data = pread_fully(self.piece.fd, self.position, want)
            if len(data) < want:
                raise OSError(f"{self.piece.segment.log_path} ended {self.left - len(data)} bytes before a fetched slice")
        except OSError:
            self.piece.checks.unsendable = True
            raise
        self._advance(want)
        return data

    def _check_kept(self) -> None:
        deleted_at = self.piece.segment.deleted_at
        if deleted_at is not None and time.monotonic() - deleted_at > DELETED_SEGMENT_GRACE_S:
            raise SegmentGoneError(f"{self.piece.segment.log_path} was deleted over {DELETED_SEGMENT_GRACE_S:g} s "
                                   f"ago with {self.left} bytes of a fetched slice not yet sent")

    def _advance(self, sent: int) -> None:
        self.position += sent
        self.left -= sent
