"""Producer ids for InitProducerId, never handed out twice, also across restarts.

Ids come from blocks reserved in a small file (`producer-id-block`: the end of the
latest reserved block, fsynced before any id of the block is used), as Kafka reserves
blocks through its controller. A restart continues after the last reserved block, so
ids handed out before a crash are skipped. With an object store the block's end is also
written to the bucket (`_state/<node id>/producer-id-block`) before any id of it is
used, so a new machine continues after it too, even for ids that never wrote a batch.
The first allocation also starts above every producer id the partitions know.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from hotlog.durable import write_atomically
from hotlog.errors import CorruptRecordError, LogStorageError
from tiering.store import NotFoundError, ObjectStore, ObjectStoreError

BLOCK_FILE = "producer-id-block"
BLOCK_SIZE = 1000


def remote_block_key(node_id: int) -> str:
    return f"_state/{node_id}/{BLOCK_FILE}"


class ProducerIdAllocator:
    def __init__(self, data_dir: str, known_floor: Callable[[], int]) -> None:
        """`known_floor`: one above the largest producer id the logs hold (read once)."""
        self.path = os.path.join(data_dir, BLOCK_FILE)
        self.remote: ObjectStore | None = None  # with an object store: the bucket keeps the block too
        self.remote_key = remote_block_key(0)
        self._known_floor: Callable[[], int] | None = known_floor
        self._next = 0
        self._block_end = 0
        self._lock = asyncio.Lock()

    def _read_block_end(self) -> int:
        try:
            with open(self.path, "rb") as f:
                return _block_end(f.read(), self.path)
        except FileNotFoundError:
            return 0

    def keep_in(self, store: ObjectStore, node_id: int) -> None:
        """Write each reserved block's end to `store` too, under this node's key."""
        self.remote, self.remote_key = store, remote_block_key(node_id)

    async def _read_remote_block_end(self) -> int:
        if self.remote is None:
            return 0
        try:
            return _block_end(await self.remote.get(self.remote_key), f"{self.remote.url} {self.remote_key}")
        except NotFoundError:
            return 0

    async def allocate(self) -> int:
        async with self._lock:  # one reservation at a time; its fsync off the event loop
            try:
                if self._known_floor is not None:  # first call: after any restore from the object store
                    self._next = self._block_end = max(self._read_block_end(), await self._read_remote_block_end(),
                                                       self._known_floor())
                    self._known_floor = None
                if self._next >= self._block_end:
                    end = self._next + BLOCK_SIZE
                    await asyncio.to_thread(self._reserve, end)
                    if self.remote is not None:
                        await self.remote.put(self.remote_key, str(end).encode())
                    self._block_end = end
            except (OSError, ObjectStoreError) as exc:
                raise LogStorageError(f"cannot reserve producer ids in {self.path}: {exc}") from exc
            producer_id = self._next
            self._next += 1
            return producer_id

    def _reserve(self, end: int) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_atomically(self.path, str(end).encode())


def _block_end(raw: bytes, where: str) -> int:
    text = raw.decode("ascii", "replace").strip()
    if not text.isdigit():
        raise CorruptRecordError(f"{where}: expected the end of a producer id block, got {text!r}")
    return int(text)
