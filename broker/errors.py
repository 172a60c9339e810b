"""One error taxonomy for every protocol: each error type the broker's layers raise, with
the Kafka error code and the gRPC status code a client is answered with.

Kafka's codes are the broker's own vocabulary; gRPC statuses are named here as text
(`grpc.StatusCode[name]`), so this layer does not import the gRPC runtime. Retriable
trouble (a disk or a bucket that failed) maps to retriable codes on both: Kafka's
KAFKA_STORAGE_ERROR, gRPC's UNAVAILABLE, never a status that tells a client its request
was wrong."""

from __future__ import annotations

from typing import NamedTuple

from kio.schema.errors import ErrorCode

from fetch.index_cache import RemoteDataError
from hotlog import errors as log_errors
from tiering import store as store_errors


class BrokerError(Exception):
    """Base of the errors raised by broker services themselves."""


class InvalidRequestError(BrokerError):
    """A request malformed in itself (missing or negative fields, unknown enum values)."""


class InvalidPartitionsError(BrokerError):
    """A partition count a topic may not have (below 1, or above the broker's cap)."""


class ShuttingDownError(BrokerError):
    """The broker is stopping; the client should retry elsewhere or later."""


class PartitionOffsetOutOfRangeError(log_errors.OffsetOutOfRangeError):
    """An offset outside a partition's log, named with its topic and partition."""

    def __init__(self, topic: str, partition: int, cause: log_errors.OffsetOutOfRangeError) -> None:
        super().__init__(cause.offset, cause.log_start_offset, cause.log_end_offset)
        self.args = (f"{topic}-{partition}: {cause}",)


class WalFullError(BrokerError):
    """The write-ahead log holds as many bytes as it may that the object store has not
    taken yet (the store is down or slow): appends to WAL topics wait for room."""


class NotEnoughReplicasError(BrokerError):
    """A durable produce to a partition whose min.insync.replicas its copies cannot meet:
    one disk is one copy; the bucket's WAL (`remote.wal.enable`) is the broker's replicas."""


class RefusedError(BrokerError):
    """Refused by a coordinator with a Kafka error code of its choosing (a fenced
    producer, a partition outside the transaction, a group with live members)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class Answer(NamedTuple):
    kafka: ErrorCode
    grpc: str  # a grpc.StatusCode name


_STORAGE = Answer(ErrorCode.kafka_storage_error, "UNAVAILABLE")
_BAD_INPUT = ErrorCode.invalid_request

ANSWERS: dict[type[Exception], Answer] = {
    # the local log
    log_errors.LogError: Answer(ErrorCode.unknown_server_error, "INTERNAL"),
    log_errors.CorruptRecordError: Answer(ErrorCode.corrupt_message, "INVALID_ARGUMENT"),
    log_errors.InvalidRecordError: Answer(ErrorCode.invalid_record, "INVALID_ARGUMENT"),  # no key, compacted topic
    log_errors.RecordTooLargeError: Answer(ErrorCode.message_too_large, "RESOURCE_EXHAUSTED"),
    log_errors.OffsetOutOfRangeError: Answer(ErrorCode.offset_out_of_range, "OUT_OF_RANGE"),
    log_errors.UnknownTopicOrPartitionError: Answer(ErrorCode.unknown_topic_or_partition, "NOT_FOUND"),
    log_errors.TopicExistsError: Answer(ErrorCode.topic_already_exists, "ALREADY_EXISTS"),
    log_errors.InvalidTopicError: Answer(ErrorCode.invalid_topic_exception, "INVALID_ARGUMENT"),
    log_errors.InvalidConfigError: Answer(ErrorCode.invalid_config, "INVALID_ARGUMENT"),
    log_errors.InvalidTimestampError: Answer(ErrorCode.invalid_timestamp, "INVALID_ARGUMENT"),
    log_errors.PolicyViolationError: Answer(ErrorCode.policy_violation, "FAILED_PRECONDITION"),
    # A log closes when its topic is deleted under a request.
    log_errors.LogClosedError: Answer(ErrorCode.unknown_topic_or_partition, "UNAVAILABLE"),
    log_errors.LogStorageError: _STORAGE,
    log_errors.DiskWriteError: _STORAGE,  # undone: a retry may succeed once the disk has room
    log_errors.TooManyOpenFilesError: _STORAGE,  # out of descriptors: nothing done, retriable
    # A stored batch failed its CRC: librdkafka hands CORRUPT_MESSAGE to the application (and
    # Java's consumer raises it), where KAFKA_STORAGE_ERROR is retried silently, forever.
    log_errors.CorruptSegmentError: Answer(ErrorCode.corrupt_message, "DATA_LOSS"),
    log_errors.OutOfOrderSequenceError: Answer(ErrorCode.out_of_order_sequence_number, "FAILED_PRECONDITION"),
    log_errors.UnknownProducerIdError: Answer(ErrorCode.unknown_producer_id, "FAILED_PRECONDITION"),
    log_errors.InvalidProducerEpochError: Answer(ErrorCode.invalid_producer_epoch, "FAILED_PRECONDITION"),
    log_errors.InvalidTxnStateError: Answer(ErrorCode.invalid_txn_state, "FAILED_PRECONDITION"),
    # the object store, reached by reads of tiered offsets
    store_errors.ObjectStoreError: _STORAGE,
    store_errors.NotFoundError: _STORAGE,
    store_errors.InvalidRangeError: _STORAGE,
    store_errors.InvalidKeyError: _STORAGE,
    store_errors.StoreConfigError: _STORAGE,
    store_errors.AccessDeniedError: _STORAGE,
    store_errors.BucketNotFoundError: _STORAGE,
    store_errors.TransientStoreError: _STORAGE,
    RemoteDataError: _STORAGE,  # bytes from the store failed their check: retry
    # A disk call no layer typed (a read's EIO, a file that cannot be made on a full disk):
    # the disk's trouble, not the request's. A timeout is not the disk's.
    OSError: _STORAGE,
    TimeoutError: Answer(ErrorCode.request_timed_out, "DEADLINE_EXCEEDED"),
    # the broker's own
    BrokerError: Answer(ErrorCode.unknown_server_error, "INTERNAL"),
    InvalidRequestError: Answer(_BAD_INPUT, "INVALID_ARGUMENT"),
    InvalidPartitionsError: Answer(ErrorCode.invalid_partitions, "INVALID_ARGUMENT"),
    ShuttingDownError: Answer(ErrorCode.broker_not_available, "UNAVAILABLE"),
    PartitionOffsetOutOfRangeError: Answer(ErrorCode.offset_out_of_range, "OUT_OF_RANGE"),
    RefusedError: Answer(ErrorCode.unknown_server_error, "FAILED_PRECONDITION"),  # Kafka: the error's own code
    # Retriable: the durable copy (the bucket) cannot take more now, as Kafka says when
    # too few replicas are in sync.
    WalFullError: Answer(ErrorCode.not_enough_replicas, "UNAVAILABLE"),
    NotEnoughReplicasError: Answer(ErrorCode.not_enough_replicas, "FAILED_PRECONDITION"),
}

HANDLED: tuple[type[Exception], ...] = tuple(ANSWERS)


def answer(exc: Exception) -> Answer:
    """The answer for an error: of its own type, or of its nearest mapped base class."""
    for cls in type(exc).__mro__:
        found = ANSWERS.get(cls)
        if found is not None:
            if isinstance(exc, RefusedError):
                return found._replace(kafka=exc.code)
            return found
    return Answer(ErrorCode.unknown_server_error, "INTERNAL")


def is_storage_error(exc: Exception) -> bool:
    """Whether the answer says a disk or the object store failed (not the request)."""
    return answer(exc).kafka is ErrorCode.kafka_storage_error


def kafka_code(exc: Exception) -> ErrorCode:
    return answer(exc).kafka


def grpc_status_name(exc: Exception) -> str:
    return answer(exc).grpc
