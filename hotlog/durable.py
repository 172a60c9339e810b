"""Durable file writes: write a temporary file, fsync it, rename it over the target, fsync
the folder. A crash then leaves the old file or the new one whole, never a mix, and once
the folder is fsynced the new name survives it too.

Every call blocks on the disk: off the event loop, run it in a worker thread."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Callable

_SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writeback of the range's dirty pages, wait for none


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    call = getattr(libc, "sync_file_range", None)
    if call is not None:
        call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        call.restype = ctypes.c_int
    return call


_START_WRITEBACK = _sync_file_range()


def fsync_path(path: str) -> None:
    """fsync a file or a folder by name (a folder's fsync makes the names in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def start_writeback(fd: int) -> None:
    """Start writing the file's dirty pages to the disk without waiting (Linux's
    `sync_file_range`; elsewhere nothing). An fdatasync after it has less left to wait for,
    so several files' writebacks overlap though their fsyncs run one after another. Errors
    are not raised: the fsync reports any (the kernel keeps a writeback error for it)."""
    if _START_WRITEBACK is not None:
        _START_WRITEBACK(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def replace_durably(tmp: str, path: str) -> None:
    """Rename a written and fsynced `tmp` over `path`, and fsync the folder of `path`."""
    os.replace(tmp, path)
    fsync_path(os.path.dirname(path) or ".")


def write_atomically(path: str, data: bytes, *, sync: bool = True) -> None:
    """Replace `path` with `data` through `<path>.tmp` and a rename, so a reader or a crash
    sees the old file or the new one. With `sync`, durable on return; without, nothing waits
    on the disk, and `sync_written` makes it durable later (until then a crash may leave the
    file missing, empty or torn)."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        if sync:
            replace_durably(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sync_written(path: str) -> None:
    """fsync a file written with `write_atomically(sync=False)`, then its folder so the rename
    is durable. A file deleted meanwhile needs nothing."""
    try:
        fsync_path(path)
    except FileNotFoundError:
        return
    fsync_path(os.path.dirname(path) or ".")
