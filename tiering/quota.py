"""A byte-rate quota for uploads, shared by every upload of a tiering manager."""

from __future__ import annotations

import asyncio
import time


class ByteRateLimiter:
    """Lets `bytes_per_sec` through on average, with bursts of up to `burst_s` seconds'
    worth; 0 means no limit. A caller waits until what it takes fits the rate."""

    def __init__(self, bytes_per_sec: float, *, burst_s: float = 1.0) -> None:
        if bytes_per_sec < 0 or burst_s < 0:
            raise ValueError("bytes_per_sec and burst_s must not be negative")
        self.bytes_per_sec = bytes_per_sec
        self.burst_s = burst_s
        self._ready_at = 0.0  # monotonic time at which every byte taken so far is paid for

    async def acquire(self, size: int) -> None:
        if self.bytes_per_sec <= 0 or size <= 0:
            return
        now = time.monotonic()
        self._ready_at = max(self._ready_at, now) + size / self.bytes_per_sec
        wait = self._ready_at - now - self.burst_s
        if wait > 0:
            await asyncio.sleep(wait)
