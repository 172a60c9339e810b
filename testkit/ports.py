"""Free loopback ports for the servers tests and benchmarks start.

A port the kernel hands out for binding port 0 comes from the ephemeral range, which it
also hands to outgoing connections: between the moment a port is found free and the moment
the server binds it, a client's connection (kcat, a gRPC channel) may take it as its own
local port, and the server fails with "Address already in use". Ports below that range are
never handed to connections, so they are picked there, at random, and checked by binding."""

from __future__ import annotations

import random
import socket

_LOWEST = 10_000  # above the well-known and registered ports servers on this machine use


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the caller binds it soon after)."""
    top = _ephemeral_start()
    for _ in range(200):
        port = random.randrange(_LOWEST, top) if top > _LOWEST + 100 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    with socket.socket() as s:  # nothing free below the range: the kernel's pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
