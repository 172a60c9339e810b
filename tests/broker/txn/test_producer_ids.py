"""Producer ids are never handed out twice, also on a new machine with the same bucket."""

from __future__ import annotations

import asyncio
from typing import Any

from broker.txn.producer_ids import BLOCK_SIZE, ProducerIdAllocator, remote_block_key
from tiering.local_store import LocalFolderStore


def test_a_new_machine_continues_after_the_block_the_bucket_holds(tmp_path: Any) -> None:
    async def scenario() -> None:
        store = LocalFolderStore(str(tmp_path / "bucket"))
        first = ProducerIdAllocator(str(tmp_path / "lost-disk"), lambda: 0)
        first.keep_in(store, 3)
        handed = [await first.allocate() for _ in range(5)]  # ids that never wrote a batch anywhere
        assert handed == [0, 1, 2, 3, 4]
        assert await store.get(remote_block_key(3)) == str(BLOCK_SIZE).encode()
        again = ProducerIdAllocator(str(tmp_path / "new-disk"), lambda: 0)  # the partitions know no producer
        again.keep_in(store, 3)
        assert await again.allocate() >= BLOCK_SIZE
        alone = ProducerIdAllocator(str(tmp_path / "other-disk"), lambda: 0)  # no bucket: only the logs tell
        assert await alone.allocate() == 0
        await store.close()

    asyncio.run(scenario())
