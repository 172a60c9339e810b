"""CreateAcls, DescribeAcls and DeleteAcls (Kafka's AclApis): CLUSTER ALTER to change ACLs,
CLUSTER DESCRIBE to list them, SECURITY_DISABLED without an authorizer; and `access`,
a request's principal and address before the broker's authorizer, for every handler."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.errors import InvalidRequestError
from broker.security.acls import AclBinding, AclBindingFilter, AclOperation
from broker.security.authorizer import Access, AuthorizationError
from broker.security.documents import DocumentError

from .codec import build, nested
from .context import NO_THROTTLE, Call, KafkaContext

NO_AUTHORIZER = "no authorizer is configured on the broker (authorizer.class.name)"


def access(kafka: KafkaContext, call: Call) -> Access:
    """Who sends the request, from where (Call.client_host is Kafka's `/1.2.3.4`)."""
    return Access(kafka.broker.authorizer, call.principal, call.client_host.lstrip("/"))


def _refusal(kafka: KafkaContext, call: Call, operation: AclOperation) -> tuple[ErrorCode, str] | None:
    """Why an ACL request is refused as a whole, if it is."""
    try:
        access(kafka, call).check_cluster(operation)
    except AuthorizationError as exc:
        return exc.code, str(exc)
    if not kafka.broker.authorizer.enabled:
        return ErrorCode.security_disabled, NO_AUTHORIZER
    return None


def _filter_of(wanted: Any) -> AclBindingFilter:
    return AclBindingFilter.of(wanted.resource_type_filter, wanted.resource_name_filter, wanted.pattern_type_filter,
                               wanted.principal_filter, wanted.host_filter, wanted.operation,
                               wanted.permission_type)


async def handle_create_acls(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    entity = nested(response, "results")
    refusal = _refusal(kafka, call, AclOperation.ALTER)
    if refusal is not None:
        return build(response, throttle_time=NO_THROTTLE, results=tuple(
            build(entity, error_code=refusal[0], error_message=refusal[1]) for _ in request.creations))
    outcomes: list[tuple[ErrorCode, str | None]] = []
    valid: list[AclBinding] = []
    for c in request.creations:
        try:
            valid.append(AclBinding.of(c.resource_type, c.resource_name, c.resource_pattern_type, c.principal, c.host,
                                       c.operation, c.permission_type))
            outcomes.append((ErrorCode.none, None))
        except InvalidRequestError as exc:
            outcomes.append((ErrorCode.invalid_request, str(exc)))
    if valid:
        try:
            await kafka.broker.authorizer.create(valid)
        except DocumentError as exc:  # nothing was added (the disk or the bucket refused): retriable
            outcomes = [(ErrorCode.kafka_storage_error, str(exc)) if code is ErrorCode.none else (code, message)
                        for code, message in outcomes]
    return build(response, throttle_time=NO_THROTTLE, results=tuple(
        build(entity, error_code=code, error_message=message) for code, message in outcomes))


async def handle_describe_acls(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    refusal = _refusal(kafka, call, AclOperation.DESCRIBE)
    if refusal is None:
        try:
            found = kafka.broker.authorizer.describe(_filter_of(request))
        except InvalidRequestError as exc:
            refusal = ErrorCode.invalid_request, str(exc)
    if refusal is not None:
        return build(response, throttle_time=NO_THROTTLE, error_code=refusal[0], error_message=refusal[1],
                     resources=())
    resource_entity = nested(response, "resources")
    acl_entity = nested(resource_entity, "acls")
    by_resource: dict[tuple[int, str, int], list[Any]] = {}
    for acl in found:
        by_resource.setdefault((acl.resource_type, acl.name, acl.pattern_type), []).append(build(
            acl_entity, principal=acl.principal, host=acl.host, operation=acl.operation,
            permission_type=acl.permission))
    return build(response, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message=None, resources=tuple(
        build(resource_entity, resource_type=rtype, resource_name=name, pattern_type=pattern, acls=tuple(acls))
        for (rtype, name, pattern), acls in by_resource.items()))


async def handle_delete_acls(kafka: KafkaContext, call: Call, request: Any) -> Any:
    response = call.response_type
    result_entity = nested(response, "filter_results")
    matching_entity = nested(result_entity, "matching_acls")

    def failed(code: ErrorCode, message: str) -> Any:
        return build(result_entity, error_code=code, error_message=message, matching_acls=())

    refusal = _refusal(kafka, call, AclOperation.ALTER)
    if refusal is not None:
        return build(response, throttle_time=NO_THROTTLE,
                     filter_results=tuple(failed(*refusal) for _ in request.filters))
    try:
        filters = [_filter_of(f) for f in request.filters]
        removed = await kafka.broker.authorizer.delete(filters)
    except InvalidRequestError as exc:  # Kafka refuses the request whole for a bad filter
        return build(response, throttle_time=NO_THROTTLE,
                     filter_results=tuple(failed(ErrorCode.invalid_request, str(exc)) for _ in request.filters))
    except DocumentError as exc:
        return build(response, throttle_time=NO_THROTTLE,
                     filter_results=tuple(failed(ErrorCode.kafka_storage_error, str(exc)) for _ in request.filters))
    return build(response, throttle_time=NO_THROTTLE, filter_results=tuple(
        build(result_entity, error_code=ErrorCode.none, error_message=None, matching_acls=tuple(
            build(matching_entity, error_code=ErrorCode.none, error_message=None, resource_type=acl.resource_type,
                  resource_name=acl.name, pattern_type=acl.pattern_type, principal=acl.principal, host=acl.host,
                  operation=acl.operation, permission_type=acl.permission)
            for acl in found))
        for found in removed))
