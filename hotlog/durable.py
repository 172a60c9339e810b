"""Durable file writes: write a temporary file, fsync it, rename it over the target, fsync
the folder. A crash then leaves the old file or the new one whole, never a mix, and once
the folder is fsynced the new name survives it too.

Every call blocks on the disk: off the event loop, run it in a worker thread."""

from __future__ import annotations

import contextlib
import os


def fsync_path(path: str) -> None:
    """fsync a file or a folder by name (a folder's fsync makes the names in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
