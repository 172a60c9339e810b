"""Exponential backoff with jitter for tiering tasks that failed against the store."""

from __future__ import annotations

import random
import time


class Backoff:
    def __init__(self, base_ms: int, max_ms: int) -> None:
        self.base_ms = base_ms
        self.max_ms = max(base_ms, max_ms)
        self.failures = 0  # in a row
        self.retry_at = 0.0  # monotonic time before which the task waits

    @property
    def waiting(self) -> bool:
        return self.retry_at > time.monotonic()

    def failed(self) -> float:
        """Count a failure; returns the seconds until the next try (half to all of
        base * 2^(failures-1), capped at max)."""
        self.failures += 1
        delay = min(self.max_ms, self.base_ms * 2 ** min(self.failures - 1, 30)) / 1000 * random.uniform(0.5, 1.0)
        self.retry_at = time.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0
