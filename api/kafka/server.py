"""The Kafka listener: one event loop for every connection, no thread per client.

Frames are read straight into a receive buffer (grown for large requests) and decoded
where they lie. Requests on a connection run in order, as Kafka runs them, with one
exception: pipelined Produce requests run side by side (each appends as it is read, so
in order), which lets acks=all requests share one fsync. Responses go back in
request order. A frame that is malformed, too large, or of an API or version not in the
table closes its connection; other clients carry on.

What a client may hold is bounded (limits.py): connections in all and per address, memory
of frames being read and requests waiting, the time a started frame may take, and one
response at a time waiting for a client that does not read (as Kafka mutes a connection
until its response is sent). Requests of many elements are decoded off the loop
(offload.py).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import struct
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NamedTuple

from broker.metrics import labelled
from broker.security.principal import ANONYMOUS, Principal
from hotlog.rate_limited import RateLimitedReport
from hotlog.segment import FileSlice

from ..listen import ListenerConfig, ListenError, reason
from ..metrics import REQUESTS
from ..tls import ClientAuth, ServerTls, principal_of_certificate
from .acceptor import Acceptor, bind_sockets
from .apis import APIS, ApiKey, api_name, unsupported_api_versions
from .codec import REQUEST_PREFIX, SIZE, RequestDecodeError, decode_request, encode_response, peek_header, response_type
from .context import Call, KafkaContext
from .file_send import FileSend, SegmentGoneError
from .guard import ManyElements
from .limits import READ_TIMEOUTS, REFUSED, TLS_HANDSHAKE_FAILURES, ClientBounds, ReadDeadline
from .offload import INLINE_ELEMENTS, EncodedResponse, HeavyRequest, Offload
from .produce import start_produce
from .produce_frame import decode_produce
from .sasl import SaslConfig, SaslSession

if TYPE_CHECKING:
    from broker.node import Broker

log = logging.getLogger(__name__)

RECEIVE_BUFFER = 16 * 1024  # a new connection's, grown by doubling for larger frames: an idle one costs this
POOLED_FRAME = 256 * 1024  # frames larger than this hold memory of the pool (queued.max.request.bytes)
MAX_IDLE_BUFFER = 8 * 1024 * 1024  # a receive buffer grown past this shrinks once drained
MIN_FREE = 4 * 1024  # compact the receive buffer when less than this is left at its end
MAX_IN_FLIGHT = 64  # requests queued on one connection before it stops reading
WRITE_SLICE = 256 * 1024
ROOM_PROBE = 16 * 1024  # sent through the transport when a sendfile fills the socket, to learn when it drains
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection
_SASL_APIS = (ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE)
_report_unauthenticated = RateLimitedReport(log, logging.INFO)


def advertised_endpoint(config: ListenerConfig, bound_port: int) -> tuple[str, int]:
    """The listener's entry of `advertised.listeners`, else its own address (this host's name
    for one bound to every interface)."""
    host, port = config.advertised or (config.host, bound_port)
    return (socket.gethostname() if host in ("0.0.0.0", "::", "") else host), port


def cluster_id_for(data_dir: str) -> str:
    """A stable cluster id per data folder, in Kafka's form (URL-safe base64 of a UUID)."""
    raw = uuid.uuid5(uuid.NAMESPACE_URL, f"tierlog:{data_dir}").bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# What answers a request: a coroutine to run as a task, or a future already done (a
# Produce's without acks=all, answered as it was appended).
Handling = Coroutine[Any, Any, Any] | asyncio.Future[Any]


class _Pending(NamedTuple):
    correlation_id: int
    api_key: int
    task: asyncio.Future[Any]
    appended: bool  # a Produce appended as it was read: what follows it may run beside it


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(self, listener: KafkaListener, address: str) -> None:
        self.listener = listener
        self.kafka = listener.kafka
        self.pool = listener.bounds.pool
        self.max_frame = self.kafka.broker.settings.socket_request_max_bytes
        self.transport: asyncio.Transport | None = None
        self.address = address
        self.peer_host = f"/{address}"
        self.listener_name = listener.name
        self.principal: Principal = ANONYMOUS
        # SASL listeners: unauthenticated until the session says who, with small frames till then.
        self.sasl = SaslSession(SaslConfig.of_listener(self.kafka.broker.settings, listener.name),
                                self.kafka.broker.users, self.peer_host) if listener.config.protocol.startswith("SASL_") else None
        if self.sasl is not None:
            self.max_frame = min(self.max_frame, self.sasl.config.max_receive_size)
        self._authentication_deadline: asyncio.TimerHandle | None = None
        self._buf = bytearray(RECEIVE_BUFFER)
        self._start = 0  # first byte not yet parsed
        self._end = 0  # end of received bytes
        self._pending: deque[_Pending] = deque()  # in arrival order
        self._outgoing: deque[memoryview | FileSend] = deque()  # response bytes not yet given to the transport
        self._socket_fd: int | None = None  # a plain TCP connection's: fetched batches go by sendfile
        self._written: asyncio.Future[None] | None = None  # resolved once _outgoing is all written
        self._reading_paused = False
        self._writing_paused = False
        self._closed = False
        self._counted = True  # in the listener's connection quotas
        self._frame_hold = 0  # bytes of the pool held for the frame being read
        self._awaiting_memory = 0  # bytes of the pool this connection waits for, not reading
        self.frame_started: float | None = None  # when the frame being read began (read deadline)
        self.last_active = time.monotonic()  # a byte received or a response handed out

    # -- transport callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.principal = self.listener.certificate_principal(transport)  # SSL listeners with client auth
        sock = transport.get_extra_info("socket")
        if sock is not None and transport.get_extra_info("sslcontext") is None:
            self._socket_fd = sock.fileno()
            # Paused whenever the transport holds a byte, resumed once it holds none: a
            # sendfile may only start when nothing written before it is still waiting.
            transport.set_write_buffer_limits(high=0)
        self.listener.connections.add(self)
        if self.sasl is not None:
            self._authentication_deadline = asyncio.get_running_loop().call_later(
                self.sasl.config.timeout_s, self._authentication_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._authentication_deadline is not None:
            self._authentication_deadline.cancel()
        self.listener.connections.discard(self)
        self.release_quota()
        if self._awaiting_memory:
            self.pool.cancel(self._memory_granted)
        if self._frame_hold:
            self.pool.release(self._frame_hold)
        self._awaiting_memory = self._frame_hold = 0
        for pending in self._pending:
            pending.task.cancel()
        self._pending.clear()
        self._outgoing.clear()  # unpins the segment files of fetched batches not sent

    def release_quota(self) -> None:
        if self._counted:
            self._counted = False
            self.listener.bounds.quotas.release(self.address)

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
        dispatched = False
        while not self._closed:
            available = self._end - self._start
            if available < SIZE.size:
                break
            (size,) = SIZE.unpack_from(self._buf, self._start)
            shortest = 0 if self.sasl is not None and self.sasl.raw_tokens else REQUEST_PREFIX.size  # a bare token
            if size < shortest or size > self.max_frame:
                bound = "sasl.server.max.receive.size before authentication" \
                    if self.sasl is not None and not self.sasl.authenticated else "socket.request.max.bytes"
                log.warning("closing connection from %s: a request frame of %d bytes (at least %d, at most %d: %s)",
                            self.peer_host, size, shortest, self.max_frame, bound)
                self.close()
                return
            frame_bytes = SIZE.size + size
            if available < frame_bytes:
                if frame_bytes > POOLED_FRAME and not self._frame_hold:
                    if not self.pool.hold(frame_bytes, self._memory_granted):
                        self._awaiting_memory = frame_bytes
                        self.frame_started = None  # its clock starts once the memory is there
                        self._update_reading()
                        return
                    self._frame_hold = frame_bytes
                self._make_room(frame_bytes)
                break
            begin = self._start + SIZE.size
            self._start = begin + size
            # Decoded in place: kio copies out what it keeps (read-only: it takes no writable buffer).
            self._dispatch(memoryview(self._buf)[begin : begin + size].toreadonly())
            dispatched = True
        if self._start == self._end:
            self.frame_started = None
            self._start = self._end = 0
            if len(self._buf) > MAX_IDLE_BUFFER:  # a rare huge request: give the memory back
                self._buf = bytearray(RECEIVE_BUFFER)
            return
        if dispatched or self.frame_started is None:
            self.frame_started = self.last_active
        if len(self._buf) - self._end < MIN_FREE:
            self._make_room(0)

    def _memory_granted(self) -> None:
        """The pool holds the frame's bytes now: read on, and start its clock."""
        self._frame_hold, self._awaiting_memory = self._awaiting_memory, 0
        self.frame_started = time.monotonic()
        self._make_room(self._frame_hold)
        self._update_reading()

    def overdue_frame(self, now: float, deadline: ReadDeadline) -> str | None:
        """What is late, if the frame being read has been reading too long."""
        if self.frame_started is None:
            return None
        received = self._end - self._start
        size = SIZE.size + SIZE.unpack_from(self._buf, self._start)[0] if received >= SIZE.size else 0
        if now - self.frame_started <= deadline.seconds_for(size):
            return None
        return f"{received} of {size or 'at least 4'} bytes after {now - self.frame_started:.1f} s"

    def _make_room(self, frame_bytes: int) -> None:
        """Move the unparsed bytes to the front, into a larger buffer once they fill this one.
        The buffer grows with the bytes received (doubling), not with the size a frame
        declares: a client that announces 100 MB and sends nothing costs one small buffer."""
        available = self._end - self._start
        if frame_bytes > len(self._buf) and available + MIN_FREE > len(self._buf):
            grown = bytearray(min(frame_bytes, 2 * len(self._buf)))
            grown[:available] = self._buf[self._start : self._end]
            self._buf = grown
        elif self._start and (frame_bytes > len(self._buf) - self._start or len(self._buf) - self._end < MIN_FREE):
            self._buf[:available] = self._buf[self._start : self._end]
        else:
            return
        self._start, self._end = 0, available

    def _dispatch(self, frame: memoryview) -> None:
        loop = asyncio.get_running_loop()
        handling: Handling
        if self.sasl is not None and self.sasl.raw_tokens:  # no header: a bare token after SaslHandshake v0
            handling = self._authenticated_by(self.sasl.raw_token(bytes(frame)))
            self._queue(-1, ApiKey.SASL_AUTHENTICATE, loop.create_task(self._after(
                [p.task for p in self._pending if not p.task.done()], handling)))
            return
        try:
            api_key, api_version, correlation_id = peek_header(frame)
            api = APIS.get(api_key)
            refused = self._sasl_refuses(api_key)
            if refused is not None:
                log.info("closing connection from %s: %s", self.peer_host, refused)
                self.close()
                return
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
            # A Produce with nothing before it left to append appends now, while its frame is
            # in the receive buffer (its records are appended from there, uncopied), and runs
            # beside the requests before it; any other request waits for them.
            now = api_key == ApiKey.PRODUCE and all(p.appended or p.task.done() for p in self._pending)
            try:
                if now:  # it checks every length itself, in less Python than the guard and kio
                    request = decode_produce(frame, api_version, INLINE_ELEMENTS)
                else:
                    request = decode_request(frame, api_key, api_version, INLINE_ELEMENTS)
            except ManyElements:
                heavy = HeavyRequest(bytes(frame), api_key, api_version, correlation_id, self._frame_hold)
                handling = self.listener.offload.serve(api, heavy, self.peer_host, self.principal)
                now = False
            else:
                call = Call(api_version, request.client_id or "", self.peer_host, response_type(api_key, api_version),
                            self.principal)
                if now:
                    handling = self._produce_now(call, request.body)
                else:
                    handling = self._authenticating(api_key, call, request.body) or \
                        api.handler(self.kafka, call, request.body)
        except RequestDecodeError as exc:
            log.warning("closing connection from %s: %s", self.peer_host, exc)
            self.close()
            return
        earlier = [p.task for p in self._pending if not p.task.done()]
        if (earlier or self._outgoing or self._writing_paused) and not now:
            handling = self._after(earlier, handling)
        task = handling if isinstance(handling, asyncio.Future) else loop.create_task(handling)
        self._queue(correlation_id, api_key, task, appended=now)

    def _produce_now(self, call: Call, request: Any) -> Handling:
        try:
            return start_produce(self.kafka, call, request)
        except Exception as exc:  # the connection closes, as on any handler's failure
            return _raise(exc)

    def _sasl_refuses(self, api_key: int) -> str | None:
        """Why a SASL connection may not send this request now, as Kafka closes it."""
        if self.sasl is None or api_key in _SASL_APIS:
            return None
        if not self.sasl.authenticated and api_key != ApiKey.API_VERSIONS:
            return f"{api_name(api_key)} before SASL authentication (only ApiVersions, SaslHandshake, SaslAuthenticate)"
        if self.sasl.expired(time.monotonic()):
            return f"{api_name(api_key)} after the SASL session expired (connections.max.reauth.ms)"
        return None

    def _authenticating(self, api_key: int, call: Call, request: Any) -> Coroutine[Any, Any, Any] | None:
        """The connection's SASL session answers its SASL requests while it authenticates
        (or re-authenticates); past that, the table's handlers do, as Kafka's KafkaApis."""
        sasl = self.sasl
        if sasl is None or api_key not in _SASL_APIS or (sasl.authenticated and not sasl.config.reauth_ms):
            return None
        step = sasl.handshake if api_key == ApiKey.SASL_HANDSHAKE else sasl.authenticate
        return self._authenticated_by(step(self.kafka, call, request))

    async def _authenticated_by(self, step: Coroutine[Any, Any, Any]) -> Any:
        """Run a SASL step; once it authenticates, the connection is its principal's."""
        response = await step
        assert self.sasl is not None
        if self.sasl.principal is not None and self.principal != self.sasl.principal:
            self.principal = self.sasl.principal
            self.max_frame = self.kafka.broker.settings.socket_request_max_bytes
            if self._authentication_deadline is not None:
                self._authentication_deadline.cancel()
        return response

    def _authentication_overdue(self) -> None:
        if self.sasl is not None and not self.sasl.authenticated and not self._closed:
            _report_unauthenticated(f"closing connection from {self.peer_host}: not authenticated within "
                                    f"sasl.server.authn.timeout.ms ({self.sasl.config.timeout_s * 1000:.0f} ms)")
            self.abort()

    async def _after(self, earlier: list[asyncio.Future[Any]], handling: Handling) -> Any:
        """Run `handling` once the requests before it are answered and their responses
        written: a client that does not read holds one response, not one per request."""
        try:
            if earlier:
                await asyncio.wait(earlier)
            while self._outgoing or self._writing_paused:
                if self._written is None:
                    self._written = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._written)
        except asyncio.CancelledError:
            if not isinstance(handling, asyncio.Future):
                handling.close()
            raise
        return await handling

    def _queue(self, correlation_id: int, api_key: int, task: asyncio.Future[Any], *, appended: bool = False) -> None:
        self._pending.append(_Pending(correlation_id, api_key, task, appended))
        if self._frame_hold:  # the pool holds the frame until its request is answered
            held, self._frame_hold = self._frame_hold, 0
            task.add_done_callback(lambda _: self.pool.release(held))
        task.add_done_callback(self._respond)
        self._update_reading()

    def _update_reading(self) -> None:
        if self._closed or self.transport is None:
            return
        pause = self._writing_paused or bool(self._outgoing) or len(self._pending) >= MAX_IN_FLIGHT or \
            bool(self._awaiting_memory)
        if pause and not self._reading_paused:
            self.transport.pause_reading()
        elif not pause and self._reading_paused:
            self.transport.resume_reading()
        self._reading_paused = pause

    # -- writing ------------------------------------------------------------------------

    def _respond(self, _: asyncio.Future[Any]) -> None:
        """Write every finished response at the head of the queue, in request order."""
        while self._pending and self._pending[0].task.done() and not self._closed:
            correlation_id, api_key, task, _appended = self._pending.popleft()
            if task.cancelled():
                continue
            error = task.exception()
            labelled(REQUESTS, "kafka", api_name(api_key), "ok" if error is None else "failed").inc()
            if isinstance(error, RequestDecodeError):  # found off the loop, in a request of many elements
                log.warning("closing connection from %s: %s", self.peer_host, error)
                self.close()
                return
            if error is not None:
                log.error("closing connection from %s: API %d failed", self.peer_host, api_key, exc_info=error)
                self.close()
                return
            response = task.result()
            if response is None:  # acks=0 produce
                continue
            try:
                chunks = response.chunks if isinstance(response, EncodedResponse) else \
                    encode_response(correlation_id, response)
            except Exception:  # a response this broker cannot encode: the client must not wait on it
                log.error("closing connection from %s: API %d's response failed to encode", self.peer_host, api_key,
                          exc_info=True)
                self.close()
                return
            self._outgoing.extend(FileSend(chunk) if isinstance(chunk, FileSlice) else memoryview(chunk)
                                  for chunk in chunks)
        self._send_outgoing()
        self._update_reading()

    @property
    def idle(self) -> bool:
        """Not serving: no request in flight, or a response its client does not read (a long
        poll is not idle; bytes moving keep `last_active` fresh)."""
        return not self._pending or bool(self._outgoing) or self._writing_paused

    def _send_outgoing(self) -> None:
        """Hand response bytes to the transport a slice at a time while it keeps up.

        The transport copies what the socket does not take at once into its buffer and
        shifts that buffer after each send; fed whole multi-MiB fetch responses it would
        copy them again and again, fed slices it copies at most one slice."""
        self.last_active = time.monotonic()
        while self._outgoing and not self._writing_paused and not self._closed:
            head = self._outgoing[0]
            assert self.transport is not None
            if isinstance(head, FileSend):
                try:
                    self._send_file(head)
                except OSError as exc:  # the response is cut short: the client must not wait on it
                    if isinstance(exc, SegmentGoneError):
                        log.info("closing connection from %s: %s", self.peer_host, exc)
                    elif head.piece.checks.unsendable:
                        log.error("closing connection from %s: %s could not be sent: %s", self.peer_host,
                                  head.piece.segment.log_path, reason(exc))
                    self.abort()
                    return
                continue
            if len(head) <= WRITE_SLICE:
                self._outgoing.popleft()
            else:
                self._outgoing[0] = head[WRITE_SLICE:]
                head = head[:WRITE_SLICE]
            self.transport.write(head)
        if self._written is not None and not self._outgoing and not self._writing_paused:
            self._written.set_result(None)
            self._written = None
        if self.sasl is not None and self.sasl.failed and not self._outgoing:  # its answer given, as Kafka
            self.close()

    def _send_file(self, head: FileSend) -> None:
        """Send fetched batches: by sendfile on a plain socket (the transport holds nothing
        then: it is not paused), and once the socket is full, a small piece through the
        transport, which buffers it and pauses writing until the socket has room again.
        Over TLS, a slice at a time through the transport."""
        assert self.transport is not None
        if self._socket_fd is not None:
            head.sendfile(self._socket_fd)
            if head.left:
                self.transport.write(head.take(ROOM_PROBE))
        else:
            self.transport.write(head.take(WRITE_SLICE))
        if not head.left:
            self._outgoing.popleft()

    def close(self) -> None:
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()

    def abort(self) -> None:
        """Close now, dropping what the client has not read: close() would wait for it, and
        the kernel would go on sending its socket buffer (MiBs) at the client's pace."""
        if self.transport is not None:
            self._closed = True
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
            self.transport.abort()


class KafkaListener:
    """One entry of `listeners`. Bind first (a busy port fails before the log opens), then
    serve. `bounds` are the broker's, shared by its listeners; `tls`: an SSL or SASL_SSL
    listener's certificates."""

    def __init__(self, broker: Broker, config: ListenerConfig, bounds: ClientBounds,
                 tls: ServerTls | None = None) -> None:
        self.broker = broker
        self.config = config
        self.name = config.name
        self.address = config.address
        self.tls = tls
        self.connections: set[KafkaConnection] = set()
        self.bounds = bounds
        self._acceptor: Acceptor | None = None
        self._setting_up: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._report_refused = RateLimitedReport(log, logging.INFO)
        self._report_idle = RateLimitedReport(log, logging.INFO)
        self._report_overdue = RateLimitedReport(log)
        self._report_handshake = RateLimitedReport(log, logging.INFO)
        # The advertised endpoint is known once the port is bound.
        self.kafka = KafkaContext(broker, broker.groups, "", 0, cluster_id_for(broker.logs.data_dir))
        self.offload = Offload(self.kafka, self.bounds.pool)

    async def bind(self) -> None:
        try:
            self._acceptor = Acceptor(bind_sockets(self.config.host, self.config.port), self._accepted)
        except OSError as exc:
            raise ListenError(f"the Kafka listener {self.name} cannot listen on {self.address}: "
                              f"{reason(exc)}") from None
        self.kafka.host, self.kafka.port = advertised_endpoint(self.config, self.port)

    @property
    def port(self) -> int:
        assert self._acceptor is not None, "bind() first"
        return int(self._acceptor.sockets[0].getsockname()[1])

    async def start(self) -> None:
        assert self._acceptor is not None, "bind() first"
        self._acceptor.start()
        self._sweeper = asyncio.create_task(self._sweep())
        log.info("Kafka listener %s (%s) on %s, advertised as %s:%d, at most %d connections (all listeners)",
                 self.name, self.config.protocol, self.address, self.kafka.host, self.kafka.port,
                 self.bounds.quotas.max_connections)

    def _accepted(self, sock: socket.socket, address: str) -> None:
        quotas = self.bounds.quotas
        refused = quotas.admit(address)
        if refused is not None:
            sock.close()
            REFUSED.labels(refused).inc()
            self._report_refused(f"closed a new Kafka connection from /{address} at once: {refused} reached "
                                 f"({quotas.total} open)")
            return
        setting_up = asyncio.create_task(self._set_up(sock, KafkaConnection(self, address)))
        self._setting_up.add(setting_up)
        setting_up.add_done_callback(self._setting_up.discard)

    async def _set_up(self, sock: socket.socket, connection: KafkaConnection) -> None:
        """The TLS handshake, if any, is part of it: bounded by ssl.handshake.timeout.ms and
        holding its place in the connection quotas until it ends."""
        context = self.tls.context() if self.tls is not None else None
        timeout = self.broker.settings.ssl_handshake_timeout_ms / 1000 if context is not None else None
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: connection, sock, ssl=context,
                                                                     ssl_handshake_timeout=timeout)
        except (OSError, asyncio.CancelledError) as exc:
            sock.close()
            connection.release_quota()
            if isinstance(exc, OSError) and context is not None:
                TLS_HANDSHAKE_FAILURES.labels(self.name).inc()
                self._report_handshake(f"TLS handshake with {connection.peer_host} on listener {self.name} failed: "
                                       f"{exc}")
            elif isinstance(exc, OSError):
                log.warning("could not set up a Kafka connection from %s: %s", connection.peer_host, reason(exc))

    def certificate_principal(self, transport: asyncio.BaseTransport) -> Principal:
        """On an SSL listener that asks for client certificates, the verified certificate's
        subject (Kafka's DEFAULT mapping); else ANONYMOUS (SASL_SSL: SASL says who)."""
        if self.config.protocol != "SSL" or self.tls is None or self.tls.client_auth is ClientAuth.NONE:
            return ANONYMOUS
        ssl_object = transport.get_extra_info("ssl_object")
        return principal_of_certificate(ssl_object.getpeercert(binary_form=True)) or ANONYMOUS

    async def _sweep(self) -> None:
        """Close connections idle past connections.max.idle.ms (as Kafka does), so idle
        sockets do not pile up (a long-polling fetch is not idle), and those whose started
        frame is past its read deadline."""
        max_idle_s = self.broker.settings.connections_max_idle_ms / 1000
        deadline = self.bounds.deadline
        while True:
            await asyncio.sleep(min(max_idle_s / 4, deadline.base_s / 4, 1.0))
            now = time.monotonic()
            cutoff = now - max_idle_s
            for connection in list(self.connections):
                overdue = connection.overdue_frame(now, deadline)
                if overdue is not None:
                    READ_TIMEOUTS.inc()
                    self._report_overdue(f"closing connection from {connection.peer_host}: a request frame still "
                                         f"incomplete, {overdue} (socket.request.read.timeout.ms, "
                                         f"socket.request.read.min.bytes.per.second)")
                    connection.abort()
                elif connection.idle and connection.last_active < cutoff:
                    self._report_idle(f"closing connection from {connection.peer_host}: idle past "
                                      f"connections.max.idle.ms")
                    connection.abort()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        if self._acceptor is None:
            return
        self._acceptor.close()
        self._acceptor = None
        for setting_up in list(self._setting_up):
            setting_up.cancel()
        for connection in list(self.connections):
            connection.close()
        self.offload.close()


async def _raise(exc: Exception) -> Any:
    raise exc
