"""Object stores that wrap another: a latency model for benchmarks of remote reads, and
fault injection for tests. Requests are counted by the wrapped store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .store import ObjectInfo, ObjectStore, StoreConfigError, TransientStoreError

T = TypeVar("T")


class DelegatingStore(ObjectStore):
    """Passes every call to `inner`; subclasses override what they change."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__()
        self.inner = inner
        self.requests = inner.requests
        self.part_bytes = inner.part_bytes

    @property
    def url(self) -> str:
        return self.inner.url

    async def put(self, key: str, data: bytes) -> None:
        await self.inner.put(key, data)

    async def put_multipart(self, key: str, parts: AsyncIterable[bytes]) -> None:
        await self.inner.put_multipart(key, parts)

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return await self.inner.get(key, start, end)

    async def head(self, key: str) -> ObjectInfo:
        return await self.inner.head(key)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        return await self.inner.list(prefix)

    async def delete(self, keys: Sequence[str]) -> None:
        await self.inner.delete(keys)

    async def check(self) -> None:
        await self.inner.check()

    async def close(self) -> None:
        await self.inner.close()


class LatencyModelStore(DelegatingStore):
    """Each request takes at least `first_byte_s` plus its bytes at `bandwidth_bytes_per_s`
    (one connection per request), the way S3 behaves from EC2: a fixed time to first byte,
    then a per-connection rate. Requests run concurrently, so concurrency hides latency as
    it does against S3."""

    def __init__(self, inner: ObjectStore, *, first_byte_s: float, bandwidth_bytes_per_s: float) -> None:
        super().__init__(inner)
        if first_byte_s < 0 or bandwidth_bytes_per_s <= 0:
            raise StoreConfigError("first_byte_s must be >= 0 and bandwidth_bytes_per_s > 0")
        self.first_byte_s = first_byte_s
        self.bandwidth_bytes_per_s = bandwidth_bytes_per_s

    async def _modeled(self, call: Awaitable[T], size_of: Callable[[T], int]) -> T:
        began = time.perf_counter()
        result = await call
        target = self.first_byte_s + size_of(result) / self.bandwidth_bytes_per_s
        remaining = target - (time.perf_counter() - began)
        if remaining > 0:
            await asyncio.sleep(remaining)
        return result

    async def put(self, key: str, data: bytes) -> None:
        await self._modeled(self.inner.put(key, data), lambda _: len(data))

    async def put_multipart(self, key: str, parts: AsyncIterable[bytes]) -> None:
        async def paced() -> AsyncIterable[bytes]:
            async for part in parts:
                await asyncio.sleep(self.first_byte_s + len(part) / self.bandwidth_bytes_per_s)
                yield part

        await self.inner.put_multipart(key, paced())

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return await self._modeled(self.inner.get(key, start, end), len)

    async def head(self, key: str) -> ObjectInfo:
        return await self._modeled(self.inner.head(key), lambda _: 0)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        return await self._modeled(self.inner.list(prefix), lambda _: 0)

    async def delete(self, keys: Sequence[str]) -> None:
        await self._modeled(self.inner.delete(keys), lambda _: 0)


class FaultInjectingStore(DelegatingStore):
    """A store that fails, stalls or corrupts on demand (for tests).

    - `down = True`: every call raises TransientStoreError until set back to False.
    - `fail_next(n, *operations, key_contains=...)`: the next `n` calls of those operations
      (default: any), on keys holding `key_contains` if given, raise.
    - `lose_replies(n, *operations, key_contains=...)`: the same, but the calls reach the
      store first (as a timeout after the store applied the request).
    - `delay_s`: every call is delayed (a slow store).
    - `hang()` / `release()`: calls wait, without timing out, until released.
    - `corrupt_next_gets(n)`: the next `n` GETs return their bytes with one flipped.
    - `heal()`: the failures and lost replies still due are called off.
    Operations are named as the methods: put, put_multipart, get, head, list, delete, check."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.down = False
        self.delay_s = 0.0
        self._failures: list[_Budget] = []
        self._lost_replies: list[_Budget] = []
        self._released = asyncio.Event()
        self._released.set()
        self._corrupt_gets = 0
        self.calls: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def fail_next(self, n: int, *operations: str, key_contains: str = "") -> None:
        self._failures.append(_Budget(frozenset(operations), key_contains, n))

    def lose_replies(self, n: int, *operations: str, key_contains: str = "") -> None:
        self._lost_replies.append(_Budget(frozenset(operations), key_contains, n))

    def heal(self) -> None:
        self._failures.clear()
        self._lost_replies.clear()

    def hang(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def corrupt_next_gets(self, n: int) -> None:
        self._corrupt_gets += n

    async def _gate(self, operation: str, key: str = "") -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        await self._released.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.down:
            self._fail(operation, "the store is down")
        if _take(self._failures, operation, key):
            self._fail(operation, "injected failure")

    def _reply(self, operation: str, key: str = "") -> None:
        if _take(self._lost_replies, operation, key):
            self._fail(operation, "injected timeout after the request was applied")

    def _fail(self, operation: str, why: str) -> None:
        self.failed[operation] = self.failed.get(operation, 0) + 1
        raise TransientStoreError(f"{self.url}: {operation}: {why}")

    async def put(self, key: str, data: bytes) -> None:
        await self._gate("put", key)
        await self.inner.put(key, data)
        self._reply("put", key)

    async def put_multipart(self, key: str, parts: AsyncIterable[bytes]) -> None:
        await self._gate("put_multipart", key)
        await self.inner.put_multipart(key, parts)
        self._reply("put_multipart", key)

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        await self._gate("get", key)
        data = await self.inner.get(key, start, end)
        if self._corrupt_gets and data:
            self._corrupt_gets -= 1
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    async def head(self, key: str) -> ObjectInfo:
        await self._gate("head", key)
        return await self.inner.head(key)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        await self._gate("list", prefix)
        return await self.inner.list(prefix)

    async def delete(self, keys: Sequence[str]) -> None:
        await self._gate("delete", " ".join(keys))
        await self.inner.delete(keys)
        self._reply("delete", " ".join(keys))

    async def check(self) -> None:
        await self._gate("check")
        await self.inner.check()


@dataclass
class _Budget:
    operations: frozenset[str]  # empty: any
    key_contains: str
    remaining: int


def _take(budgets: list[_Budget], operation: str, key: str) -> bool:
    """Use one from the first budget that covers this call; False if none does."""
    for budget in budgets:
        if budget.remaining > 0 and (not budget.operations or operation in budget.operations) \
                and budget.key_contains in key:
            budget.remaining -= 1
            return True
    return False
