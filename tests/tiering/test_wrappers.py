"""The latency model and the fault injector over a local folder, and the upload quota."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tiering.local_store import LocalFolderStore
from tiering.quota import ByteRateLimiter
from tiering.store import NotFoundError, TransientStoreError
from tiering.wrappers import FaultInjectingStore, LatencyModelStore


def test_the_latency_model_charges_first_byte_and_bandwidth_per_request(tmp_path) -> None:
    async def scenario() -> None:
        store = LatencyModelStore(LocalFolderStore(str(tmp_path)), first_byte_s=0.05, bandwidth_bytes_per_s=1_000_000)
        await store.put("k", os.urandom(200_000))  # 0.05 + 0.2 s
        began = time.perf_counter()
        assert len(await store.get("k", 0, 100_000)) == 100_000  # 0.05 + 0.1 s
        one = time.perf_counter() - began
        assert 0.15 <= one < 0.4
        began = time.perf_counter()
        await asyncio.gather(*(store.get("k", 0, 100_000) for _ in range(8)))
        assert time.perf_counter() - began < 4 * one, "each request is its own connection"
        assert store.requests["GET"] == 9, "requests are counted once, by the wrapped store"

    asyncio.run(scenario())


def test_the_fault_injector_fails_stalls_and_corrupts_on_demand(tmp_path) -> None:
    async def scenario() -> None:
        store = FaultInjectingStore(LocalFolderStore(str(tmp_path)))
        await store.put("a/k", b"hello")
        store.fail_next(2, "get", key_contains="a/")
        for _ in range(2):
            with pytest.raises(TransientStoreError):
                await store.get("a/k")
        assert await store.get("a/k") == b"hello"
        store.lose_replies(1, "put")
        with pytest.raises(TransientStoreError):
            await store.put("a/lost", b"x")
        assert await store.get("a/lost") == b"x", "the request reached the store before the reply was lost"
        store.corrupt_next_gets(1)
        assert await store.get("a/k") != b"hello"
        store.down = True
        with pytest.raises(TransientStoreError, match="down"):
            await store.list("a/")
        store.down = False
        store.hang()
        pending = asyncio.ensure_future(store.head("a/k"))
        await asyncio.sleep(0.05)
        assert not pending.done()
        store.release()
        assert (await pending).size == 5
        with pytest.raises(NotFoundError):
            await store.head("a/none")

    asyncio.run(scenario())


def test_the_quota_holds_uploads_to_the_byte_rate() -> None:
    async def scenario() -> float:
        quota = ByteRateLimiter(1_000_000, burst_s=0.1)
        began = time.perf_counter()
        for _ in range(10):
            await quota.acquire(50_000)  # 500 kB at 1 MB/s, less the 0.1 s burst
        return time.perf_counter() - began

    elapsed = asyncio.run(scenario())
    assert 0.35 <= elapsed < 0.6
    unlimited = ByteRateLimiter(0)
    began = time.perf_counter()
    asyncio.run(unlimited.acquire(10**12))
    assert time.perf_counter() - began < 0.05
