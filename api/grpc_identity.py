"""Who a gRPC call comes from, in Kafka's form (`User:alice`), for the ACL checks.

In order: the client certificate's subject when the listener is TLS with client
authentication (`User:CN=...,OU=...`, RFC 2253 order as Kafka's mTLS principals); else the
user whose call credentials the authentication interceptor verified; else ANONYMOUS."""

from __future__ import annotations

import asyncio
import base64
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from cryptography import x509
from prometheus_client import Counter

from broker.security.principal import ANONYMOUS, USER, Principal
from broker.security.users import UserStore
from broker.settings import BrokerSettings

from .tls import rfc2253

# Set by the authentication interceptor around the call it verified: a call's handler runs
# in the task (and so the context) the interceptor wraps it in.
verified_caller: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("verified_caller", default=None)


def principal_of(context: grpc.aio.ServicerContext) -> Principal:
    subject = certificate_subject(context)
    if subject is not None:
        return Principal(USER, subject)
    return verified_caller.get() or ANONYMOUS


def certificate_subject(context: grpc.aio.ServicerContext) -> str | None:
    """The verified client certificate's subject, or None without one (gRPC puts a peer
    certificate in the auth context only once its chain verified)."""
    pem = context.auth_context().get("x509_pem_cert")
    if not pem:
        return None
    # Written as the Kafka listeners write it (Java's X500Principal form), so a certificate
    # is one principal on both protocols.
    return rfc2253(x509.load_pem_x509_certificate(pem[0]).subject)


CREDENTIALS_KEY = "authorization"  # metadata: `Basic base64(user:password)`, as HTTP's (api/client.py)
_OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")  # health checks and schema stay open

AUTHENTICATION_FAILURES = Counter("tierlog_grpc_authentication_failures_total",
                                  "gRPC calls refused for missing or wrong credentials")


class CallAuthentication(grpc.aio.ServerInterceptor):
    """Checks each call's credentials before its handler runs: Basic credentials against the
    users (as PLAIN: a SCRAM exchange needs round trips a gRPC call does not have), only over
    TLS unless `grpc.authentication.plaintext.allow`; with `grpc.authentication=required`, a
    call with neither valid credentials nor a verified client certificate is refused
    UNAUTHENTICATED."""

    def __init__(self, users: UserStore, settings: BrokerSettings, tls: bool) -> None:
        self.users = users
        self.required = settings.grpc_authentication == "required"
        self.basic_allowed = tls or settings.grpc_authentication_plaintext_allow
        self.failure_delay_s = settings.connection_failed_authentication_delay_ms / 1000

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or details.method.startswith(_OPEN_SERVICES):
            return handler
        if handler.unary_unary is not None:
            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await self._authenticate(context)
                return await handler.unary_unary(request, context)
            return grpc.unary_unary_rpc_method_handler(unary, handler.request_deserializer,
                                                       handler.response_serializer)
        if handler.unary_stream is not None:
            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await self._authenticate(context)
                async for response in handler.unary_stream(request, context):
                    yield response
            return grpc.unary_stream_rpc_method_handler(stream, handler.request_deserializer,
                                                        handler.response_serializer)
        raise TypeError(f"{details.method}: tierlog's service has unary and server-streaming calls only")

    async def _authenticate(self, context: grpc.aio.ServicerContext) -> None:
        """Sets `verified_caller` for the call, or aborts it (raises)."""
        supplied = dict(context.invocation_metadata() or ()).get(CREDENTIALS_KEY)
        if supplied is None:
            if self.required and certificate_subject(context) is None:
                AUTHENTICATION_FAILURES.inc()
                await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                    "credentials required: a client certificate, or a user's password "
                                    "(--username and --password-file)")
            return
        if not self.basic_allowed:
            AUTHENTICATION_FAILURES.inc()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "passwords are accepted over TLS only on this gRPC listener "
                                "(grpc.authentication.plaintext.allow)")
        name, password = _basic(supplied)
        if name is not None and await self.users.verify_password(name, password):
            verified_caller.set(Principal(USER, name))
            return
        AUTHENTICATION_FAILURES.inc()
        await asyncio.sleep(self.failure_delay_s)  # as Kafka's connection.failed.authentication.delay.ms
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication failed: invalid credentials")


def _basic(value: str | bytes) -> tuple[str | None, bytes]:
    """(user, password) of `Basic base64(user:password)`; (None, b"") if malformed."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    scheme, _, encoded = text.strip().partition(" ")
    if scheme.lower() != "basic":
        return None, b""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
        name, sep, password = decoded.partition(b":")
        return (name.decode() if sep and name else None), password
    except (ValueError, UnicodeDecodeError):
        return None, b""
