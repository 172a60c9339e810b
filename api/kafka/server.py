"""The Kafka listener: one event loop for every connection, no thread per client.

Frames are read straight into a receive buffer (grown for large requests) and decoded
where they lie. Requests on a connection run in order, as Kafka runs them, with one
exception: pipelined Produce requests run side by side (each appends before its first
await, so in order), which lets acks=all requests share one fsync. Responses go back in
request order. A frame that is malformed, too large, or of an API or version not in the
table closes its connection; other clients carry on.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..listen import ListenError, parse_host_port, reason
from .apis import APIS, ApiKey, unsupported_api_versions
from .codec import REQUEST_PREFIX, SIZE, RequestDecodeError, decode_request, encode_response, peek_header, response_type
from .context import Call, KafkaContext

if TYPE_CHECKING:
    from broker.node import Broker

log = logging.getLogger(__name__)

RECEIVE_BUFFER = 256 * 1024
MAX_IDLE_BUFFER = 8 * 1024 * 1024  # a receive buffer grown past this shrinks once drained
MIN_FREE = 16 * 1024  # compact the receive buffer when less than this is left at its end
MAX_IN_FLIGHT = 64  # requests queued on one connection before it stops reading
WRITE_SLICE = 256 * 1024


def advertised_endpoint(advertised_listeners: str | None, host: str, port: int) -> tuple[str, int]:
    """The first entry of `advertised.listeners` (NAME://host:port, ...), else the listener."""
    if not advertised_listeners:
        if host in ("0.0.0.0", "::", ""):
            return socket.gethostname(), port
        return host, port
    first = advertised_listeners.split(",")[0].strip()
    _, _, address = first.rpartition("://")
    advertised_host, advertised_port = parse_host_port(address)
    return advertised_host or host, advertised_port


def cluster_id_for(data_dir: str) -> str:
    """A stable cluster id per data folder, in Kafka's form (URL-safe base64 of a UUID)."""
    raw = uuid.uuid5(uuid.NAMESPACE_URL, f"tierlog:{data_dir}").bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(self, listener: KafkaListener) -> None:
        self.listener = listener
        self.kafka = listener.kafka
        self.max_frame = self.kafka.broker.settings.socket_request_max_bytes
        self.transport: asyncio.Transport | None = None
        self.peer_host = ""
        self._buf = bytearray(RECEIVE_BUFFER)
        self._start = 0  # first byte not yet parsed
        self._end = 0  # end of received bytes
        # (correlation id, api key, task) per request, in arrival order.
        self._pending: deque[tuple[int, int, asyncio.Future[Any]]] = deque()
        self._outgoing: deque[memoryview] = deque()  # response bytes not yet given to the transport
        self._reading_paused = False
        self._writing_paused = False
        self._closed = False
        self.last_active = time.monotonic()  # a byte received or a response handed out

    # -- transport callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_host = f"/{peer[0]}" if peer else ""
        self.listener.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.listener.connections.discard(self)
        for _, _, task in self._pending:
            task.cancel()
        self._pending.clear()

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._buf)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        self.last_active = time.monotonic()
        self._end += nbytes
        self._parse_frames()

    def eof_received(self) -> bool:
        return False  # close once the client has closed its side

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._send_outgoing()
        self._update_reading()

    # -- reading ------------------------------------------------------------------------

    def _parse_frames(self) -> None:
        while not self._closed:
            available = self._end - self._start
            if available < SIZE.size:
                break
            (size,) = SIZE.unpack_from(self._buf, self._start)
            if size < REQUEST_PREFIX.size or size > self.max_frame:
                log.warning("closing connection from %s: a request frame of %d bytes (at least %d, at most %d: "
                            "socket.request.max.bytes)", self.peer_host, size, REQUEST_PREFIX.size, self.max_frame)
                self.close()
                return
            if available < SIZE.size + size:
                self._make_room(SIZE.size + size)
                return
            begin = self._start + SIZE.size
            self._start = begin + size
            # Decoded in place: kio copies out what it keeps (read-only: it takes no writable buffer).
            self._dispatch(memoryview(self._buf)[begin : begin + size].toreadonly())
        if self._start == self._end:
            self._start = self._end = 0
            if len(self._buf) > MAX_IDLE_BUFFER:  # a rare huge request: give the memory back
                self._buf = bytearray(RECEIVE_BUFFER)
        elif len(self._buf) - self._end < MIN_FREE:
            self._make_room(0)

    def _make_room(self, frame_bytes: int) -> None:
        """Move the unparsed bytes to the front, into a larger buffer once they fill this one.
        The buffer grows with the bytes received (doubling), not with the size a frame
        declares: a client that announces 100 MB and sends nothing costs one small buffer."""
        available = self._end - self._start
        if frame_bytes > len(self._buf) and available + MIN_FREE > len(self._buf):
            grown = bytearray(min(frame_bytes, max(RECEIVE_BUFFER, 2 * len(self._buf))))
            grown[:available] = self._buf[self._start : self._end]
            self._buf = grown
        elif self._start and (frame_bytes > len(self._buf) - self._start or len(self._buf) - self._end < MIN_FREE):
            self._buf[:available] = self._buf[self._start : self._end]
        else:
            return
        self._start, self._end = 0, available

    def _dispatch(self, frame: bytes | memoryview) -> None:
        loop = asyncio.get_running_loop()
        try:
            api_key, api_version, correlation_id = peek_header(frame)
            api = APIS.get(api_key)
            if api is None or not api.supports(api_version):
                if api_key != ApiKey.API_VERSIONS:
                    log.warning("closing connection from %s: API key %d version %d is not supported",
                                self.peer_host, api_key, api_version)
                    self.close()
                    return
                answered: asyncio.Future[Any] = loop.create_future()
                answered.set_result(unsupported_api_versions())
                self._queue(correlation_id, api_key, answered)
                return
            request = decode_request(frame, api_key, api_version)
        except RequestDecodeError as exc:
            log.warning("closing connection from %s: %s", self.peer_host, exc)
            self.close()
            return
        call = Call(api_version, request.client_id or "", self.peer_host, response_type(api_key, api_version))
        handling = api.handler(self.kafka, call, request.body)
        earlier = [task for _, key, task in self._pending if not task.done()]
        if earlier and not (api_key == ApiKey.PRODUCE and all(key == ApiKey.PRODUCE for _, key, _ in self._pending)):
            handling = self._after(earlier, handling)
        self._queue(correlation_id, api_key, loop.create_task(handling))

    @staticmethod
    async def _after(earlier: list[asyncio.Future[Any]], handling: Coroutine[Any, Any, Any]) -> Any:
        try:
            await asyncio.wait(earlier)
        except asyncio.CancelledError:
            handling.close()
            raise
        return await handling

    def _queue(self, correlation_id: int, api_key: int, task: asyncio.Future[Any]) -> None:
        self._pending.append((correlation_id, api_key, task))
        task.add_done_callback(self._respond)
        self._update_reading()

    def _update_reading(self) -> None:
        if self._closed or self.transport is None:
            return
        pause = self._writing_paused or bool(self._outgoing) or len(self._pending) >= MAX_IN_FLIGHT
        if pause and not self._reading_paused:
            self.transport.pause_reading()
        elif not pause and self._reading_paused:
            self.transport.resume_reading()
        self._reading_paused = pause

    # -- writing ------------------------------------------------------------------------

    def _respond(self, _: asyncio.Future[Any]) -> None:
        """Write every finished response at the head of the queue, in request order."""
        while self._pending and self._pending[0][2].done() and not self._closed:
            correlation_id, api_key, task = self._pending.popleft()
            if task.cancelled():
                continue
            error = task.exception()
            if error is not None:
                log.error("closing connection from %s: API %d failed", self.peer_host, api_key, exc_info=error)
                self.close()
                return
            response = task.result()
            if response is None:  # acks=0 produce
                continue
            self._outgoing.extend(memoryview(chunk) for chunk in encode_response(correlation_id, response))
        self._send_outgoing()
        self._update_reading()

    @property
    def idle(self) -> bool:
        """No request being served and no response waiting to go out."""
        return not self._pending and not self._outgoing

    def _send_outgoing(self) -> None:
        """Hand response bytes to the transport a slice at a time while it keeps up.

        The transport copies what the socket does not take at once into its buffer and
        shifts that buffer after each send; fed whole multi-MiB fetch responses it would
        copy them again and again, fed slices it copies at most one slice."""
        self.last_active = time.monotonic()
        while self._outgoing and not self._writing_paused and not self._closed:
            head = self._outgoing[0]
            if len(head) <= WRITE_SLICE:
                self._outgoing.popleft()
            else:
                self._outgoing[0] = head[WRITE_SLICE:]
                head = head[:WRITE_SLICE]
            assert self.transport is not None
            self.transport.write(head)

    def close(self) -> None:
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()


class KafkaListener:
    """Bind first (a busy port fails before the log opens), then serve."""

    def __init__(self, broker: Broker, address: str) -> None:
        self.broker = broker
        self.address = address
        self.connections: set[KafkaConnection] = set()
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.Task[None] | None = None
        # The advertised endpoint is known once the port is bound.
        self.kafka = KafkaContext(broker, broker.groups, "", 0, cluster_id_for(broker.logs.data_dir))

    async def bind(self) -> None:
        host, port = parse_host_port(self.address)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self._connection, host, port, reuse_address=True,
                                                    start_serving=False)
        except OSError as exc:
            raise ListenError(f"the Kafka listener cannot listen on {self.address}: {reason(exc)}") from None
        bound_port = self._server.sockets[0].getsockname()[1]
        self.kafka.host, self.kafka.port = advertised_endpoint(self.broker.settings.advertised_listeners,
                                                               host, bound_port)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        assert self._server is not None, "bind() first"
        await self._server.start_serving()
        self._reaper = asyncio.create_task(self._reap_idle(self.broker.settings.connections_max_idle_ms / 1000))
        log.info("Kafka protocol on %s (advertised as %s:%d)", self.address, self.kafka.host, self.kafka.port)

    async def _reap_idle(self, max_idle_s: float) -> None:
        """Close connections idle past connections.max.idle.ms (as Kafka does), so idle
        sockets do not pile up; a long-polling fetch is not idle."""
        while True:
            await asyncio.sleep(min(max_idle_s / 4, 10.0))
            cutoff = time.monotonic() - max_idle_s
            for connection in [c for c in self.connections if c.idle and c.last_active < cutoff]:
                log.info("closing connection from %s: idle past connections.max.idle.ms", connection.peer_host)
                connection.close()

    def _connection(self) -> KafkaConnection:
        return KafkaConnection(self)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.connections):
            connection.close()
        await self._server.wait_closed()
        self._server = None

