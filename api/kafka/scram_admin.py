"""Kafka's DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): the
entities mapped to and from the user store, which makes every check."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.security.documents import DocumentError
from broker.security.users import Deletion, Upsertion, UserError

from .codec import build, nested
from .context import NO_THROTTLE, Call, KafkaContext


async def handle_describe_user_scram_credentials(kafka: KafkaContext, call: Call, request: Any) -> Any:
    names = None if request.users is None else [user.name for user in request.users]
    result_type = nested(call.response_type, "results")
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
    try:
        outcome = await kafka.broker.users.alter(upsertions, deletions)
    except DocumentError as exc:  # the disk or the bucket refused the change: nothing changed
        refused = UserError(ErrorCode.kafka_storage_error, str(exc))
        outcome = {name: refused for name in [d.name for d in deletions] + [u.name for u in upsertions]}
    result_type = nested(call.response_type, "results")
    results = tuple(build(result_type, user=name, error_code=error.code if error else ErrorCode.none,
                          error_message=error.message if error else None)
                    for name, error in outcome.items())
    return build(call.response_type, throttle_time=NO_THROTTLE, results=results)
