"""Helpers of the broker tests: a broker on a data folder, started and stopped around a
scenario, and consumer group requests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from broker.groups.coordinator import GroupCoordinator
from broker.groups.membership import JoinRequest
from broker.node import Broker
from broker.settings import BrokerSettings

Scenario = Callable[[Broker, GroupCoordinator], Awaitable[None]]


def run(data_dir: str, scenario: Scenario, **settings: Any) -> None:
    """Start a broker on `data_dir` (fast group timings, two offsets partitions), run the
    scenario with it and its group coordinator, stop it."""
    async def main() -> None:
        values = {"group_initial_rebalance_delay_ms": 0, "group_min_session_timeout_ms": 10,
                  "offsets_topic_num_partitions": 2, **settings}
        broker = Broker(data_dir, BrokerSettings(**values))
        await broker.start()
        try:
            await asyncio.wait_for(scenario(broker, broker.groups), 20)
        finally:
            await broker.stop()

    asyncio.run(main())


def join(member_id: str = "", *, group: str = "g", session_ms: int = 5000, rebalance_ms: int = 5000,
         protocols: tuple[tuple[str, bytes], ...] = (("range", b"meta"),), protocol_type: str = "consumer",
         require_known_member_id: bool = False) -> JoinRequest:
    return JoinRequest(group, member_id, None, protocol_type, protocols, session_ms, rebalance_ms, "client",
                       "/127.0.0.1", require_known_member_id)


