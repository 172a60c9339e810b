"""Kafka's ACL model: a binding is a resource pattern (type, name, literal or prefixed)
and an entry (principal, host, operation, allow or deny), with Kafka's numeric codes as
the ACL APIs carry them, and the filters DescribeAcls and DeleteAcls take (Kafka's
AclBindingFilter: ANY matches every value, MATCH every pattern that applies to a name)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from broker.errors import InvalidRequestError

from .principal import Principal

WILDCARD = "*"  # a literal resource name, principal name or host that matches every one
CLUSTER_NAME = "kafka-cluster"  # the one name of the CLUSTER resource
WILDCARD_PRINCIPAL = "User:*"


class ResourceType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class AclPermissionType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


def _enum(kind: type[IntEnum], value: int, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise InvalidRequestError(f"unknown {what} {value}") from None


@dataclass(frozen=True, slots=True)
class AclBinding:
    """One ACL: who (principal, host) may or may not do what (operation) to which resources."""

    resource_type: ResourceType
    name: str
    pattern_type: PatternType
    principal: str  # Kafka's text form, User:alice or User:*
    host: str  # an address, or * for any
    operation: AclOperation
    permission: AclPermissionType

    @classmethod
    def of(cls, resource_type: int, name: str, pattern_type: int, principal: str, host: str, operation: int,
           permission: int) -> AclBinding:
        """A binding from the wire's values, checked as Kafka checks a new ACL
        (InvalidRequestError saying what is wrong)."""
        binding = cls(_enum(ResourceType, resource_type, "resource type"), name,
                      _enum(PatternType, pattern_type, "pattern type"), principal, host,
                      _enum(AclOperation, operation, "operation"),
                      _enum(AclPermissionType, permission, "permission type"))
        binding.check()
        return binding

    def check(self) -> None:
        if self.resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
            raise InvalidRequestError(f"invalid resource type {self.resource_type.name}")
        if self.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
            raise InvalidRequestError(f"invalid pattern type {self.pattern_type.name}: LITERAL or PREFIXED")
        if self.operation in (AclOperation.UNKNOWN, AclOperation.ANY):
            raise InvalidRequestError(f"invalid operation {self.operation.name}")
        if self.permission not in (AclPermissionType.ALLOW, AclPermissionType.DENY):
            raise InvalidRequestError(f"invalid permission type {self.permission.name}: ALLOW or DENY")
        if not self.name:
            raise InvalidRequestError("invalid empty resource name")
        if self.resource_type is ResourceType.CLUSTER and self.name != CLUSTER_NAME:
            raise InvalidRequestError(f"the only valid name for the CLUSTER resource is {CLUSTER_NAME}")
        try:
            Principal.parse(self.principal)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
        if not self.host:
            raise InvalidRequestError("invalid empty host: an address, or * for any")

    def to_json(self) -> list[Any]:
        return [self.resource_type.name, self.name, self.pattern_type.name, self.principal, self.host,
                self.operation.name, self.permission.name]

    @classmethod
    def from_json(cls, row: list[Any]) -> AclBinding:
        rtype, name, pattern, principal, host, operation, permission = row
        return cls(ResourceType[rtype], name, PatternType[pattern], principal, host, AclOperation[operation],
                   AclPermissionType[permission])

    def __str__(self) -> str:
        return (f"{self.permission.name} {self.principal} from {self.host} {self.operation.name} on "
                f"{self.resource_type.name} {self.pattern_type.name} {self.name!r}")


@dataclass(frozen=True, slots=True)
class AclBindingFilter:
    """Kafka's AclBindingFilter: None (a null on the wire) and ANY match every value; a
    MATCH pattern type with a name matches the literal, wildcard and prefixed patterns
    that apply to that name."""

    resource_type: ResourceType
    name: str | None
    pattern_type: PatternType
    principal: str | None
    host: str | None
    operation: AclOperation
    permission: AclPermissionType

    @classmethod
    def of(cls, resource_type: int, name: str | None, pattern_type: int, principal: str | None, host: str | None,
           operation: int, permission: int) -> AclBindingFilter:
        found = cls(_enum(ResourceType, resource_type, "resource type"), name,
                    _enum(PatternType, pattern_type, "pattern type"), principal, host,
                    _enum(AclOperation, operation, "operation"),
                    _enum(AclPermissionType, permission, "permission type"))
        if found.resource_type is ResourceType.UNKNOWN or found.pattern_type is PatternType.UNKNOWN or \
                found.operation is AclOperation.UNKNOWN or found.permission is AclPermissionType.UNKNOWN:
            raise InvalidRequestError("the filter holds UNKNOWN elements")
        return found

    def matches(self, acl: AclBinding) -> bool:
        return self._matches_pattern(acl) and self._matches_entry(acl)

    def _matches_pattern(self, acl: AclBinding) -> bool:
        if self.resource_type is not ResourceType.ANY and self.resource_type is not acl.resource_type:
            return False
        if self.pattern_type not in (PatternType.ANY, PatternType.MATCH) and self.pattern_type is not acl.pattern_type:
            return False
        if self.name is None:
            return True
        if self.pattern_type in (PatternType.ANY, acl.pattern_type):
            return self.name == acl.name
        if acl.pattern_type is PatternType.LITERAL:  # MATCH
            return self.name == acl.name or acl.name == WILDCARD
        return self.name.startswith(acl.name)

    def _matches_entry(self, acl: AclBinding) -> bool:
        return ((self.principal is None or self.principal == acl.principal)
                and (self.host is None or self.host == acl.host)
                and self.operation in (AclOperation.ANY, acl.operation)
                and self.permission in (AclPermissionType.ANY, acl.permission))
