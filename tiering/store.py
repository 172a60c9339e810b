"""The object store interface: a few async calls every backend (S3, a local folder, the
latency and fault wrappers) implements, and the typed errors they raise."""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from . import metrics

# Request names for the per-operation counters (S3 bills by them).
PUT, GET, HEAD, LIST, DELETE = "PUT", "GET", "HEAD", "LIST", "DELETE"
CREATE_MULTIPART, UPLOAD_PART, COMPLETE_MULTIPART, ABORT_MULTIPART = (
    "CREATE_MULTIPART", "UPLOAD_PART", "COMPLETE_MULTIPART", "ABORT_MULTIPART",
)
DEFAULT_PART_BYTES = 8 * 1024 * 1024
Pace = Callable[[int], Awaitable[None]]  # awaited before n bytes go out (an upload quota)


class ObjectStoreError(Exception):
    """Base of every error an object store raises."""


class NotFoundError(ObjectStoreError):
    """The object does not exist."""


class InvalidRangeError(ObjectStoreError):
    """A ranged read starting at or past the end of the object."""


class InvalidKeyError(ObjectStoreError):
    """A key the store cannot hold (empty, absolute, or climbing out of the root)."""


class StoreConfigError(ObjectStoreError):
    """A store URL or option that is not valid."""


class AccessDeniedError(ObjectStoreError):
    """The store refuses our credentials, or there are none."""


class BucketNotFoundError(ObjectStoreError):
    """The bucket (or root folder) does not exist."""


class TransientStoreError(ObjectStoreError):
    """A failure worth retrying: 5xx, throttling, a timeout, a dropped connection."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: float  # seconds since the epoch


class ObjectStore(ABC):
    """Objects by key. Writes are all or nothing: a reader never sees half an object.

    `requests` counts requests sent, by operation (retries included), for metrics and
    the cost model."""

    part_bytes: int = DEFAULT_PART_BYTES  # multipart puts split data in parts of this size

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()

    def count(self, operation: str, n: int = 1) -> None:
        self.requests[operation] += n
        metrics.STORE_REQUESTS.labels(operation).inc(n)

    @property
    @abstractmethod
    def url(self) -> str:
        """Where the store points, for messages (no credentials)."""

    @abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` in one request, replacing what was there."""

    @abstractmethod
    async def put_multipart(self, key: str, parts: AsyncIterable[bytes]) -> None:
        """Store the concatenation of `parts` under `key`. Every part but the last must be
        `part_bytes` long; the object appears only once all parts are in."""

    async def put_file(self, key: str, fd: int, size: int, pace: Pace | None = None) -> None:
        """Store the first `size` bytes of the open file `fd` (read with pread, so its position
        is untouched): one put, or a multipart put of parts read one at a time."""
        if size <= self.part_bytes:
            data = await asyncio.to_thread(read_exactly, fd, 0, size)
            if pace is not None:
                await pace(size)
            await self.put(key, data)
            return

        async def parts() -> AsyncIterator[bytes]:
            for position in range(0, size, self.part_bytes):
                part = await asyncio.to_thread(read_exactly, fd, position, min(self.part_bytes, size - position))
                if pace is not None:
                    await pace(len(part))
                yield part

        await self.put_multipart(key, parts())

    @abstractmethod
    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of an object (to its end when `end` is None or past it).
        Raises NotFoundError, or InvalidRangeError when `start` is at or past the end."""

    @abstractmethod
    async def head(self, key: str) -> ObjectInfo:
        """Size and age of an object; NotFoundError if absent."""

    @abstractmethod
    async def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order."""

    @abstractmethod
    async def delete(self, keys: Sequence[str]) -> None:
        """Delete objects; keys that do not exist are not an error."""

    @abstractmethod
    async def check(self) -> None:
        """Raise AccessDeniedError or BucketNotFoundError (with a message a person can act
        on) unless the store can be read and written."""

    async def close(self) -> None:  # noqa: B027 - a store without connections has nothing to release
        """Release connections."""


def check_key(key: str, max_bytes: int | None = None, max_part_bytes: int | None = None) -> str:
    """`key`, unless it is not a relative '/'-separated key or passes a store's limits (of
    the whole key, of one part between slashes): InvalidKeyError, before any request."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise InvalidKeyError(f"object key {key!r} is not valid: use non-empty '/'-separated names")
    if max_bytes is not None and len(key.encode()) > max_bytes:
        raise InvalidKeyError(f"object key {key[:60]!r}... has {len(key.encode())} bytes, over the {max_bytes} allowed")
    if max_part_bytes is not None and any(len(part.encode()) > max_part_bytes for part in parts):
        raise InvalidKeyError(f"object key {key[:60]!r}... has a name longer than the {max_part_bytes} bytes allowed")
    return key


def check_range(key: str, start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise InvalidRangeError(f"{key}: range [{start}, {end}) is not valid")


def read_exactly(fd: int, position: int, size: int) -> bytes:
    """`size` bytes at `position`; OSError if the file ends first."""
    data = os.pread(fd, size, position)
    while len(data) < size:  # pread may return short; rare, so the copy below is too
        more = os.pread(fd, size - len(data), position + len(data))
        if not more:
            raise OSError(f"file ended {size - len(data)} bytes early at position {position + len(data)}")
        data += more
    return data
