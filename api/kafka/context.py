"""What a Kafka request handler gets: the broker-wide state and the request's own context."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from broker.security.principal import ANONYMOUS, Principal

if TYPE_CHECKING:
    from broker.groups.coordinator import GroupCoordinator
    from broker.node import Broker

from .fetch_sessions import FetchSessionCache

NO_THROTTLE = timedelta(0)


@dataclass
class KafkaContext:
    """Shared by every connection of one listener."""

    broker: Broker
    groups: GroupCoordinator
    host: str  # advertised to clients in Metadata and FindCoordinator
    port: int
    cluster_id: str
    fetch_sessions: FetchSessionCache = field(default_factory=FetchSessionCache)

    @property
    def node_id(self) -> int:
        return self.broker.settings.node_id


@dataclass(frozen=True)
class Call:
    """One request as its handler sees it."""

    api_version: int
    client_id: str
    client_host: str
    response_type: type  # the kio response entity of this API version
    principal: Principal = ANONYMOUS  # who the connection authenticated as


# A handler maps a kio request entity to a kio response entity (None: send no response).
Handler = Callable[[KafkaContext, Call, Any], Coroutine[Any, Any, Any]]
