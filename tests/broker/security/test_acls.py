"""Kafka's ACL model: bindings checked as Kafka checks a new ACL, filters with Kafka's ANY
and MATCH semantics (AclBindingFilter)."""

from __future__ import annotations

import pytest

from broker.errors import InvalidRequestError
from broker.security.acls import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
)

TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
LITERAL, PREFIXED = PatternType.LITERAL, PatternType.PREFIXED
READ, ALLOW, DENY = AclOperation.READ, AclPermissionType.ALLOW, AclPermissionType.DENY


def acl(name: str, pattern: PatternType = LITERAL, principal: str = "User:alice", host: str = "*",
        operation: AclOperation = READ, permission: AclPermissionType = ALLOW,
        resource_type: ResourceType = TOPIC) -> AclBinding:
    return AclBinding(resource_type, name, pattern, principal, host, operation, permission)


def test_the_wire_codes_are_kafkas() -> None:
    assert (TOPIC, GROUP, CLUSTER, ResourceType.TRANSACTIONAL_ID) == (2, 3, 4, 5)
    assert (LITERAL, PREFIXED, PatternType.MATCH, PatternType.ANY) == (3, 4, 2, 1)
    assert (AclOperation.ALL, READ, AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.IDEMPOTENT_WRITE) == \
        (2, 3, 4, 8, 12)
    assert (DENY, ALLOW) == (2, 3)


def test_a_new_binding_is_checked_as_kafka_checks_one() -> None:
    good = AclBinding.of(2, "orders", 3, "User:alice", "*", 3, 3)
    assert good == acl("orders")
    assert AclBinding.of(4, "kafka-cluster", 3, "User:*", "10.0.0.1", 7, 2).resource_type is CLUSTER
    bad = {
        "resource type": (1, "t", 3, "User:a", "*", 3, 3),  # ANY
        "pattern type": (2, "t", 2, "User:a", "*", 3, 3),  # MATCH
        "operation": (2, "t", 3, "User:a", "*", 1, 3),  # ANY
        "permission": (2, "t", 3, "User:a", "*", 3, 1),  # ANY
        "empty name": (2, "", 3, "User:a", "*", 3, 3),
        "cluster name": (4, "other", 3, "User:a", "*", 7, 3),
        "principal": (2, "t", 3, "alice", "*", 3, 3),
        "unknown code": (2, "t", 3, "User:a", "*", 99, 3),
    }
    for why, values in bad.items():
        with pytest.raises(InvalidRequestError):
            AclBinding.of(*values)
            pytest.fail(why)


def test_bindings_survive_their_json_form() -> None:
    binding = acl("pay-", PREFIXED, "User:CN=a:b", "10.1.2.3", AclOperation.ALTER_CONFIGS, DENY)
    assert AclBinding.from_json(binding.to_json()) == binding


def test_filters_match_as_kafkas_acl_binding_filter() -> None:
    everything = AclBindingFilter.of(1, None, 1, None, None, 1, 1)
    literal, wildcard, prefix = acl("orders"), acl("*"), acl("ord", PREFIXED)
    assert all(everything.matches(a) for a in (literal, wildcard, prefix))
    # ANY with a name: that exact name, of any pattern type
    by_name = AclBindingFilter.of(2, "orders", 1, None, None, 1, 1)
    assert [by_name.matches(a) for a in (literal, wildcard, prefix)] == [True, False, False]
    # MATCH: every pattern that applies to the name
    applying = AclBindingFilter.of(2, "orders", 2, None, None, 1, 1)
    assert [applying.matches(a) for a in (literal, wildcard, prefix, acl("pay", PREFIXED))] == \
        [True, True, True, False]
    # one pattern type; the entry's fields
    assert not AclBindingFilter.of(2, None, 4, None, None, 1, 1).matches(literal)
    assert not AclBindingFilter.of(1, None, 1, "User:bob", None, 1, 1).matches(literal)
    assert not AclBindingFilter.of(1, None, 1, None, "10.0.0.1", 1, 1).matches(literal)
    assert not AclBindingFilter.of(1, None, 1, None, None, 4, 1).matches(literal)
    assert not AclBindingFilter.of(1, None, 1, None, None, 1, 2).matches(literal)
    assert not AclBindingFilter.of(3, None, 1, None, None, 1, 1).matches(literal)


def test_a_filter_of_unknown_elements_is_refused() -> None:
    for values in ((0, None, 1, None, None, 1, 1), (1, None, 0, None, None, 1, 1), (1, None, 1, None, None, 0, 1),
                   (1, None, 1, None, None, 1, 0), (1, None, 1, None, None, 1, 9)):
        with pytest.raises(InvalidRequestError):
            AclBindingFilter.of(*values)
