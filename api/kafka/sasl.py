"""SASL on a Kafka connection: SaslHandshake then SaslAuthenticate rounds (or, after a v0
handshake, bare tokens), as Kafka's SaslServerAuthenticator.

A connection on a SASL listener starts unauthenticated: it may send ApiVersions and the
SASL requests only (anything else closes it), in frames of at most
`sasl.server.max.receive.size`, and must authenticate within
`sasl.server.authn.timeout.ms`. A failed authentication is answered
SASL_AUTHENTICATION_FAILED after `connection.failed.authentication.delay.ms` and the
connection closed, with the same message for an unknown user and a wrong password.

With `connections.max.reauth.ms` above 0 (KIP-368), SaslAuthenticate answers it as the
session lifetime; the client re-authenticates (as the same user) on the same connection
before it runs out, and a connection past it is closed on its next other request."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

from kio.schema.errors import ErrorCode
from prometheus_client import Counter

from broker.security.principal import USER, Principal
from broker.security.scram import MECHANISMS, ScramExchange, ScramFailed
from broker.security.users import PLAIN, UserStore
from broker.settings import BrokerSettings
from hotlog.rate_limited import RateLimitedReport

from .codec import SIZE, build
from .context import Call, KafkaContext
from .offload import EncodedResponse

AUTHENTICATIONS = Counter("tierlog_kafka_authentications_total",
                          "SASL authentications that succeeded on Kafka listeners, by mechanism", ["mechanism"])
AUTHENTICATION_FAILURES = Counter(
    "tierlog_kafka_authentication_failures_total",
    "SASL authentications that failed on Kafka listeners, by mechanism ('unsupported': a mechanism not enabled)",
    ["mechanism"])

_report_failure = RateLimitedReport(logging.getLogger(__name__), logging.INFO)
# Kafka's words for every failed credential: nothing tells an unknown user from a wrong password.
_FAILED = "Authentication failed during authentication due to invalid credentials with SASL mechanism {}"


@dataclass(frozen=True)
class SaslConfig:
    """One listener's SASL settings."""

    mechanisms: tuple[str, ...]
    reauth_ms: int  # connections.max.reauth.ms: 0, no re-authentication
    max_receive_size: int  # the largest frame before authentication
    timeout_s: float  # to authenticate in, from the connection's start
    failure_delay_s: float

    @classmethod
    def of_listener(cls, settings: BrokerSettings, listener_name: str) -> SaslConfig:
        return cls(settings.sasl_mechanisms_of(listener_name), settings.connections_max_reauth_ms,
                   settings.sasl_server_max_receive_size, settings.sasl_server_authn_timeout_ms / 1000,
                   settings.connection_failed_authentication_delay_ms / 1000)


class AuthenticationFailed(Exception):
    """Bad credentials or a malformed message: the client learns only that it failed."""


class _Step(NamedTuple):
    """One SASL round's outcome, whichever way the token came."""

    error: ErrorCode
    message: str | None
    token: bytes = b""
    lifetime_ms: int = 0


# One round of a mechanism: the client's token in, the server's token out, and who the
# client is once the last round verified it (None before).
_Round = Callable[[bytes], Awaitable[tuple[bytes, Principal | None]]]


class _Stage(enum.Enum):
    HANDSHAKE = "expecting SaslHandshake"
    AUTHENTICATE = "expecting SaslAuthenticate"
    DONE = "authenticated"
    FAILED = "failed"


class SaslSession:
    """One connection's authentication. Event loop only; its requests run one at a time
    (the connection runs a request after those before it are answered)."""

    def __init__(self, config: SaslConfig, users: UserStore, peer: str) -> None:
        self.config = config
        self.peer = peer
        self.users = users
        self._stage = _Stage.HANDSHAKE
        self.mechanism: str | None = None
        self.principal: Principal | None = None  # once authenticated
        self._expires: float | None = None  # monotonic time the session ends (re-authentication)
        self._round: _Round | None = None
        self._raw = False  # tokens without SaslAuthenticate around them (SaslHandshake v0)

    @property
    def authenticated(self) -> bool:
        """Past the first authentication (a re-authentication in progress keeps it)."""
        return self.principal is not None

    @property
    def failed(self) -> bool:
        """The connection is to close once its last response is written."""
        return self._stage is _Stage.FAILED

    def expired(self, now: float) -> bool:
        return self._expires is not None and now >= self._expires

    async def handshake(self, kafka: KafkaContext, call: Call, request: Any) -> Any:
        enabled = self.config.mechanisms
        if self._stage not in (_Stage.HANDSHAKE, _Stage.DONE):  # Kafka answers out of turn so, and closes
            self._stage = _Stage.FAILED
            return build(call.response_type, error_code=ErrorCode.illegal_sasl_state, mechanisms=enabled)
        mechanism = request.mechanism
        if mechanism not in enabled or self.authenticated and mechanism != self.mechanism:  # KIP-368: the same one
            AUTHENTICATION_FAILURES.labels("unsupported").inc()
            await self._fail()
            return build(call.response_type, error_code=ErrorCode.unsupported_sasl_mechanism, mechanisms=enabled)
        self.mechanism = mechanism
        self._raw = call.api_version == 0
        self._round = self._plain if mechanism == PLAIN else self._scram(mechanism)
        self._stage = _Stage.AUTHENTICATE
        return build(call.response_type, error_code=ErrorCode.none, mechanisms=enabled)

    async def authenticate(self, kafka: KafkaContext, call: Call, request: Any) -> Any:
        step = await self._step(bytes(request.auth_bytes))
        fields: dict[str, Any] = {"error_code": step.error, "error_message": step.message, "auth_bytes": step.token}
        if call.api_version >= 1:  # v1+: session_lifetime_ms (KIP-368)
            fields["session_lifetime"] = timedelta(milliseconds=step.lifetime_ms)
        return build(call.response_type, **fields)

    async def raw_token(self, token: bytes) -> EncodedResponse | None:
        """After a SaslHandshake v0 the tokens travel bare, in size-prefixed frames (KIP-43's
        first form, which kafka-python's and older librdkafka's handshakes still ask for);
        a failure there is told by closing (None: no answer)."""
        step = await self._step(token)
        if step.error != ErrorCode.none:
            return None
        return EncodedResponse([SIZE.pack(len(step.token)) + step.token])

    @property
    def raw_tokens(self) -> bool:
        """The next frame is a bare SASL token (a v0 handshake's exchange is under way)."""
        return self._raw and self._stage is _Stage.AUTHENTICATE

    async def _step(self, token: bytes) -> _Step:
        if self._stage is not _Stage.AUTHENTICATE or self._round is None or self.mechanism is None:
            stage, self._stage = self._stage, _Stage.FAILED
            return _Step(ErrorCode.illegal_sasl_state, f"unexpected SaslAuthenticate while {stage.value}")
        try:
            challenge, principal = await self._round(token)
            if principal is not None and self.principal not in (None, principal):
                raise AuthenticationFailed(f"re-authentication as {principal} on a connection of {self.principal}")
        except AuthenticationFailed as exc:  # the reason stays in the broker's log
            _report_failure(f"failed authentication with {self.peer} ({self.mechanism}): {exc}")
            AUTHENTICATION_FAILURES.labels(self.mechanism).inc()
            await self._fail()
            return _Step(ErrorCode.sasl_authentication_failed, _FAILED.format(self.mechanism))
        lifetime_ms = 0
        if principal is not None:
            AUTHENTICATIONS.labels(self.mechanism).inc()
            self.principal, self._stage, self._round = principal, _Stage.DONE, None
            if self.config.reauth_ms:
                lifetime_ms = self.config.reauth_ms
                self._expires = time.monotonic() + lifetime_ms / 1000
        return _Step(ErrorCode.none, None, challenge, lifetime_ms)

    async def _fail(self) -> None:
        """Slow a guesser down (Kafka's connection.failed.authentication.delay.ms), then
        answer and close (once failed, the connection closes as soon as it has nothing to write)."""
        await asyncio.sleep(self.config.failure_delay_s)
        self._stage = _Stage.FAILED

    async def _plain(self, message: bytes) -> tuple[bytes, Principal | None]:
        """RFC 4616: [authzid] NUL authcid NUL passwd, in one round."""
        parts = message.split(b"\0")
        if len(parts) != 3:
            raise AuthenticationFailed("a PLAIN message is authzid NUL authcid NUL passwd")
        authzid, username, password = parts
        if not username or not password or authzid not in (b"", username):
            raise AuthenticationFailed("an empty user or password, or an authorization id other than the user")
        try:
            name = username.decode()
        except UnicodeDecodeError:
            raise AuthenticationFailed("the user name is not UTF-8") from None
        if not await self.users.verify_password(name, password):
            raise AuthenticationFailed("wrong credentials")
        return b"", Principal(USER, name)

    def _scram(self, mechanism: str) -> _Round:
        scram = MECHANISMS[mechanism]
        exchange = ScramExchange(scram, lambda name: self.users.credential_or_decoy(name, scram))
        first = True

        async def round_trip(message: bytes) -> tuple[bytes, Principal | None]:
            nonlocal first
            try:
                if first:
                    first = False
                    return exchange.first(message), None
                server_final = exchange.final(message)
            except ScramFailed as exc:
                raise AuthenticationFailed(str(exc)) from None
            assert exchange.username is not None
            return server_final, Principal(USER, exchange.username)

        return round_trip


# The table's handlers, reached only after authentication or on a listener without SASL:
# Kafka answers both ILLEGAL_SASL_STATE there (KafkaApis.handleSaslHandshakeRequest).
async def handle_sasl_handshake(kafka: KafkaContext, call: Call, request: Any) -> Any:
    return build(call.response_type, error_code=ErrorCode.illegal_sasl_state, mechanisms=())


async def handle_sasl_authenticate(kafka: KafkaContext, call: Call, request: Any) -> Any:
    fields: dict[str, Any] = {"error_code": ErrorCode.illegal_sasl_state, "auth_bytes": b"",
                              "error_message": "SaslAuthenticate on a connection that is not authenticating"}
    return build(call.response_type, **fields)
