"""SCRAM credentials and the server side of an exchange, against scramp's client."""

from __future__ import annotations

import base64
import time

import pytest
import scramp

from broker.security.scram import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    SCRAM_SHA_256,
    SCRAM_SHA_512,
    Credential,
    CredentialError,
    CredentialLookup,
    Mechanism,
    ScramExchange,
    ScramFailed,
    UnknownMechanismError,
    mechanism_named,
    mechanism_of_type,
)


def exchange(mechanism: Mechanism, lookup: CredentialLookup, user: str, password: str) -> bytes:
    server = ScramExchange(mechanism, lookup)
    client = scramp.ScramClient([mechanism.name], user, password)
    client.set_server_first(server.first(client.get_client_first().encode()).decode())
    server_final = server.final(client.get_client_final().encode())
    client.set_server_final(server_final.decode())  # the client checks the server's signature too
    return server_final


@pytest.mark.parametrize("mechanism", [SCRAM_SHA_256, SCRAM_SHA_512])
def test_the_right_password_authenticates_and_a_wrong_one_fails(mechanism: Mechanism) -> None:
    credential = Credential.from_password(mechanism, "secret")
    assert exchange(mechanism, lambda _: credential, "alice", "secret").startswith(b"v=")
    with pytest.raises(ScramFailed):
        exchange(mechanism, lambda _: credential, "alice", "wrong")


def test_credentials_keep_no_password_and_plain_checks_against_them() -> None:
    credential = Credential.from_password(SCRAM_SHA_512, "secret", 4096)
    assert b"secret" not in repr(credential.to_json()).encode()
    assert credential.matches(b"secret") and not credential.matches(b"secreT")
    assert Credential.from_json(SCRAM_SHA_512, credential.to_json()) == credential


def test_iterations_mechanisms_and_empty_inputs_are_checked_as_kafka() -> None:
    for iterations in (MIN_ITERATIONS - 1, MAX_ITERATIONS + 1):
        with pytest.raises(CredentialError):
            Credential.from_password(SCRAM_SHA_256, "p", iterations)
    with pytest.raises(CredentialError):
        Credential.from_salted_password(SCRAM_SHA_256, b"", 4096, b"x")
    with pytest.raises(UnknownMechanismError):
        mechanism_named("SCRAM-SHA-1")
    with pytest.raises(UnknownMechanismError):
        mechanism_of_type(0)
    assert mechanism_named("scram-sha-512") is SCRAM_SHA_512 and mechanism_of_type(1) is SCRAM_SHA_256


@pytest.mark.parametrize("message", [b"", b"\xff\xfe", b"n,,", b"n,,n=a,r=", b"p=tls-unique,,n=a,r=x", b"x" * 70000])
def test_malformed_client_first_messages_fail_cleanly(message: bytes) -> None:
    with pytest.raises(ScramFailed):
        ScramExchange(SCRAM_SHA_256, lambda _: Credential.from_password(SCRAM_SHA_256, "p", 4096)).first(message)


def test_a_client_final_with_a_foreign_nonce_fails() -> None:
    credential = Credential.from_password(SCRAM_SHA_256, "secret", 4096)
    server = ScramExchange(SCRAM_SHA_256, lambda _: credential)
    client = scramp.ScramClient([SCRAM_SHA_256.name], "alice", "secret")
    server.first(client.get_client_first().encode())
    with pytest.raises(ScramFailed):
        server.final(b"c=biws,r=othernonce,p=AAAA")


def test_plain_check_at_default_iterations_costs_more_than_a_millisecond() -> None:
    """Why UserStore.verify_password runs it off the event loop."""
    credential = Credential.from_password(SCRAM_SHA_512, "secret")
    started = time.perf_counter()
    credential.matches(b"secret")
    assert time.perf_counter() - started > 0.001


def test_librdkafkas_doubled_client_nonce_is_accepted_as_kafka_does() -> None:
    """librdkafka before 2.6.1 (Debian's kcat) sends r=<its nonce><server's r>, signed over
    that; Kafka accepts it since 3.8.1. A nonce with anything else before it still fails."""
    credential = Credential.from_password(SCRAM_SHA_256, "secret", 4096)

    def final_with_prefix(prefix: str | None) -> bytes:
        server = ScramExchange(SCRAM_SHA_256, lambda _: credential)
        client_nonce = "rdkafkanonce"
        client_first_bare = f"n=alice,r={client_nonce}"
        server_first = server.first(f"n,,{client_first_bare}".encode()).decode()
        server_nonce = server_first.split(",")[0][2:]
        without_proof = f"c=biws,r={client_nonce if prefix is None else prefix}{server_nonce}"
        auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
        salted = SCRAM_SHA_256.salted_password(b"secret", credential.salt, credential.iterations)
        client_key = SCRAM_SHA_256.hmac(salted, b"Client Key")
        signature = SCRAM_SHA_256.hmac(SCRAM_SHA_256.stored_key(salted), auth_message)
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True))).decode()
        return server.final(f"{without_proof},p={proof}".encode())

    assert final_with_prefix(None).startswith(b"v=")
    with pytest.raises(ScramFailed):
        final_with_prefix("someoneelse")
