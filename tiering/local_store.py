"""An object store in a local folder (`file:///path`): the embedded default.

An object is a file at `<root>/<key>`. Writes go to a temporary file under
`<root>/.incoming/`, are fsynced, and are renamed into place, so a reader (or a restart
after a crash) sees the whole object or none of it, as with S3."""

from __future__ import annotations

import asyncio
import builtins
import errno
import mmap
import os
import time
import uuid
from collections.abc import AsyncIterable, Sequence
from typing import BinaryIO

from hotlog.durable import replace_durably
from hotlog.names import NAME_MAX

from .store import (
    COMPLETE_MULTIPART,
    CREATE_MULTIPART,
    DELETE,
    GET,
    HEAD,
    LIST,
    PUT,
    UPLOAD_PART,
    AccessDeniedError,
    InvalidKeyError,
    InvalidRangeError,
    NotFoundError,
    ObjectInfo,
    ObjectStore,
    Pace,
    check_key,
    check_range,
    read_exactly,
)

INCOMING = ".incoming"
STALE_INCOMING_SECONDS = 3600  # temporary files older than this are leftovers of a crash
PATH_MAX = 4096  # bytes of a path, with its terminating zero (Linux)


class LocalFolderStore(ObjectStore):
    def __init__(self, root: str, *, part_bytes: int | None = None) -> None:
        super().__init__()
        self.root = os.path.abspath(root)
        if part_bytes is not None:
            self.part_bytes = part_bytes

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    def _path(self, key: str) -> str:
        # Each part of a key is a file name; the file system's limits, as typed errors.
        check_key(key, PATH_MAX - 1 - len(self.root.encode()) - 1, NAME_MAX)
        if key.split("/", 1)[0] == INCOMING:
            raise InvalidKeyError(f"object key {key!r}: {INCOMING}/ is reserved for writes in progress")
        return os.path.join(self.root, key)

    # -- writes ------------------------------------------------------------------------

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        self.count(PUT)
        await asyncio.to_thread(self._write, path, [data])

    async def put_multipart(self, key: str, parts: AsyncIterable[bytes]) -> None:
        path = self._path(key)
        self.count(CREATE_MULTIPART)
        tmp = self._incoming_path()
        f = await asyncio.to_thread(open, tmp, "wb")
        writing: asyncio.Future[int] | None = None
        try:
            # Each part is written while the next one is being produced (read from disk).
            async for part in parts:
                self.count(UPLOAD_PART)
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(f.write, part))
            if writing is not None:
                await writing
            self.count(COMPLETE_MULTIPART)
            await asyncio.to_thread(self._finish, f, tmp, path)
        except BaseException:
            if writing is not None:
                await asyncio.gather(writing, return_exceptions=True)  # the file stays ours to close
            f.close()
            _unlink_quietly(tmp)
            raise

    async def put_file(self, key: str, fd: int, size: int, pace: Pace | None = None) -> None:
        """Copied in the kernel (copy_file_range): no bytes pass through Python."""
        path = self._path(key)
        if pace is not None:
            await pace(size)
        self.count(PUT)
        await asyncio.to_thread(self._copy_in, fd, size, path)

    def _copy_in(self, fd: int, size: int, path: str) -> None:
        tmp = self._incoming_path()
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            copied = 0
            while copied < size:
                try:
                    n = os.copy_file_range(fd, out, size - copied, copied, copied)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    n = os.pwrite(out, read_exactly(fd, copied, min(size - copied, self.part_bytes)), copied)
                if n == 0:
                    raise OSError(f"file ended {size - copied} bytes early at position {copied}")
                copied += n
            os.fsync(out)
        except BaseException:
            os.close(out)
            _unlink_quietly(tmp)
            raise
        os.close(out)
        self._place(tmp, path)

    def _incoming_path(self) -> str:
        directory = os.path.join(self.root, INCOMING)
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, uuid.uuid4().hex)

    def _write(self, path: str, chunks: list[bytes]) -> None:
        tmp = self._incoming_path()
        f = open(tmp, "wb")
        try:
            for chunk in chunks:
                f.write(chunk)
            self._finish(f, tmp, path)
        except BaseException:
            f.close()
            _unlink_quietly(tmp)
            raise

    def _finish(self, f: BinaryIO, tmp: str, path: str) -> None:
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self._place(tmp, path)

    def _place(self, tmp: str, path: str) -> None:
        """Rename a written, fsynced temporary file into place, durably."""
        directory = os.path.dirname(path)
        for _ in range(3):  # a concurrent delete may remove the folder between the two calls
            os.makedirs(directory, exist_ok=True)
            try:
                replace_durably(tmp, path)
                return
            except FileNotFoundError:
                continue
        raise OSError(f"could not place object {path}")

    # -- reads -------------------------------------------------------------------------

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        path = self._path(key)
        check_range(key, start, end)
        if end is not None and end == start:
            return b""
        self.count(GET)
        return await asyncio.to_thread(self._read, key, path, start, end)

    def _open(self, key: str, path: str) -> int:
        """The object's file, open for reading; NotFoundError if there is none."""
        try:
            return os.open(path, os.O_RDONLY)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"{self.url}: no object {key!r}") from None

    def _read(self, key: str, path: str, start: int, end: int | None) -> bytes:
        fd = self._open(key, path)
        try:
            size = os.fstat(fd).st_size
            if start >= size and size > 0 or start > size:
                raise InvalidRangeError(f"{key}: range starts at {start}, the object has {size} bytes")
            stop = size if end is None else min(end, size)
            chunks = []
            position = start
            while position < stop:
                chunk = os.pread(fd, stop - position, position)
                if not chunk:
                    break
                chunks.append(chunk)
                position += len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    async def map_range(self, key: str, start: int, end: int) -> mmap.mmap:
        """Bytes [start, end) of an object (to its end if it ends first) as its file's pages
        mapped read-only, faulted in here (a worker thread): what `get` gives, with no copy.
        `start` is a multiple of mmap.ALLOCATIONGRANULARITY. The mapping outlives the
        object's deletion; objects are never rewritten in place, so it never shrinks."""
        path = self._path(key)
        if start % mmap.ALLOCATIONGRANULARITY or end <= start:
            raise InvalidRangeError(f"{key}: range [{start}, {end}) cannot be mapped")
        self.count(GET)
        return await asyncio.to_thread(self._map, key, path, start, end)

    def _map(self, key: str, path: str, start: int, end: int) -> mmap.mmap:
        fd = self._open(key, path)
        try:
            size = os.fstat(fd).st_size
            if start >= size:  # past the end a mapping's pages would fault (SIGBUS), not read short
                raise InvalidRangeError(f"{key}: range starts at {start}, the object has {size} bytes")
            return mmap.mmap(fd, min(end, size) - start, offset=start, prot=mmap.PROT_READ,
                             flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        finally:
            os.close(fd)

    async def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        self.count(HEAD)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{self.url}: no object {key!r}") from None
        if not os.path.isfile(path):
            raise NotFoundError(f"{self.url}: no object {key!r}")
        return ObjectInfo(key, st.st_size, st.st_mtime)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        self.count(LIST)
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> builtins.list[ObjectInfo]:
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = os.path.join(self.root, folder) if folder else self.root
        found = []
        for directory, dirs, files in os.walk(top):
            relative = os.path.relpath(directory, self.root)
            if relative == INCOMING or relative.startswith(INCOMING + os.sep):
                dirs.clear()
                continue
            for name in files:
                key = name if relative == "." else f"{relative.replace(os.sep, '/')}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(directory, name))
                except FileNotFoundError:  # deleted while we walked
                    continue
                found.append(ObjectInfo(key, st.st_size, st.st_mtime))
        found.sort(key=lambda info: info.key.encode())
        return found

    # -- deletes -----------------------------------------------------------------------

    async def delete(self, keys: Sequence[str]) -> None:
        paths = [self._path(key) for key in keys]
        if paths:
            self.count(DELETE)
            await asyncio.to_thread(self._delete, paths)

    def _delete(self, paths: builtins.list[str]) -> None:  # `list` is a method here
        for path in paths:
            _unlink_quietly(path)
            # Drop folders left empty, up to the root, so listings stay short.
            directory = os.path.dirname(path)
            while directory != self.root and directory.startswith(self.root):
                try:
                    os.rmdir(directory)
                except OSError:
                    break
                directory = os.path.dirname(directory)

    async def check(self) -> None:
        await asyncio.to_thread(self._check)

    def _check(self) -> None:
        try:
            os.makedirs(os.path.join(self.root, INCOMING), exist_ok=True)
            probe = self._incoming_path()
            with open(probe, "wb") as f:
                f.write(b"probe")
            os.unlink(probe)
        except PermissionError as exc:
            raise AccessDeniedError(f"{self.url}: the folder is not writable: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.EEXIST):
                raise AccessDeniedError(f"{self.url}: not a folder") from None
            raise
        cutoff = time.time() - STALE_INCOMING_SECONDS
        incoming = os.path.join(self.root, INCOMING)
        for name in os.listdir(incoming):
            path = os.path.join(incoming, name)
            try:
                if os.stat(path).st_mtime < cutoff:
                    os.unlink(path)
            except FileNotFoundError:
                pass


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
