"""The authorizer's rules (Kafka's StandardAuthorizer) and its ACL store."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from broker.security.acls import AclBinding, AclBindingFilter, AclOperation, ResourceType
from broker.security.authorizer import Access, AuthorizationError, Authorizer, AuthorizerConfig
from broker.security.documents import DocumentError, KeptDocument
from broker.security.principal import Principal
from broker.settings import BrokerSettings
from hotlog.errors import InvalidConfigError
from tiering.local_store import LocalFolderStore
from tiering.wrappers import FaultInjectingStore

from .test_acls import DENY, LITERAL, PREFIXED, READ, TOPIC, acl

ALICE, BOB = Principal("User", "alice"), Principal("User", "bob")
ON = AuthorizerConfig(enabled=True)
W, D, DC = AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS


def authorizer(*acls: AclBinding, config: AuthorizerConfig = ON, folder: str = "/nonexistent") -> Authorizer:
    found = Authorizer(config, KeptDocument(folder, "acls"))
    found.index = type(found.index)(acls)
    return found


def may(auth: Authorizer, operation: AclOperation, name: str, principal: Principal = ALICE, host: str = "10.0.0.1",
        resource_type: ResourceType = TOPIC) -> bool:
    return auth.authorize(principal, host, operation, resource_type, name)


def test_without_an_authorizer_everything_is_allowed() -> None:
    assert may(authorizer(acl("t", permission=DENY), config=AuthorizerConfig()), READ, "t")


def test_no_acl_denies_unless_allow_everyone_if_no_acl_found() -> None:
    assert not may(authorizer(), READ, "t")
    everyone = AuthorizerConfig(enabled=True, allow_everyone_if_no_acl_found=True)
    assert may(authorizer(config=everyone), READ, "t")
    # an ACL of anyone on the resource makes it a resource with ACLs: alice is denied
    assert not may(authorizer(acl("t", principal="User:bob"), config=everyone), READ, "t")


def test_an_allow_grants_its_principal_its_host_and_its_resource_only() -> None:
    auth = authorizer(acl("t", host="10.0.0.1"))
    assert may(auth, READ, "t")
    assert not may(auth, READ, "t", principal=BOB)
    assert not may(auth, READ, "t", host="10.0.0.2")
    assert not may(auth, READ, "u")
    assert not may(auth, W, "t")
    assert may(authorizer(acl("t", principal="User:*")), READ, "t", principal=BOB)


def test_deny_beats_allow() -> None:
    auth = authorizer(acl("t"), acl("*", operation=AclOperation.ALL, permission=DENY))
    assert not may(auth, READ, "t")
    assert not may(authorizer(acl("t"), acl("t", principal="User:*", permission=DENY)), READ, "t")


def test_implied_operations_are_for_allow_only() -> None:
    for operation in (READ, W, AclOperation.DELETE, AclOperation.ALTER):
        assert may(authorizer(acl("t", operation=operation)), D, "t")
    assert may(authorizer(acl("t", operation=AclOperation.ALTER_CONFIGS)), DC, "t")
    assert not may(authorizer(acl("t", operation=AclOperation.CREATE)), D, "t")
    assert may(authorizer(acl("t", operation=AclOperation.ALL)), AclOperation.ALTER_CONFIGS, "t")
    # a DENY of READ does not deny DESCRIBE
    assert may(authorizer(acl("t", operation=D), acl("t", permission=DENY)), D, "t")


def test_prefixed_and_wildcard_patterns() -> None:
    auth = authorizer(acl("pay", PREFIXED), acl("payroll", PREFIXED, permission=DENY),
                      acl("*", operation=D))
    assert may(auth, READ, "payments")
    assert may(auth, READ, "pay")
    assert not may(auth, READ, "payroll-2026")
    assert not may(auth, READ, "pa")
    assert may(auth, D, "anything")
    # a literal ACL does not apply to the names it prefixes
    assert not may(authorizer(acl("pay")), READ, "payments")


def test_super_users_may_do_anything() -> None:
    config = AuthorizerConfig(enabled=True, super_users=frozenset({"User:admin"}))
    auth = authorizer(acl("*", principal="User:*", operation=AclOperation.ALL, permission=DENY), config=config)
    assert may(auth, AclOperation.ALTER, "t", principal=Principal("User", "admin"))
    assert not may(auth, READ, "t")


def test_resource_types_are_apart() -> None:
    auth = authorizer(acl("g", resource_type=ResourceType.GROUP))
    assert may(auth, READ, "g", resource_type=ResourceType.GROUP)
    assert not may(auth, READ, "g")


def test_a_refusal_names_the_operation_and_the_resource_with_kafkas_code() -> None:
    access = Access(authorizer(), ALICE, "10.0.0.1")
    refused = access.write_refusal("orders")
    assert refused is not None and refused.code.value == 29
    assert "User:alice may not WRITE TOPIC 'orders'" in str(refused)
    refused = access.commit_refusal("g1", "orders")
    assert refused is not None and refused.code.value == 30
    refused = access.refusal(AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, "tx")
    assert refused is not None and refused.code.value == 53
    with pytest.raises(AuthorizationError) as raised:
        access.check_cluster(AclOperation.ALTER)
    assert raised.value.code.value == 31 and "may not ALTER the cluster" in str(raised.value)
    granted = Access(authorizer(acl("g1", resource_type=ResourceType.GROUP), acl("orders")), ALICE, "10.0.0.1")
    assert granted.commit_refusal("g1", "orders") is None


def test_creating_a_topic_takes_create_on_the_cluster_or_the_topic() -> None:
    cluster = acl("kafka-cluster", operation=AclOperation.CREATE, resource_type=ResourceType.CLUSTER)
    assert Access(authorizer(cluster), ALICE, "h").create_topic_refusal("t") is None
    assert Access(authorizer(acl("t", operation=AclOperation.CREATE)), ALICE, "h").create_topic_refusal("t") is None
    assert Access(authorizer(acl("u", operation=AclOperation.CREATE)), ALICE, "h").create_topic_refusal("t")


def test_idempotent_writes_take_idempotent_write_or_write_on_some_topic() -> None:
    assert not Access(authorizer(), ALICE, "h").may_write_idempotently()
    assert Access(authorizer(acl("t", operation=W)), ALICE, "h").may_write_idempotently()
    assert Access(authorizer(acl("p", PREFIXED, operation=W)), ALICE, "h").may_write_idempotently()
    assert not Access(authorizer(acl("t", operation=W), acl("*", operation=W, permission=DENY)), ALICE,
                      "h").may_write_idempotently()
    assert not Access(authorizer(acl("t", operation=W), acl("t", operation=W, permission=DENY)), ALICE,
                      "h").may_write_idempotently()
    # a DENY of a prefix covers the ALLOWs under it, not those above it
    assert not Access(authorizer(acl("team-a-", PREFIXED, operation=W), acl("team-", PREFIXED, operation=W,
                                                                           permission=DENY)), ALICE,
                      "h").may_write_idempotently()
    assert Access(authorizer(acl("team-", PREFIXED, operation=W), acl("team-a-", PREFIXED, operation=W,
                                                                      permission=DENY)), ALICE,
                  "h").may_write_idempotently()
    cluster = acl("kafka-cluster", operation=AclOperation.IDEMPOTENT_WRITE, resource_type=ResourceType.CLUSTER)
    assert Access(authorizer(cluster), ALICE, "h").may_write_idempotently()


def test_thousands_of_acls_still_match_by_name() -> None:
    many = [acl(f"topic-{i}") for i in range(5000)] + [acl(f"team-{i}-", PREFIXED, operation=W) for i in range(500)]
    auth = authorizer(*many)
    assert may(auth, READ, "topic-4321") and not may(auth, READ, "topic-5000")
    assert may(auth, W, "team-7-orders") and not may(auth, W, "team-x")


def test_acls_are_kept_and_restored_from_the_bucket(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalFolderStore(str(tmp_path / "bucket"))
        (tmp_path / "data").mkdir()
        first = Authorizer(ON, KeptDocument(str(tmp_path / "data"), "acls"))
        first.document.keep_in(store)
        await first.load()
        await first.create([acl("t"), acl("t"), acl("p", PREFIXED, permission=DENY)])
        assert len(first.index.bindings) == 2  # one binding once
        shutil.rmtree(tmp_path / "data")
        (tmp_path / "data").mkdir()
        restored = Authorizer(ON, KeptDocument(str(tmp_path / "data"), "acls"))
        restored.document.keep_in(store)
        await restored.load()
        assert set(restored.index.bindings) == {acl("t"), acl("p", PREFIXED, permission=DENY)}
        assert may(restored, READ, "t")
        removed = await restored.delete([AclBindingFilter.of(2, "payments", 2, None, None, 1, 1)])
        assert removed == [[acl("p", PREFIXED, permission=DENY)]]
        again = Authorizer(ON, KeptDocument(str(tmp_path / "data"), "acls"))
        await again.load()  # the local copy, without the bucket
        assert again.index.bindings == (acl("t"),)

    asyncio.run(scenario())


def test_a_change_the_bucket_refuses_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = FaultInjectingStore(LocalFolderStore(str(tmp_path / "bucket")))
        auth = Authorizer(ON, KeptDocument(str(tmp_path), "acls"))
        auth.document.keep_in(store)
        await auth.load()
        await auth.create([acl("t")])
        store.fail_next(2, "put")
        with pytest.raises(DocumentError):
            await auth.create([acl("u")])
        with pytest.raises(DocumentError):
            await auth.delete([AclBindingFilter.of(1, None, 1, None, None, 1, 1)])
        assert auth.index.bindings == (acl("t"),)
        assert not may(auth, READ, "u") and may(auth, READ, "t")

    asyncio.run(scenario())


def test_literal_and_prefixed_acls_of_one_name_are_apart() -> None:
    auth = authorizer(acl("ab", LITERAL), acl("ab", PREFIXED, permission=DENY))
    assert not may(auth, READ, "ab")
    assert may(authorizer(acl("ab", LITERAL), acl("ab", PREFIXED, operation=W, permission=DENY)), READ, "ab")


def test_the_authorizer_properties_are_kafkas() -> None:
    for name in ("org.apache.kafka.metadata.authorizer.StandardAuthorizer", "kafka.security.authorizer.AclAuthorizer",
                 "tierlog"):
        assert BrokerSettings.parse({"authorizer.class.name": name}).authorizer.enabled
    assert not BrokerSettings.parse({}).authorizer.enabled
    parsed = BrokerSettings.parse({"authorizer.class.name": "tierlog", "super.users": "User:admin; User:CN=a,O=b",
                                   "allow.everyone.if.no.acl.found": "true"}).authorizer
    assert parsed.super_users == {"User:admin", "User:CN=a,O=b"} and parsed.allow_everyone_if_no_acl_found
    for bad in ({"authorizer.class.name": "com.example.Mine"}, {"super.users": "admin"},
                {"allow.everyone.if.no.acl.found": "yes"}):
        with pytest.raises(InvalidConfigError):
            BrokerSettings.parse(bad)
