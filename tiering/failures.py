"""Failures of the tiering task's work, one streak per topic or partition and task: each
failure counted (`tierlog_tiering_errors_total`), the failing ones gauged
(`tierlog_tiering_failing`), and logged at most once per `log_interval_s` per streak, so
a partition that fails every second for a day writes a line a minute, not 86,400."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import NamedTuple

from . import metrics
from .store import ObjectStoreError

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 60.0


class Failing(NamedTuple):
    """What failed: a task of one topic (partition None) or one partition."""

    topic_id: uuid.UUID | None  # None: the task as a whole (a pass)
    partition: int | None
    task: str  # the metric's label: topics, copy, local_retention, remote_retention, pass


@dataclass
class _Streak:
    failures: int = 0
    logged_at: float = float("-inf")  # monotonic
    unlogged: int = 0


class Failures:
    def __init__(self, log_interval_s: float = LOG_INTERVAL_S) -> None:
        self.log_interval_s = log_interval_s
        self._streaks: dict[Failing, _Streak] = {}

    def failed(self, what: Failing, where: str, exc: Exception, retry_s: float) -> None:
        """Count one failure of `what` (named `where` in the log), retried in `retry_s`."""
        metrics.ERRORS.labels(what.task).inc()
        streak = self._streaks.get(what)
        if streak is None:
            streak = self._streaks[what] = _Streak()
            metrics.FAILING.labels(what.task).inc()
        streak.failures += 1
        now = time.monotonic()
        if now - streak.logged_at < self.log_interval_s:
            streak.unlogged += 1
            return
        unlogged = f" ({streak.unlogged} failures not logged since the last line)" if streak.unlogged else ""
        # Store and disk errors are expected in operation; anything else is a bug: show where.
        expected = isinstance(exc, (ObjectStoreError, OSError))
        log.log(logging.WARNING if expected else logging.ERROR, "%s: %s failed, retrying in %.1fs%s: %s",
                where, what.task, retry_s, unlogged, exc, exc_info=None if expected else exc)
        streak.logged_at, streak.unlogged = now, 0

    def succeeded(self, what: Failing, where: str) -> None:
        streak = self._streaks.pop(what, None)
        if streak is not None:
            metrics.FAILING.labels(what.task).dec()
            log.info("%s: %s works again after %d failures", where, what.task, streak.failures)

    def forget_topic(self, topic_id: uuid.UUID) -> None:
        """The topic is gone: its streaks end without a success."""
        for what in [w for w in self._streaks if w.topic_id == topic_id]:
            del self._streaks[what]
            metrics.FAILING.labels(what.task).dec()
