"""Reading a whole object in bounded pieces: what the scrubber and the bucket's cleaner
need (a segment's `.log` can be a gigabyte; one GET of it would be held in memory)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import BinaryIO

from crc32c import crc32c

from .metadata import SegmentFile
from .store import ObjectStore

READ_BYTES = 8 * 1024 * 1024  # one ranged GET: the memory a download holds


async def object_crc32c(store: ObjectStore, file: SegmentFile, keep: BinaryIO | None = None,
                        pace: Callable[[int], Awaitable[None]] | None = None) -> int:
    """CRC-32C of an object, read in ranged GETs of READ_BYTES (each checked, and written to
    `keep`, in a worker thread; paced by `pace` when given)."""
    crc = position = 0
    while position < file.size:
        n = min(READ_BYTES, file.size - position)
        if pace is not None:
            await pace(n)
        data = await store.get(file.key, position, position + n)
        crc = await asyncio.to_thread(_check_and_keep, data, crc, keep)  # 8 MiB: off the event loop
        position += n
    return crc


def _check_and_keep(data: bytes, crc: int, keep: BinaryIO | None) -> int:
    if keep is not None:
        keep.write(data)
    return crc32c(data, crc)
