"""The listener's bounds alone: their properties, the memory pool's order, the quotas."""

from __future__ import annotations

import pytest

from api.kafka.limits import ClientBounds, ConnectionQuotas, MemoryPool
from broker.settings import BrokerSettings
from hotlog.errors import InvalidConfigError


def test_queued_max_request_bytes_must_hold_the_largest_frame_or_be_unbounded() -> None:
    with pytest.raises(InvalidConfigError, match="at least socket.request.max.bytes"):
        BrokerSettings.parse({"queued.max.request.bytes": "1048576"})
    with pytest.raises(InvalidConfigError, match="at least socket.request.max.bytes"):
        BrokerSettings.parse({"queued.max.request.bytes": "0"})
    assert ClientBounds.from_settings(BrokerSettings.parse({"queued.max.request.bytes": "-1"})).pool.capacity is None
    small = BrokerSettings.parse({"queued.max.request.bytes": "2097152", "socket.request.max.bytes": "2097152"})
    assert ClientBounds.from_settings(small).pool.capacity == 2_097_152


def test_per_ip_overrides_are_kafkas_host_count_list() -> None:
    settings = BrokerSettings.parse({"max.connections.per.ip.overrides": "127.0.0.2:4, [::1]:2,localhost:9"})
    assert settings.max_connections_per_ip_overrides == {"127.0.0.2": 4, "::1": 2, "localhost": 9}
    for bad in ("127.0.0.2", "127.0.0.2:many", ":3", "127.0.0.2:0"):
        with pytest.raises(InvalidConfigError, match="max.connections.per.ip.overrides"):
            BrokerSettings.parse({"max.connections.per.ip.overrides": bad})


def test_quotas_count_per_address_with_overrides_resolved() -> None:
    quotas = ConnectionQuotas(6, 2, {"localhost": 3})
    assert [quotas.admit("10.0.0.1") for _ in range(3)] == [None, None, "max.connections.per.ip"]
    assert [quotas.admit("127.0.0.1") for _ in range(4)] == [None, None, None, "max.connections.per.ip"]
    assert quotas.admit("10.0.0.2") is None
    assert quotas.admit("10.0.0.3") == "max.connections"  # 6 open
    quotas.release("10.0.0.1")
    assert quotas.admit("10.0.0.3") is None and quotas.total == 6


def test_the_pool_serves_holds_in_order_and_a_large_one_is_not_passed() -> None:
    pool = MemoryPool(100)
    granted: list[str] = []
    assert pool.hold(60, lambda: granted.append("first"))
    assert not pool.hold(50, lambda: granted.append("large"))
    assert not pool.hold(10, lambda: granted.append("small"))  # would fit, but waits its turn
    assert pool.used == 60 and granted == []
    pool.release(60)
    assert granted == ["large", "small"] and pool.used == 60


def test_a_waiter_that_goes_away_lets_the_next_one_in() -> None:
    pool = MemoryPool(100)
    granted: list[str] = []

    def gone() -> None:
        granted.append("gone")

    assert pool.hold(90, lambda: None)
    assert not pool.hold(80, gone)
    assert not pool.hold(10, lambda: granted.append("next"))
    pool.cancel(gone)
    assert granted == ["next"] and pool.used == 100
