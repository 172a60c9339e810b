"""The Kafka APIs this broker serves, with the version ranges it implements.

ApiVersions advertises exactly this table; clients pick the highest version both sides
know. Every version in a range has a kio schema and is handled by the same handler.
InitProducerId and the transaction APIs stop at the versions before KIP-890's second
part (transaction version 2), whose clients expect an epoch bump on every EndTxn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from .admin import (
    handle_alter_configs,
    handle_create_partitions,
    handle_create_topics,
    handle_delete_topics,
    handle_describe_configs,
    handle_incremental_alter_configs,
)
from .codec import build, nested, response_type
from .context import NO_THROTTLE, Call, Handler, KafkaContext
from .fetch import handle_fetch
from .groups import (
    handle_delete_groups,
    handle_describe_groups,
    handle_find_coordinator,
    handle_heartbeat,
    handle_join_group,
    handle_leave_group,
    handle_list_groups,
    handle_offset_commit,
    handle_offset_fetch,
    handle_sync_group,
)
from .metadata import handle_describe_cluster, handle_metadata
from .offsets import handle_list_offsets
from .produce import handle_produce
from .txn_apis import (
    handle_add_offsets_to_txn,
    handle_add_partitions_to_txn,
    handle_end_txn,
    handle_init_producer_id,
    handle_txn_offset_commit,
)

API_VERSIONS_KEY = 18
PRODUCE_KEY = 0


@dataclass(frozen=True)
class Api:
    key: int
    min_version: int
    max_version: int
    handler: Handler

    def supports(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version


async def handle_api_versions(kafka: KafkaContext, call: Call, request: Any) -> Any:
    return api_versions_response(call.response_type, ErrorCode.none)


def api_versions_response(response: type, error: ErrorCode) -> Any:
    entity = nested(response, "api_keys")
    keys = tuple(build(entity, api_key=a.key, min_version=a.min_version, max_version=a.max_version)
                 for a in APIS.values())
    return build(response, error_code=error, api_keys=keys, throttle_time=NO_THROTTLE)


def unsupported_api_versions() -> Any:
    """The answer to an ApiVersions version we lack: v0, UNSUPPORTED_VERSION, and our table,
    so the client retries with a version both sides know."""
    return api_versions_response(response_type(API_VERSIONS_KEY, 0), ErrorCode.unsupported_version)


APIS: dict[int, Api] = {
    api.key: api
    for api in (
        Api(0, 3, 12, handle_produce),
        Api(1, 4, 12, handle_fetch),
        Api(2, 1, 9, handle_list_offsets),
        Api(3, 0, 12, handle_metadata),
        Api(8, 2, 8, handle_offset_commit),
        Api(9, 1, 8, handle_offset_fetch),
        Api(10, 0, 4, handle_find_coordinator),
        Api(11, 0, 9, handle_join_group),
        Api(12, 0, 4, handle_heartbeat),
        Api(13, 0, 5, handle_leave_group),
        Api(14, 0, 5, handle_sync_group),
        Api(15, 0, 5, handle_describe_groups),
        Api(16, 0, 4, handle_list_groups),
        Api(API_VERSIONS_KEY, 0, 4, handle_api_versions),
        Api(19, 2, 7, handle_create_topics),
        Api(20, 1, 6, handle_delete_topics),
        Api(32, 1, 4, handle_describe_configs),
        Api(33, 0, 2, handle_alter_configs),
        Api(37, 0, 3, handle_create_partitions),
        Api(42, 0, 2, handle_delete_groups),
        Api(44, 0, 1, handle_incremental_alter_configs),
        Api(22, 0, 4, handle_init_producer_id),
        Api(24, 0, 3, handle_add_partitions_to_txn),
        Api(25, 0, 3, handle_add_offsets_to_txn),
        Api(26, 0, 3, handle_end_txn),
        Api(28, 0, 3, handle_txn_offset_commit),
        Api(60, 0, 1, handle_describe_cluster),
    )
}
