"""Accepting Kafka connections on the listener's own sockets, not through asyncio's server.

asyncio's accept loop, out of descriptors (EMFILE), logs a traceback for each of up to a
hundred attempts per event loop turn and schedules as many retries: tens of thousands of
lines a minute. Here one descriptor is kept spare: out of descriptors, it is let go for a
moment so the waiting connection can be accepted and closed at once (the client learns
at once instead of hanging in the backlog), and the condition is one log line per
interval with a count. Event loop only.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
from collections.abc import Callable

from hotlog.rate_limited import RateLimitedReport

from .limits import ACCEPT_ERRORS, REFUSED

log = logging.getLogger(__name__)

BACKLOG = 1024
ACCEPTS_PER_TURN = 64  # then other callbacks get the loop
RETRY_SECONDS = 1.0  # when even the spare descriptor cannot help
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)

# (accepted socket, peer address) -> None: the listener takes it from there.
Accepted = Callable[[socket.socket, str], None]


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Non-blocking listening sockets for every address `host` resolves to (as asyncio's
    create_server binds them); raises OSError."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                                   flags=socket.AI_PASSIVE):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Acceptor:
    def __init__(self, sockets: list[socket.socket], accepted: Accepted) -> None:
        self.sockets = sockets
        self._accepted = accepted
        self._spare: int | None = None
        self._report_descriptors = RateLimitedReport(log)
        self._retry: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._keep_spare()
        self._watch()

    def _watch(self) -> None:
        self._retry = None
        self._keep_spare()
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _unwatch(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            loop.remove_reader(sock.fileno())

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                ACCEPT_ERRORS.labels(errno.errorcode.get(exc.errno or 0, str(exc.errno))).inc()
                if exc.errno in _OUT_OF_DESCRIPTORS and self._refuse_with_spare(sock):
                    continue
                self._pause(exc)
                return
            conn.setblocking(False)
            self._accepted(conn, address[0])

    def _refuse_with_spare(self, sock: socket.socket) -> bool:
        """Let the spare descriptor go, accept the waiting connection and close it at once;
        False if that did not work (another thread took the descriptor first)."""
        if self._spare is None:
            return False
        os.close(self._spare)
        self._spare = None
        try:
            conn, address = sock.accept()
        except OSError:
            return False
        finally:
            self._keep_spare()
        conn.close()
        self._keep_spare()
        REFUSED.labels("descriptors").inc()
        self._report_descriptors(f"out of file descriptors (RLIMIT_NOFILE {_nofile()}): closing new Kafka "
                                 f"connections at once, the latest from {address[0]}; raise the limit or "
                                 f"lower max.connections or log.segment.open.files.max")
        return True

    def _keep_spare(self) -> None:
        if self._spare is None:
            try:
                self._spare = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                pass  # every descriptor is taken: the next free one becomes the spare

    def _pause(self, exc: OSError) -> None:
        """The listener stops accepting for a while (the backlog waits), as asyncio does."""
        self._report_descriptors(f"cannot accept Kafka connections: {os.strerror(exc.errno or 0)}; "
                                 f"trying again every {RETRY_SECONDS:.0f} s")
        self._unwatch()
        self._retry = asyncio.get_running_loop().call_later(RETRY_SECONDS, self._watch)

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        else:
            self._unwatch()
        for sock in self.sockets:
            sock.close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None


def _nofile() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
