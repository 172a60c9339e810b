"""The authorizer: Kafka's StandardAuthorizer rules over the ACLs kept in the cluster's
`acls` document, and what each action of either protocol needs (`Access`).

Rules (Kafka's): `super.users` may do anything; a matching DENY beats any ALLOW; an ALLOW
of READ, WRITE, DELETE or ALTER implies DESCRIBE, one of ALTER_CONFIGS implies
DESCRIBE_CONFIGS, ALL covers every operation (implication is for ALLOW only: a DENY of
READ does not deny DESCRIBE); a resource no ACL applies to (of any principal) is allowed
only with `allow.everyone.if.no.acl.found`. Without `authorizer.class.name` everything
is allowed, as Kafka without an authorizer.

Produce and fetch ask once per topic per request, so the ACLs are indexed by resource
type and name (literal names in a dict, prefixes by their lengths); a change builds a new
index, so nothing read from the old one outlives the change."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kio.schema.errors import ErrorCode
from prometheus_client import Counter

from broker.errors import RefusedError

from .acls import (
    CLUSTER_NAME,
    WILDCARD,
    WILDCARD_PRINCIPAL,
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
)
from .documents import KeptDocument
from .principal import Principal

DENIALS = Counter("tierlog_authorization_denials_total", "Requests (or parts of them) the authorizer refused, "
                  "by resource type and operation", ["resource_type", "operation"])

_IMPLIED = {  # an ALLOW of the key's operation also allows these
    AclOperation.READ: frozenset({AclOperation.DESCRIBE}),
    AclOperation.WRITE: frozenset({AclOperation.DESCRIBE}),
    AclOperation.DELETE: frozenset({AclOperation.DESCRIBE}),
    AclOperation.ALTER: frozenset({AclOperation.DESCRIBE}),
    AclOperation.ALTER_CONFIGS: frozenset({AclOperation.DESCRIBE_CONFIGS}),
}

# The error a refusal answers, by the resource refused.
_REFUSAL_CODES = {
    ResourceType.TOPIC: ErrorCode.topic_authorization_failed,
    ResourceType.GROUP: ErrorCode.group_authorization_failed,
    ResourceType.CLUSTER: ErrorCode.cluster_authorization_failed,
    ResourceType.TRANSACTIONAL_ID: ErrorCode.transactional_id_authorization_failed,
}


class AuthorizationError(RefusedError):
    """The principal may not do an operation on a resource; its code is Kafka's for the
    resource's type (TOPIC_AUTHORIZATION_FAILED ...); gRPC answers PERMISSION_DENIED."""


@dataclass(frozen=True)
class AuthorizerConfig:
    enabled: bool = False  # authorizer.class.name is set
    super_users: frozenset[str] = frozenset()
    allow_everyone_if_no_acl_found: bool = False


def _allows(acl_operation: AclOperation, wanted: AclOperation) -> bool:
    return acl_operation is wanted or acl_operation is AclOperation.ALL or \
        wanted in _IMPLIED.get(acl_operation, ())


class AclIndex:
    """Immutable: the ACLs by resource type, then by name (literal, `*` among them) or by
    prefix, with the prefixes' lengths, so a name's ACLs are a few dict lookups."""

    def __init__(self, bindings: Iterable[AclBinding] = ()) -> None:
        self.bindings: tuple[AclBinding, ...] = tuple(dict.fromkeys(bindings))
        self._literal: dict[ResourceType, dict[str, list[AclBinding]]] = {}
        self._prefixed: dict[ResourceType, dict[str, list[AclBinding]]] = {}
        for acl in self.bindings:
            by_name = self._literal if acl.pattern_type is PatternType.LITERAL else self._prefixed
            by_name.setdefault(acl.resource_type, {}).setdefault(acl.name, []).append(acl)
        self._prefix_lengths = {rtype: sorted({len(prefix) for prefix in prefixes})
                                for rtype, prefixes in self._prefixed.items()}

    def applying_to(self, resource_type: ResourceType, name: str) -> list[AclBinding]:
        """Every ACL whose pattern covers the resource: its literal name, the wildcard,
        and each prefix of the name."""
        found: list[AclBinding] = []
        literal = self._literal.get(resource_type)
        if literal is not None:
            found += literal.get(name, ())
            if name != WILDCARD:
                found += literal.get(WILDCARD, ())
        prefixed = self._prefixed.get(resource_type)
        if prefixed is not None:
            for length in self._prefix_lengths[resource_type]:
                if length > len(name):
                    break
                found += prefixed.get(name[:length], ())
        return found


class Authorizer:
    """Event loop only; changes are serialized by the document's lock."""

    def __init__(self, config: AuthorizerConfig, document: KeptDocument) -> None:
        self.config = config
        self.document = document
        self.index = AclIndex()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    async def load(self) -> None:
        stored = await self.document.load()
        self.index = AclIndex(AclBinding.from_json(row) for row in (stored or {}).get("acls", ()))

    def authorize(self, principal: Principal, host: str, operation: AclOperation, resource_type: ResourceType,
                  name: str, *, count: bool = True) -> bool:
        """Whether `principal` connecting from `host` may do `operation` on the resource;
        `count`: a denial counts in the metrics (not for what a listing leaves out)."""
        if not self.config.enabled:
            return True
        allowed = self._decide(str(principal), host, operation, resource_type, name)
        if not allowed and count:
            DENIALS.labels(resource_type.name, operation.name).inc()
        return allowed

    def _decide(self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType,
                name: str) -> bool:
        if principal in self.config.super_users:
            return True
        any_acl = allowed = False
        for acl in self.index.applying_to(resource_type, name):
            any_acl = True
            if acl.principal not in (principal, WILDCARD_PRINCIPAL) or acl.host not in (host, WILDCARD):
                continue
            if acl.permission is AclPermissionType.DENY:
                if acl.operation in (operation, AclOperation.ALL):
                    return False
            elif _allows(acl.operation, operation):
                allowed = True
        return allowed or (not any_acl and self.config.allow_everyone_if_no_acl_found)

    def authorize_any(self, principal: Principal, host: str, operation: AclOperation,
                      resource_type: ResourceType) -> bool:
        """Kafka's authorizeByResourceType: whether some resource of the type may take the
        operation (an ALLOW for the principal that no DENY of it covers). Idempotent
        producers without IDEMPOTENT_WRITE on the cluster need WRITE on some topic."""
        if self.authorize(principal, host, operation, resource_type, "hardcode", count=False):
            return True  # a super user, or no ACL and allow.everyone.if.no.acl.found
        who = str(principal)
        mine = [acl for acl in self.index.bindings
                if acl.resource_type is resource_type and acl.principal in (who, WILDCARD_PRINCIPAL)
                and acl.host in (host, WILDCARD) and acl.operation in (operation, AclOperation.ALL)]
        denied = [acl for acl in mine if acl.permission is AclPermissionType.DENY]
        denied_literal = {acl.name for acl in denied if acl.pattern_type is PatternType.LITERAL}
        denied_prefixes = [acl.name for acl in denied if acl.pattern_type is PatternType.PREFIXED]
        if WILDCARD not in denied_literal:
            for acl in mine:  # an ALLOW no DENY of the same literal name or of a prefix of it covers
                if acl.permission is AclPermissionType.ALLOW and not (
                        acl.pattern_type is PatternType.LITERAL and acl.name in denied_literal) and \
                        not any(acl.name.startswith(prefix) for prefix in denied_prefixes):
                    return True
        DENIALS.labels(resource_type.name, operation.name).inc()
        return False

    # -- the ACLs --------------------------------------------------------------------------

    def describe(self, wanted: AclBindingFilter) -> list[AclBinding]:
        return [acl for acl in self.index.bindings if wanted.matches(acl)]

    async def create(self, bindings: list[AclBinding]) -> None:
        """Add ACLs (one already there is kept once); kept in the document first, so a
        write that fails (DocumentError) changes nothing."""
        async with self.document.lock:
            changed = AclIndex((*self.index.bindings, *bindings))
            await self._keep(changed)

    async def delete(self, filters: list[AclBindingFilter]) -> list[list[AclBinding]]:
        """Remove the ACLs each filter matches; returns them, by filter."""
        async with self.document.lock:
            removed = [self.describe(f) for f in filters]
            gone = {acl for found in removed for acl in found}
            if gone:
                await self._keep(AclIndex(acl for acl in self.index.bindings if acl not in gone))
            return removed

    async def _keep(self, changed: AclIndex) -> None:
        await self.document.save({"version": 1, "acls": [acl.to_json() for acl in changed.bindings]})
        self.index = changed


# What an authorized-operations field may hold per resource type (Kafka's
# AclEntry.supportedOperations); Kafka's value when it was not asked for.
SUPPORTED_OPERATIONS: dict[ResourceType, tuple[AclOperation, ...]] = {
    ResourceType.TOPIC: (AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE,
                         AclOperation.DELETE, AclOperation.ALTER, AclOperation.DESCRIBE_CONFIGS,
                         AclOperation.ALTER_CONFIGS),
    ResourceType.GROUP: (AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE),
    ResourceType.CLUSTER: (AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
                           AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER,
                           AclOperation.DESCRIBE),
    ResourceType.TRANSACTIONAL_ID: (AclOperation.DESCRIBE, AclOperation.WRITE),
}
OPERATIONS_NOT_ASKED = -2147483648


@dataclass(frozen=True)
class Access:
    """One request's principal and address before the authorizer, and what each action of
    either protocol needs (Kafka's KafkaApis operations), so the Kafka handlers and the
    gRPC service ask the same questions. The `*_refusal` methods answer None when allowed,
    else the error to answer with (Kafka handlers answer it per topic, gRPC raises it)."""

    authorizer: Authorizer
    principal: Principal
    host: str  # the client's address, without Kafka's leading slash

    def may(self, operation: AclOperation, resource_type: ResourceType, name: str, *, count: bool = True) -> bool:
        return self.authorizer.authorize(self.principal, self.host, operation, resource_type, name, count=count)

    def refusal(self, operation: AclOperation, resource_type: ResourceType, name: str) -> AuthorizationError | None:
        """None if allowed, else the refusal, naming the operation and the resource."""
        if self.may(operation, resource_type, name):
            return None
        shown = "the cluster" if resource_type is ResourceType.CLUSTER else f"{resource_type.name} {name!r}"
        return AuthorizationError(_REFUSAL_CODES[resource_type], f"{self.principal} may not {operation.name} {shown}")

    def authorized_operations(self, resource_type: ResourceType, name: str) -> int:
        """Kafka's authorized-operations bit field (bit n set: AclOperation n allowed) of the
        resource for this principal; every supported operation without an authorizer."""
        return sum(1 << operation for operation in SUPPORTED_OPERATIONS[resource_type]
                   if self.may(operation, resource_type, name, count=False))

    def check(self, operation: AclOperation, resource_type: ResourceType, name: str) -> None:
        enforce(self.refusal(operation, resource_type, name))

    def check_cluster(self, operation: AclOperation) -> None:
        self.check(operation, ResourceType.CLUSTER, CLUSTER_NAME)

    # -- what actions need -----------------------------------------------------------------

    def transaction_refusal(self, transactional_id: str) -> AuthorizationError | None:
        """WRITE on the transactional id: a transactional producer's every request."""
        return self.refusal(AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id)

    def write_refusal(self, topic: str) -> AuthorizationError | None:
        return self.refusal(AclOperation.WRITE, ResourceType.TOPIC, topic)

    def read_refusal(self, topic: str) -> AuthorizationError | None:
        return self.refusal(AclOperation.READ, ResourceType.TOPIC, topic)

    def describe_refusal(self, topic: str) -> AuthorizationError | None:
        return self.refusal(AclOperation.DESCRIBE, ResourceType.TOPIC, topic)

    def delete_topic_refusal(self, topic: str) -> AuthorizationError | None:
        return self.refusal(AclOperation.DELETE, ResourceType.TOPIC, topic)

    def create_topic_refusal(self, topic: str) -> AuthorizationError | None:
        """CREATE on the cluster, or on the topic (Kafka's CreateTopics and auto-creation)."""
        if self.may(AclOperation.CREATE, ResourceType.CLUSTER, CLUSTER_NAME, count=False):
            return None
        return self.refusal(AclOperation.CREATE, ResourceType.TOPIC, topic)

    def commit_refusal(self, group: str, topic: str) -> AuthorizationError | None:
        """READ on the group, then on the topic (Kafka's OffsetCommit)."""
        return self.refusal(AclOperation.READ, ResourceType.GROUP, group) or self.read_refusal(topic)

    def fetch_committed_refusal(self, group: str, topic: str) -> AuthorizationError | None:
        """DESCRIBE on the group, then on the topic (Kafka's OffsetFetch)."""
        return self.refusal(AclOperation.DESCRIBE, ResourceType.GROUP, group) or self.describe_refusal(topic)

    def refused_topics(self, operation: AclOperation, topics: Iterable[str]) -> set[str]:
        """The topics among `topics` the principal may not do `operation` on, each asked once."""
        return {topic for topic in set(topics) if not self.may(operation, ResourceType.TOPIC, topic)}

    def may_write_idempotently(self) -> bool:
        """IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (Kafka 3+)."""
        return self.may(AclOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, CLUSTER_NAME, count=False) or \
            self.authorizer.authorize_any(self.principal, self.host, AclOperation.WRITE, ResourceType.TOPIC)


def enforce(refusal: AuthorizationError | None) -> None:
    if refusal is not None:
        raise refusal
