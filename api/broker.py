"""The broker: the storage parts composed once, shared by every front end."""

from __future__ import annotations

import asyncio

from fetch.reader import Reader
from hotlog.manager import LogManager

from .kafka.coordinator import GroupCoordinator
from .settings import BrokerSettings


class Broker:
    def __init__(self, data_dir: str, settings: BrokerSettings) -> None:
        self.settings = settings
        self.logs = LogManager(data_dir, settings.log_defaults)
        self.reader = Reader(self.logs)
        # Consumer groups and their committed offsets (in `__consumer_offsets`).
        self.groups = GroupCoordinator(self.logs, self.reader, settings)
        self._background: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.logs.open()
        await self.groups.load()
        self._background.append(
            asyncio.create_task(
                self.logs.run(
                    flush_check_ms=self.settings.log_flush_scheduler_interval_ms,
                    retention_check_ms=self.settings.log_retention_check_interval_ms,
                )
            )
        )

    async def stop(self) -> None:
        """Stop background work, flush, and write the clean-shutdown checkpoint."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self.groups.close()
        self.logs.close()
