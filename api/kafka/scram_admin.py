"""Kafka's DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): the
entities mapped to and from the user store, which makes every check. They take DESCRIBE and
ALTER on the cluster (Kafka's)."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.security.acls import CLUSTER_NAME, AclOperation, ResourceType
from broker.security.documents import DocumentError
from broker.security.users import Deletion, Upsertion, UserError

from .acls import access
from .codec import build, nested
from .context import NO_THROTTLE, Call, KafkaContext


async def handle_describe_user_scram_credentials(kafka: KafkaContext, call: Call, request: Any) -> Any:
    names = None if request.users is None else [user.name for user in request.users]
    result_type = nested(call.response_type, "results")
    refused = access(kafka, call).refusal(AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME)
    if refused is not None:  # on each user named, as Kafka's; at the top only for all users, as
        # librdkafka (2.16) frees a request-level error string it never allocated and crashes.
        return build(call.response_type, throttle_time=NO_THROTTLE,
                     error_code=refused.code if names is None else ErrorCode.none, error_message=None,
                     results=tuple(build(result_type, user=name, error_code=refused.code,
                                         error_message=str(refused), credential_infos=())
                                   for name in names or ()))
    info_type = nested(result_type, "credential_infos")
    results: list[Any] = []
    for described in kafka.broker.users.describe(names):
        if isinstance(described, UserError):
            name = names[len(results)] if names else ""
            results.append(build(result_type, user=name, error_code=described.code,
                                 error_message=described.message, credential_infos=()))
            continue
        infos = tuple(build(info_type, mechanism=mechanism.kafka_type, iterations=iterations)
                      for mechanism, iterations in described.mechanisms)
        results.append(build(result_type, user=described.name, error_code=ErrorCode.none, error_message=None,
                             credential_infos=infos))
    return build(call.response_type, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message=None,
                 results=tuple(results))


async def handle_alter_user_scram_credentials(kafka: KafkaContext, call: Call, request: Any) -> Any:
    upsertions = [Upsertion(u.name, u.mechanism, u.iterations, bytes(u.salt), bytes(u.salted_password))
                  for u in request.upsertions]
    deletions = [Deletion(d.name, d.mechanism) for d in request.deletions]
    names = [d.name for d in deletions] + [u.name for u in upsertions]
    denied = access(kafka, call).refusal(AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME)
    outcome: dict[str, UserError | None]
    if denied is not None:
        outcome = dict.fromkeys(names, UserError(denied.code, str(denied)))
    else:
        try:
            outcome = await kafka.broker.users.alter(upsertions, deletions)
        except DocumentError as exc:  # the disk or the bucket refused the change: nothing changed
            outcome = dict.fromkeys(names, UserError(ErrorCode.kafka_storage_error, str(exc)))
    result_type = nested(call.response_type, "results")
    results = tuple(build(result_type, user=name, error_code=error.code if error else ErrorCode.none,
                          error_message=error.message if error else None)
                    for name, error in outcome.items())
    return build(call.response_type, throttle_time=NO_THROTTLE, results=results)
