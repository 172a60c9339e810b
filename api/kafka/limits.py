"""The Kafka listener's bounds on what clients may hold: connections (in all and per
address), memory of requests being read or waiting, and the time a started frame may take.

Kafka's names where Kafka has the setting (`max.connections`, `max.connections.per.ip`,
`max.connections.per.ip.overrides`, `queued.max.request.bytes`); the read deadline is
tierlog's own (`socket.request.read.timeout.ms`, `socket.request.read.min.bytes.per.second`).
Event loop only.
"""

from __future__ import annotations

import resource
import socket
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    from broker.settings import BrokerSettings

CONNECTIONS = Gauge("tierlog_kafka_connections", "Kafka connections open")
REFUSED = Counter("tierlog_kafka_connections_refused_total",
                  "Kafka connections closed at once, by the bound they met", ["reason"])
ACCEPT_ERRORS = Counter("tierlog_kafka_accept_errors_total",
                        "Kafka connections the listener could not accept, by errno (EMFILE: out of descriptors)",
                        ["errno"])
QUEUED_BYTES = Gauge("tierlog_kafka_queued_request_bytes",
                     "Memory held by Kafka requests being read or waiting (queued.max.request.bytes counts it)")
TLS_HANDSHAKE_FAILURES = Counter("tierlog_kafka_tls_handshake_failures_total",
                                 "TLS handshakes on Kafka listeners that failed or timed out", ["listener"])
READ_TIMEOUTS = Counter("tierlog_kafka_request_read_timeouts_total",
                        "Kafka connections closed because a started request frame was not complete in time")

# What a connection's descriptor leaves for the rest: a quarter of RLIMIT_NOFILE goes to
# Kafka connections, half to segment files (log.segment.open.files.max), the last quarter
# to indexes, snapshots, gRPC and HTTP clients and the object store's connections.
_CONNECTION_SHARE = 4
_MIN_CONNECTIONS = 16
# A decoded array element (a kio entity and its name string) as measured on Metadata
# topics: 48 bytes with a shared one-letter name, 111 with a distinct 14-character one.
DECODED_BYTES_PER_ELEMENT = 112


def default_max_connections() -> int:
    """A quarter of the soft RLIMIT_NOFILE (at least 16): accepting past it would leave the
    broker without descriptors for its files."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(_MIN_CONNECTIONS, soft // _CONNECTION_SHARE)


@dataclass(frozen=True)
class ReadDeadline:
    """A started frame must be complete within `base_s` plus its size at `min_rate` bytes
    per second: an honest slow client on a large frame gets time, a trickle does not."""

    base_s: float
    min_rate: int

    def seconds_for(self, frame_bytes: int) -> float:
        return self.base_s + frame_bytes / self.min_rate


class ConnectionQuotas:
    """Counts connections in all and per client address; `admit` says which bound a new one
    would pass (None: it may stay). Overrides name hosts or addresses (resolved once)."""

    def __init__(self, max_connections: int, max_per_ip: int, overrides: Mapping[str, int]) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.overrides = {address: limit for host, limit in overrides.items() for address in _addresses(host)}
        self.total = 0
        self._per_ip: dict[str, int] = {}

    def admit(self, address: str) -> str | None:
        if self.total >= self.max_connections:
            return "max.connections"
        if self._per_ip.get(address, 0) >= self.overrides.get(address, self.max_per_ip):
            return "max.connections.per.ip"
        self.total += 1
        self._per_ip[address] = self._per_ip.get(address, 0) + 1
        CONNECTIONS.set(self.total)
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        left = self._per_ip[address] - 1
        if left:
            self._per_ip[address] = left
        else:
            del self._per_ip[address]
        CONNECTIONS.set(self.total)


def _addresses(host: str) -> set[str]:
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except socket.gaierror:
        return {host}  # a name that does not resolve: kept as given, it matches nothing


class MemoryPool:
    """`queued.max.request.bytes`: bytes held by frames being read (a frame's whole size once
    it needs more than a connection's own buffer) and by requests until they are answered.

    A hold is granted while it fits, first come first served: a waiter at the head is not
    passed by later ones, so a large frame is not starved by small ones. `capacity` None: no
    bound (Kafka's -1)."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[tuple[int, Callable[[], None]]] = deque()

    def fits(self, nbytes: int) -> bool:
        """Whether `nbytes` could ever be held (a request decoding to more is refused)."""
        return self.capacity is None or nbytes <= self.capacity

    def hold(self, nbytes: int, granted: Callable[[], None]) -> bool:
        """Hold `nbytes` now (True), or queue and call `granted` once they are held (False)."""
        if not self._waiters and self._room_for(nbytes):
            self.take(nbytes)
            return True
        self._waiters.append((nbytes, granted))
        return False

    def take(self, nbytes: int) -> None:
        """Hold `nbytes` whatever the pool holds already (the caller bounds how often)."""
        self.used += nbytes
        QUEUED_BYTES.set(self.used)

    def cancel(self, granted: Callable[[], None]) -> None:
        """Forget a waiter that went away before its turn."""
        self._waiters = deque(w for w in self._waiters if w[1] != granted)  # bound methods: equal, not identical
        self._grant_waiters()

    def release(self, nbytes: int) -> None:
        self.used -= nbytes
        QUEUED_BYTES.set(self.used)
        self._grant_waiters()

    def _room_for(self, nbytes: int) -> bool:
        return self.capacity is None or self.used + nbytes <= self.capacity

    def _grant_waiters(self) -> None:
        while self._waiters and self._room_for(self._waiters[0][0]):
            nbytes, granted = self._waiters.popleft()
            self.take(nbytes)
            granted()


@dataclass(frozen=True)
class ClientBounds:
    """The listener's bounds, from the broker properties."""

    quotas: ConnectionQuotas
    pool: MemoryPool
    deadline: ReadDeadline

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> ClientBounds:
        max_connections = settings.max_connections or default_max_connections()
        queued = settings.queued_max_request_bytes
        return cls(
            ConnectionQuotas(max_connections, settings.max_connections_per_ip or max_connections,
                             settings.max_connections_per_ip_overrides),
            MemoryPool(queued if queued > 0 else None),
            ReadDeadline(settings.socket_request_read_timeout_ms / 1000,
                         settings.socket_request_read_min_bytes_per_second),
        )
