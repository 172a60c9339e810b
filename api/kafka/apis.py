"""The Kafka APIs this broker serves, with the version ranges it implements.

ApiVersions advertises exactly this table; clients pick the highest version both sides
know. Every version in a range has a kio schema and is handled by the same handler.
InitProducerId and the transaction APIs stop at the versions before KIP-890's second
part (transaction version 2), whose clients expect an epoch bump on every EndTxn.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from typing import Any

from kio.schema.errors import ErrorCode

from .acls import handle_create_acls, handle_delete_acls, handle_describe_acls
from .admin import (
    handle_alter_configs,
    handle_create_partitions,
    handle_create_topics,
    handle_delete_topics,
    handle_describe_configs,
    handle_incremental_alter_configs,
)
from .codec import build, nested, response_type
from .consumer_groups import handle_consumer_group_describe, handle_consumer_group_heartbeat
from .context import NO_THROTTLE, Call, Handler, KafkaContext
from .describe import (
    handle_describe_log_dirs,
    handle_describe_producers,
    handle_describe_transactions,
    handle_elect_leaders,
    handle_list_transactions,
)
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
    handle_offset_delete,
    handle_offset_fetch,
    handle_sync_group,
)
from .metadata import handle_describe_cluster, handle_metadata
from .offsets import handle_list_offsets
from .produce import handle_produce
from .records_admin import handle_delete_records
from .sasl import handle_sasl_authenticate, handle_sasl_handshake
from .scram_admin import handle_alter_user_scram_credentials, handle_describe_user_scram_credentials
from .txn_apis import (
    handle_add_offsets_to_txn,
    handle_add_partitions_to_txn,
    handle_end_txn,
    handle_init_producer_id,
    handle_txn_offset_commit,
)


class ApiKey(IntEnum):
    """Kafka's API keys (the request header's api_key), by the names of its message schemas."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    TXN_OFFSET_COMMIT = 28
    DESCRIBE_ACLS = 29
    CREATE_ACLS = 30
    DELETE_ACLS = 31
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    DESCRIBE_LOG_DIRS = 35
    SASL_AUTHENTICATE = 36
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    ELECT_LEADERS = 43
    INCREMENTAL_ALTER_CONFIGS = 44
    OFFSET_DELETE = 47
    DESCRIBE_USER_SCRAM_CREDENTIALS = 50
    ALTER_USER_SCRAM_CREDENTIALS = 51
    DESCRIBE_CLUSTER = 60
    DESCRIBE_PRODUCERS = 61
    DESCRIBE_TRANSACTIONS = 65
    LIST_TRANSACTIONS = 66
    CONSUMER_GROUP_HEARTBEAT = 68
    CONSUMER_GROUP_DESCRIBE = 69


@cache
def api_name(api_key: int) -> str:
    """Kafka's name of an API (its message schema's), as metrics label it: `DescribeLogDirs`."""
    try:
        return "".join(word.title() for word in ApiKey(api_key).name.split("_"))
    except ValueError:
        return str(api_key)


@dataclass(frozen=True)
class Api:
    key: ApiKey
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
    return api_versions_response(response_type(ApiKey.API_VERSIONS, 0), ErrorCode.unsupported_version)


APIS: dict[int, Api] = {
    api.key: api
    for api in (
        Api(ApiKey.PRODUCE, 3, 12, handle_produce),
        Api(ApiKey.FETCH, 4, 12, handle_fetch),
        Api(ApiKey.LIST_OFFSETS, 1, 9, handle_list_offsets),
        Api(ApiKey.METADATA, 0, 12, handle_metadata),
        Api(ApiKey.OFFSET_COMMIT, 2, 9, handle_offset_commit),
        Api(ApiKey.OFFSET_FETCH, 1, 9, handle_offset_fetch),
        Api(ApiKey.FIND_COORDINATOR, 0, 4, handle_find_coordinator),
        Api(ApiKey.JOIN_GROUP, 0, 9, handle_join_group),
        Api(ApiKey.HEARTBEAT, 0, 4, handle_heartbeat),
        Api(ApiKey.LEAVE_GROUP, 0, 5, handle_leave_group),
        Api(ApiKey.SYNC_GROUP, 0, 5, handle_sync_group),
        Api(ApiKey.DESCRIBE_GROUPS, 0, 5, handle_describe_groups),
        Api(ApiKey.LIST_GROUPS, 0, 5, handle_list_groups),
        Api(ApiKey.API_VERSIONS, 0, 4, handle_api_versions),
        Api(ApiKey.CREATE_TOPICS, 2, 7, handle_create_topics),
        Api(ApiKey.DELETE_TOPICS, 1, 6, handle_delete_topics),
        Api(ApiKey.DESCRIBE_CONFIGS, 1, 4, handle_describe_configs),
        Api(ApiKey.ALTER_CONFIGS, 0, 2, handle_alter_configs),
        Api(ApiKey.CREATE_PARTITIONS, 0, 3, handle_create_partitions),
        Api(ApiKey.DELETE_GROUPS, 0, 2, handle_delete_groups),
        Api(ApiKey.INCREMENTAL_ALTER_CONFIGS, 0, 1, handle_incremental_alter_configs),
        Api(ApiKey.INIT_PRODUCER_ID, 0, 4, handle_init_producer_id),
        Api(ApiKey.ADD_PARTITIONS_TO_TXN, 0, 3, handle_add_partitions_to_txn),
        Api(ApiKey.ADD_OFFSETS_TO_TXN, 0, 3, handle_add_offsets_to_txn),
        Api(ApiKey.END_TXN, 0, 3, handle_end_txn),
        Api(ApiKey.TXN_OFFSET_COMMIT, 0, 3, handle_txn_offset_commit),
        Api(ApiKey.DESCRIBE_CLUSTER, 0, 1, handle_describe_cluster),
        Api(ApiKey.DELETE_RECORDS, 0, 2, handle_delete_records),
        Api(ApiKey.OFFSET_DELETE, 0, 0, handle_offset_delete),
        Api(ApiKey.DESCRIBE_LOG_DIRS, 1, 4, handle_describe_log_dirs),
        Api(ApiKey.ELECT_LEADERS, 0, 2, handle_elect_leaders),
        Api(ApiKey.DESCRIBE_PRODUCERS, 0, 0, handle_describe_producers),
        Api(ApiKey.DESCRIBE_TRANSACTIONS, 0, 0, handle_describe_transactions),
        Api(ApiKey.LIST_TRANSACTIONS, 0, 1, handle_list_transactions),
        # v0 stays, as in Kafka 4 (KAFKA-18270): librdkafka sends v1 only if v0 is advertised
        Api(ApiKey.SASL_HANDSHAKE, 0, 1, handle_sasl_handshake),
        Api(ApiKey.SASL_AUTHENTICATE, 0, 2, handle_sasl_authenticate),
        Api(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0, 0, handle_describe_user_scram_credentials),
        Api(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, 0, 0, handle_alter_user_scram_credentials),
        Api(ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, 1, handle_consumer_group_heartbeat),
        Api(ApiKey.CONSUMER_GROUP_DESCRIBE, 0, 1, handle_consumer_group_describe),
        Api(ApiKey.DESCRIBE_ACLS, 1, 3, handle_describe_acls),
        Api(ApiKey.CREATE_ACLS, 1, 3, handle_create_acls),
        Api(ApiKey.DELETE_ACLS, 1, 3, handle_delete_acls),
    )
}
