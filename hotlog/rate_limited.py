"""A log line for a condition that can repeat at every request or connection (out of
descriptors, clients refused): one line per interval, the next one counting those held
back, so the log stays readable when the condition is at its worst. Metrics count every
occurrence. Here, in the lowest layer, so that every layer reports the same way."""

from __future__ import annotations

import logging
import time

REPORT_EVERY_SECONDS = 10.0


class RateLimitedReport:
    def __init__(self, logger: logging.Logger, level: int = logging.WARNING,
                 every_s: float = REPORT_EVERY_SECONDS) -> None:
        self.logger = logger
        self.level = level
        self.every_s = every_s
        self._last = -every_s
        self._held_back = 0

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._held_back += 1
            return
        if self._held_back:
            message += f" ({self._held_back} more like it since the last such line)"
        self.logger.log(self.level, "%s", message)
        self._last, self._held_back = now, 0
