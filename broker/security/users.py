"""The users: their SCRAM credentials, one store for SCRAM and PLAIN (as Redpanda keeps
one), kept in the data folder and the bucket (`_cluster/scram-credentials.json`).

Every way of changing users (Kafka's AlterUserScramCredentials, the gRPC API, `tierlog
users` with or without a server) goes through `UserStore.alter`, so the checks on names,
mechanisms and iterations are Kafka's (KIP-554) whichever way a user is added."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from .documents import DocumentError, KeptDocument
from .scram import (
    DEFAULT_ITERATIONS,
    MECHANISMS,
    SALT_BYTES,
    SCRAM_SHA_512,
    Credential,
    CredentialError,
    Mechanism,
    UnknownMechanismError,
    mechanism_of_type,
)

DOCUMENT = "scram-credentials"
PLAIN = "PLAIN"  # RFC 4616, checked against the SCRAM credentials
SASL_MECHANISMS = (*MECHANISMS, PLAIN)  # what this store authenticates
VERIFIED_CACHE = 1024  # passwords verified lately (gRPC checks one on every call)


@dataclass(frozen=True)
class Upsertion:
    """A credential to set, salted by the client (KIP-554: the password never travels)."""

    name: str
    mechanism_type: int  # Kafka's: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512
    iterations: int
    salt: bytes
    salted_password: bytes


def salted(name: str, mechanism: Mechanism, password: str, iterations: int) -> Upsertion:
    """The upsertion a client sends for a password (the salting KIP-554 asks of clients)."""
    salt = os.urandom(SALT_BYTES)
    return Upsertion(name, mechanism.kafka_type, iterations, salt,
                     mechanism.salted_password(password.encode(), salt, iterations))


@dataclass(frozen=True)
class Deletion:
    name: str
    mechanism_type: int


@dataclass(frozen=True)
class UserError:
    """Why one user's changes (all of them) were refused, with Kafka's code."""

    code: ErrorCode
    message: str


@dataclass(frozen=True)
class UserCredentials:
    """What DescribeUserScramCredentials tells: the mechanisms and iterations, never keys."""

    name: str
    mechanisms: tuple[tuple[Mechanism, int], ...]  # (mechanism, iterations)


@dataclass
class _Changes:
    """One user's changes in a request, checked before any is applied."""

    set: dict[str, Credential] = field(default_factory=dict)  # by mechanism name
    delete: list[str] = field(default_factory=list)
    error: UserError | None = None

    def refuse(self, code: ErrorCode, message: str) -> None:
        if self.error is None:  # the first reason found is the one told
            self.error = UserError(code, message)


class UserStore:
    """Event loop only."""

    def __init__(self, data_dir: str) -> None:
        self.document = KeptDocument(data_dir, DOCUMENT)
        self._users: dict[str, dict[str, Credential]] = {}
        self._secret = os.urandom(32)  # this process's: keys the verified-password cache
        # Unknown users' made-up credentials derive from this, kept with the users so that
        # they stay the same across restarts (a salt that changed would tell them apart).
        self._decoy_secret = os.urandom(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        # PLAIN's PBKDF2s run here, one at a time, not in the default executor: a storm of
        # logins (each 4.4 ms of CPU) must not queue in front of the logs' fsyncs there.
        self._hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierlog-pbkdf2")

    def close(self) -> None:
        self._hashing.shutdown(wait=False, cancel_futures=True)

    async def _matches(self, credential: Credential, password: bytes) -> bool:
        return await asyncio.get_running_loop().run_in_executor(self._hashing, credential.matches, password)

    async def load(self) -> None:
        document = await self.document.load()
        if document is not None:
            try:
                self._users = _decode(document)
                self._decoy_secret = bytes.fromhex(document.get("decoy_seed", self._decoy_secret.hex()))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise DocumentError(f"{self.document.path}: not a credentials document ({exc!r})") from None

    def names(self) -> list[str]:
        return sorted(self._users)

    def credential(self, name: str, mechanism: Mechanism) -> Credential | None:
        return self._users.get(name, {}).get(mechanism.name)

    def credential_or_decoy(self, name: str, mechanism: Mechanism) -> Credential:
        """The user's credential; for an unknown user a made-up one, the same each time (from
        the kept seed) and iterated as most users' are, so that a SCRAM exchange tells no
        unknown user from a known one by its salt or iterations, nor by how it fails."""
        credential = self.credential(name, mechanism)
        if credential is not None:
            return credential
        seed = mechanism.hmac(self._decoy_secret, name.encode())
        iterations = Counter(c.iterations for credentials in self._users.values()
                             if (c := credentials.get(mechanism.name)) is not None).most_common(1)
        return Credential(mechanism, seed[:SALT_BYTES], iterations[0][0] if iterations else DEFAULT_ITERATIONS,
                          mechanism.hmac(seed, b"stored"), mechanism.hmac(seed, b"server"))

    def describe(self, names: list[str] | None) -> list[UserCredentials | UserError]:
        """Every user for None or [], else the named ones in order (Kafka's errors for an
        unknown or repeated name, in that name's place)."""
        if not names:
            return [self._described(name) for name in sorted(self._users)]
        results: list[UserCredentials | UserError] = []
        for i, name in enumerate(names):
            if name in names[:i]:
                results.append(UserError(ErrorCode.duplicate_resource,
                                         f"cannot describe the SCRAM credentials of user {name!r} twice in one "
                                         f"request"))
            elif name not in self._users:
                results.append(UserError(ErrorCode.resource_not_found,
                                         f"user {name!r} has no SCRAM credential"))
            else:
                results.append(self._described(name))
        return results

    def _described(self, name: str) -> UserCredentials:
        return UserCredentials(name, tuple((c.mechanism, c.iterations) for c in self._users[name].values()))

    async def alter(self, upsertions: list[Upsertion], deletions: list[Deletion]) -> dict[str, UserError | None]:
        """Apply each user's changes unless one of them is refused (then none of that
        user's is): Kafka's per-user results, in the order users first appear."""
        async with self.document.lock:
            changes = self._check(upsertions, deletions)
            users = {name: dict(credentials) for name, credentials in self._users.items()}
            for name, change in changes.items():
                if change.error is not None:
                    continue
                credentials = users.setdefault(name, {})
                for mechanism in change.delete:
                    del credentials[mechanism]
                credentials.update(change.set)
                if not credentials:
                    del users[name]
            if users != self._users:
                await self.document.save(_encode(users, self._decoy_secret))  # refused: raises, nothing changed
                self._users = users
        return {name: change.error for name, change in changes.items()}

    def _check(self, upsertions: list[Upsertion], deletions: list[Deletion]) -> dict[str, _Changes]:
        changes: dict[str, _Changes] = {}
        seen: set[tuple[str, int]] = set()
        operations: list[Deletion | Upsertion] = [*deletions, *upsertions]
        for op in operations:
            change = changes.setdefault(op.name, _Changes())
            if (op.name, op.mechanism_type) in seen:
                change.refuse(ErrorCode.duplicate_resource,
                              f"user {op.name!r}: a credential cannot be altered twice in the same request")
            seen.add((op.name, op.mechanism_type))
            if not op.name:
                change.refuse(ErrorCode.unacceptable_credential, "the user name must not be empty")
                continue
            try:
                mechanism = mechanism_of_type(op.mechanism_type)
                if isinstance(op, Deletion):
                    if self.credential(op.name, mechanism) is None:
                        change.refuse(ErrorCode.resource_not_found,
                                      f"user {op.name!r} has no {mechanism.name} credential to delete")
                    change.delete.append(mechanism.name)
                else:
                    change.set[mechanism.name] = Credential.from_salted_password(
                        mechanism, op.salt, op.iterations, op.salted_password)
            except UnknownMechanismError as exc:
                change.refuse(ErrorCode.unsupported_sasl_mechanism, f"user {op.name!r}: {exc}")
            except CredentialError as exc:
                change.refuse(ErrorCode.unacceptable_credential, f"user {op.name!r}: {exc}")
        return changes

    async def verify_password(self, name: str, password: bytes) -> bool:
        """PLAIN's check (and gRPC's Basic credentials): the password against the user's
        strongest credential, by one PBKDF2 off the event loop, in a thread of its own. An unknown user costs the
        same PBKDF2, so timing does not tell who exists. Lately verified passwords are
        remembered (keyed by this process's secret, the credential and the password)."""
        credential = next((c for m in MECHANISMS.values() if (c := self.credential(name, m)) is not None), None)
        if credential is None:
            await self._matches(self.credential_or_decoy(name, SCRAM_SHA_512), password)
            return False
        remembered = hmac.new(self._secret, b"\0".join((name.encode(), credential.stored_key, password)),
                              hashlib.sha256).digest()
        if remembered in self._verified:
            self._verified.move_to_end(remembered)
            return True
        if not await self._matches(credential, password):
            return False
        self._verified[remembered] = None
        if len(self._verified) > VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return True


def _encode(users: dict[str, dict[str, Credential]], decoy_secret: bytes) -> dict[str, Any]:
    return {"users": {name: {mechanism: c.to_json() for mechanism, c in credentials.items()}
                      for name, credentials in users.items()}, "decoy_seed": decoy_secret.hex()}


def _decode(document: Any) -> dict[str, dict[str, Credential]]:
    return {name: {mechanism: Credential.from_json(MECHANISMS[mechanism], c) for mechanism, c in credentials.items()}
            for name, credentials in document["users"].items()}
