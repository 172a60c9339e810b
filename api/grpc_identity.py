"""Who a gRPC call comes from, in Kafka's form (`User:alice`), for the ACL checks.

In order: the client certificate's subject when the listener is TLS with client
authentication (`User:CN=...,OU=...`, RFC 2253 order as Kafka's mTLS principals); else the
user whose call credentials the authentication interceptor verified; else ANONYMOUS."""

from __future__ import annotations

import contextvars

import grpc
from cryptography import x509

from broker.security.principal import ANONYMOUS, USER, Principal

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
    return x509.load_pem_x509_certificate(pem[0]).subject.rfc4514_string()
