"""SCRAM credentials (RFC 5802, 7677) and the server side of an exchange.

A credential is what Kafka keeps of a password: a salt, an iteration count, and the
StoredKey and ServerKey derived from the salted password; never the password itself. A
SCRAM exchange checks a client's proof against StoredKey (cheap HMACs: the client did the
PBKDF2); PLAIN, which sends the password, derives StoredKey again (one PBKDF2 of
`iterations` rounds) and compares in constant time.

The protocol messages are scramp's (a maintained RFC 5802 implementation); the key
derivation is hashlib's, so the iteration bounds here are Kafka's, not scramp's."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import scramp

MIN_ITERATIONS = 4096  # Kafka's bounds (ScramMechanism.minIterations/maxIterations)
MAX_ITERATIONS = 16384
# Kafka's tools default to 4096; new credentials made here get twice that (the iterations
# of Kafka's documented example), still well inside a millisecond budget per exchange.
DEFAULT_ITERATIONS = 8192
SALT_BYTES = 32


class CredentialError(ValueError):
    """A credential Kafka would refuse (UNACCEPTABLE_CREDENTIAL)."""


class UnknownMechanismError(ValueError):
    """Not a SCRAM mechanism of Kafka's (UNSUPPORTED_SASL_MECHANISM)."""


@dataclass(frozen=True)
class Mechanism:
    name: str  # as SaslHandshake and clients spell it: SCRAM-SHA-512
    kafka_type: int  # Kafka's ScramMechanism type, in the admin APIs
    hash_name: str

    def hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hash_name).digest()

    def salted_password(self, password: bytes, salt: bytes, iterations: int) -> bytes:
        """RFC 5802's Hi(password, salt, i): the costly step, PBKDF2-HMAC."""
        return hashlib.pbkdf2_hmac(self.hash_name, password, salt, iterations)

    def stored_key(self, salted_password: bytes) -> bytes:
        return hashlib.new(self.hash_name, self.hmac(salted_password, b"Client Key")).digest()


SCRAM_SHA_256 = Mechanism("SCRAM-SHA-256", 1, "sha256")
SCRAM_SHA_512 = Mechanism("SCRAM-SHA-512", 2, "sha512")
MECHANISMS = {m.name: m for m in (SCRAM_SHA_512, SCRAM_SHA_256)}  # strongest first
_BY_TYPE = {m.kafka_type: m for m in MECHANISMS.values()}


def mechanism_named(name: str) -> Mechanism:
    try:
        return MECHANISMS[name.upper()]
    except KeyError:
        raise UnknownMechanismError(f"unknown SCRAM mechanism {name!r}: expected one of "
                                    f"{', '.join(MECHANISMS)}") from None


def mechanism_of_type(kafka_type: int) -> Mechanism:
    try:
        return _BY_TYPE[kafka_type]
    except KeyError:
        raise UnknownMechanismError(f"unknown SCRAM mechanism type {kafka_type}: expected 1 (SCRAM-SHA-256) or "
                                    f"2 (SCRAM-SHA-512)") from None


def type_of(name: str) -> int:
    """Kafka's type of a mechanism name, 0 (Kafka's UNKNOWN) for any other: the user store
    refuses that as Kafka does (UNSUPPORTED_SASL_MECHANISM)."""
    mechanism = MECHANISMS.get(name.upper())
    return 0 if mechanism is None else mechanism.kafka_type


def check_iterations(iterations: int) -> None:
    if iterations < MIN_ITERATIONS:
        raise CredentialError(f"too few iterations: {iterations} (at least {MIN_ITERATIONS})")
    if iterations > MAX_ITERATIONS:
        raise CredentialError(f"too many iterations: {iterations} (at most {MAX_ITERATIONS})")


@dataclass(frozen=True)
class Credential:
    """One user's credential for one mechanism."""

    mechanism: Mechanism
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_salted_password(cls, mechanism: Mechanism, salt: bytes, iterations: int,
                             salted_password: bytes) -> Credential:
        """What AlterUserScramCredentials sends (KIP-554: the client salts the password)."""
        check_iterations(iterations)
        if not salt:
            raise CredentialError("the salt is empty")
        if not salted_password:
            raise CredentialError("the salted password is empty")
        return cls(mechanism, salt, iterations, mechanism.stored_key(salted_password),
                   mechanism.hmac(salted_password, b"Server Key"))

    @classmethod
    def from_password(cls, mechanism: Mechanism, password: str, iterations: int = DEFAULT_ITERATIONS) -> Credential:
        check_iterations(iterations)
        salt = os.urandom(SALT_BYTES)
        return cls.from_salted_password(mechanism, salt, iterations,
                                        mechanism.salted_password(password.encode(), salt, iterations))

    def matches(self, password: bytes) -> bool:
        """PLAIN's check, in constant time over the derived key (one PBKDF2: run it off the loop)."""
        derived = self.mechanism.stored_key(self.mechanism.salted_password(password, self.salt, self.iterations))
        return hmac.compare_digest(derived, self.stored_key)

    def to_json(self) -> dict[str, Any]:
        return {"salt": self.salt.hex(), "iterations": self.iterations, "stored_key": self.stored_key.hex(),
                "server_key": self.server_key.hex()}

    @classmethod
    def from_json(cls, mechanism: Mechanism, doc: dict[str, Any]) -> Credential:
        return cls(mechanism, bytes.fromhex(doc["salt"]), int(doc["iterations"]), bytes.fromhex(doc["stored_key"]),
                   bytes.fromhex(doc["server_key"]))


class ScramFailed(Exception):
    """The exchange failed: bad credentials or a malformed message (the client learns only
    that authentication failed)."""


# The credential of a user name for the exchange's mechanism; for a name of no user, a
# made-up one (UserStore.credential_or_decoy), so the exchange fails at the proof exactly as
# a wrong password does (RFC 5802, section 5.1) and the server-first message tells nothing.
CredentialLookup = Callable[[str], "Credential"]


class ScramExchange:
    """The server side of one SCRAM exchange: client-first -> server-first, client-final ->
    server-final."""

    def __init__(self, mechanism: Mechanism, lookup: CredentialLookup) -> None:
        self.mechanism = mechanism
        self._lookup = lookup
        self.username: str | None = None
        self._server = scramp.ScramMechanism(mechanism.name).make_server(self._auth_info)

    def _auth_info(self, username: str) -> tuple[bytes, bytes, bytes, int]:
        self.username = _saslname(username)
        credential = self._lookup(self.username)
        return credential.salt, credential.stored_key, credential.server_key, credential.iterations

    def first(self, client_first: bytes) -> bytes:
        try:
            self._server.set_client_first(client_first.decode())
            return str(self._server.get_server_first()).encode()
        except (scramp.ScramException, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise ScramFailed(f"bad client-first message: {exc}") from None

    def final(self, client_final: bytes) -> bytes:
        """The server-final message; raises ScramFailed unless the proof is right."""
        try:
            message = client_final.decode()
            self._accept_doubled_nonce(message)
            self._server.set_client_final(message)
            return str(self._server.get_server_final()).encode()
        except (scramp.ScramException, ValueError) as exc:
            raise ScramFailed(f"bad client-final message: {exc}") from None

    def _accept_doubled_nonce(self, client_final: str) -> None:
        """librdkafka before 2.6.1 sends its own nonce again before the server's r (its
        bug #4895), which Kafka accepts since 3.8.1 (the nonce must end with the server's):
        accept that one form too. The proof is still checked over what the client sent."""
        nonce = next((a[2:] for a in client_final.split(",") if a.startswith("r=")), "")
        expected = str(self._server.nonce)
        client_part = nonce[:len(nonce) - len(expected)]
        if len(nonce) > len(expected) and nonce.endswith(expected) and expected.startswith(client_part):
            self._server.nonce = type(self._server.nonce)(nonce)


def _saslname(name: str) -> str:
    """RFC 5802's saslname: ',' and '=' travel as '=2C' and '=3D'."""
    return name.replace("=2C", ",").replace("=3D", "=")
