"""The folder store's own reads beyond the ObjectStore contract: ranges mapped, not copied."""

from __future__ import annotations

import asyncio
import mmap
import os

import pytest

from tiering.local_store import LocalFolderStore
from tiering.store import InvalidRangeError, NotFoundError


def test_a_mapped_range_holds_what_a_get_returns_and_ends_with_the_object(tmp_path) -> None:
    data = os.urandom(3 * mmap.ALLOCATIONGRANULARITY + 10)
    store = LocalFolderStore(str(tmp_path))
    step = mmap.ALLOCATIONGRANULARITY

    async def scenario() -> tuple[bytes, bytes, bytes]:
        await store.put("t/0/seg.log", data)
        middle = await store.map_range("t/0/seg.log", step, 2 * step)
        tail = await store.map_range("t/0/seg.log", 3 * step, 4 * step)  # past the end: to the end
        return bytes(middle), bytes(tail), await store.get("t/0/seg.log", step, 2 * step)

    middle, tail, got = asyncio.run(scenario())
    assert middle == got == data[step : 2 * step]
    assert tail == data[3 * step :]


def test_a_range_that_cannot_be_mapped_is_refused(tmp_path) -> None:
    store = LocalFolderStore(str(tmp_path))
    asyncio.run(store.put("seg", b"x" * 100))
    step = mmap.ALLOCATIONGRANULARITY
    with pytest.raises(NotFoundError):
        asyncio.run(store.map_range("missing", 0, step))
    with pytest.raises(InvalidRangeError):  # past the end: a mapping would fault, not read short
        asyncio.run(store.map_range("seg", step, 2 * step))
    with pytest.raises(InvalidRangeError):  # not on a page boundary
        asyncio.run(store.map_range("seg", 10, 20))
