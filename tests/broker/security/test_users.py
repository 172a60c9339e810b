"""The user store: Kafka's checks on every change, per-user results, restore from the bucket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import scramp
from kio.schema.errors import ErrorCode

from broker.security.documents import DocumentError
from broker.security.scram import SCRAM_SHA_256, SCRAM_SHA_512, Mechanism, ScramExchange, ScramFailed
from broker.security.users import Deletion, Upsertion, UserCredentials, UserError, UserStore, salted
from tiering.local_store import LocalFolderStore
from tiering.wrappers import FaultInjectingStore


def upsertion(name: str, password: str, mechanism: Mechanism = SCRAM_SHA_512, iterations: int = 4096) -> Upsertion:
    return salted(name, mechanism, password, iterations)


def test_a_user_added_authenticates_with_plain_and_is_described_without_keys(tmp_path: Path) -> None:
    async def scenario() -> None:
        users = UserStore(str(tmp_path))
        await users.load()
        assert await users.alter([upsertion("alice", "secret"), upsertion("alice", "secret", SCRAM_SHA_256)], []) == \
            {"alice": None}
        assert await users.verify_password("alice", b"secret")
        assert await users.verify_password("alice", b"secret")  # the remembered path answers the same
        assert not await users.verify_password("alice", b"wrong")
        assert not await users.verify_password("bob", b"secret")
        [described] = users.describe(None)
        assert described == UserCredentials("alice", ((SCRAM_SHA_512, 4096), (SCRAM_SHA_256, 4096)))
        assert b"secret" not in (tmp_path / "scram-credentials.json").read_bytes()

    asyncio.run(scenario())


def test_each_user_fails_alone_with_kafkas_codes_and_changes_nothing_of_its_own(tmp_path: Path) -> None:
    async def scenario() -> None:
        users = UserStore(str(tmp_path))
        await users.load()
        results = await users.alter(
            [upsertion("ok", "p"), upsertion("few", "p", iterations=1000),
             upsertion("many", "p", iterations=20000), Upsertion("mech", 9, 4096, b"s", b"p"),
             upsertion("", "p"), upsertion("twice", "p"), upsertion("twice", "q"),
             upsertion("half", "p", SCRAM_SHA_256)],
            [Deletion("ghost", SCRAM_SHA_512.kafka_type), Deletion("half", SCRAM_SHA_512.kafka_type)])
        codes = {name: error.code if error else None for name, error in results.items()}
        assert codes == {"ok": None, "few": ErrorCode.unacceptable_credential,
                         "many": ErrorCode.unacceptable_credential, "mech": ErrorCode.unsupported_sasl_mechanism,
                         "": ErrorCode.unacceptable_credential, "twice": ErrorCode.duplicate_resource,
                         "ghost": ErrorCode.resource_not_found, "half": ErrorCode.resource_not_found}
        assert users.names() == ["ok"]  # "half"'s upsertion went with its failed deletion

    asyncio.run(scenario())


def test_describe_names_unknown_and_repeated_users(tmp_path: Path) -> None:
    async def scenario() -> None:
        users = UserStore(str(tmp_path))
        await users.load()
        await users.alter([upsertion("alice", "p")], [])
        alice, ghost, again = users.describe(["alice", "ghost", "alice"])
        assert isinstance(alice, UserCredentials)
        assert isinstance(ghost, UserError) and ghost.code == ErrorCode.resource_not_found
        assert isinstance(again, UserError) and again.code == ErrorCode.duplicate_resource

    asyncio.run(scenario())


def test_removing_a_users_last_credential_removes_the_user(tmp_path: Path) -> None:
    async def scenario() -> None:
        users = UserStore(str(tmp_path))
        await users.load()
        await users.alter([upsertion("alice", "p")], [])
        assert await users.verify_password("alice", b"p")
        assert await users.alter([], [Deletion("alice", SCRAM_SHA_512.kafka_type)]) == {"alice": None}
        assert users.names() == [] and not await users.verify_password("alice", b"p")

    asyncio.run(scenario())


def test_a_broker_restored_from_the_bucket_alone_keeps_its_users(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalFolderStore(str(tmp_path / "bucket"))
        for folder in ("a", "b"):
            (tmp_path / folder).mkdir()
        first = UserStore(str(tmp_path / "a"))
        first.document.keep_in(store)
        await first.load()
        await first.alter([upsertion("alice", "secret")], [])
        restored = UserStore(str(tmp_path / "b"))  # an empty data folder, the same bucket
        restored.document.keep_in(store)
        await restored.load()
        assert await restored.verify_password("alice", b"secret")

    asyncio.run(scenario())


def test_a_change_the_bucket_refuses_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = FaultInjectingStore(LocalFolderStore(str(tmp_path / "bucket")))
        users = UserStore(str(tmp_path))
        users.document.keep_in(store)
        await users.load()
        store.fail_next(1, "put")
        with pytest.raises(DocumentError):
            await users.alter([upsertion("alice", "p")], [])
        assert users.names() == [] and not await users.verify_password("alice", b"p")

    asyncio.run(scenario())


def test_unknown_users_meet_the_same_made_up_credential_after_a_restart(tmp_path: Path) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        first = UserStore(str(tmp_path))
        await first.load()
        await first.alter([upsertion("alice", "p")], [])
        again = UserStore(str(tmp_path))
        await again.load()
        return (first.credential_or_decoy("nobody", SCRAM_SHA_512).salt,
                again.credential_or_decoy("nobody", SCRAM_SHA_512).salt)

    before, after = asyncio.run(scenario())
    assert before == after


def test_a_damaged_document_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "scram-credentials.json").write_text('{"users": {"alice": {"SCRAM-SHA-512": {"salt": "zz"}}}}')

    async def scenario() -> None:
        await UserStore(str(tmp_path)).load()

    with pytest.raises(DocumentError, match="not a credentials document"):
        asyncio.run(scenario())


def test_an_unknown_user_fails_scram_as_a_wrong_password_does(tmp_path: Path) -> None:
    """The same error, and a made-up credential with a stable salt and the users' iterations:
    a server-first message tells nothing either."""
    async def scenario() -> UserStore:
        users = UserStore(str(tmp_path))
        await users.load()
        await users.alter([upsertion("alice", "secret", iterations=4096)], [])
        return users

    users = asyncio.run(scenario())

    def attempt(user: str, password: str) -> tuple[str, str]:
        server = ScramExchange(SCRAM_SHA_512, lambda name: users.credential_or_decoy(name, SCRAM_SHA_512))
        client = scramp.ScramClient([SCRAM_SHA_512.name], user, password)
        server_first = server.first(client.get_client_first().encode()).decode()
        client.set_server_first(server_first)
        with pytest.raises(ScramFailed) as failed:
            server.final(client.get_client_final().encode())
        return server_first.split(",", 1)[1], str(failed.value)  # the salt and iterations; the error

    (alice_offer, wrong_password), (bob_offer, unknown_user) = attempt("alice", "wrong"), attempt("bob", "secret")
    assert wrong_password == unknown_user
    assert alice_offer.endswith(",i=4096") and bob_offer.endswith(",i=4096")
    assert attempt("bob", "other")[0] == bob_offer != alice_offer


def test_a_storm_of_wrong_plain_passwords_does_not_queue_in_front_of_fsyncs(tmp_path: Path) -> None:
    """PLAIN's PBKDF2s (4.4 ms each at 8192 iterations) run in a thread of their own: a worker
    job of the default executor (where the logs' fsyncs run) is not kept waiting behind 48
    of them, as it was when they shared it."""
    async def scenario() -> None:
        users = UserStore(str(tmp_path))
        await users.load()
        assert await users.alter([upsertion("alice", "secret", iterations=8192)], []) == {"alice": None}
        finished: list[bool] = []

        async def attempt() -> None:
            finished.append(await users.verify_password("alice", b"wrong"))

        storm = [asyncio.create_task(attempt()) for _ in range(48)]
        await asyncio.sleep(0)  # every attempt has queued its PBKDF2
        await asyncio.to_thread(lambda: None)  # what an fsync waits for: a default-executor worker
        done_before_it = len(finished)
        await asyncio.gather(*storm)
        users.close()
        assert finished == [False] * 48
        assert done_before_it < 24, f"{done_before_it} of 48 PBKDF2s ran before the default executor's job"

    asyncio.run(scenario())
