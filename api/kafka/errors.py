"""The local log's typed errors as Kafka error codes, and the protocol's own error."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from hotlog import errors as log_errors

_CODES: dict[type[log_errors.LogError], ErrorCode] = {
    log_errors.CorruptRecordError: ErrorCode.corrupt_message,
    log_errors.RecordTooLargeError: ErrorCode.message_too_large,
    log_errors.OffsetOutOfRangeError: ErrorCode.offset_out_of_range,
    log_errors.UnknownTopicOrPartitionError: ErrorCode.unknown_topic_or_partition,
    log_errors.TopicExistsError: ErrorCode.topic_already_exists,
    log_errors.InvalidTopicError: ErrorCode.invalid_topic_exception,
    log_errors.InvalidConfigError: ErrorCode.invalid_config,
    log_errors.InvalidTimestampError: ErrorCode.invalid_timestamp,
    # A log closes when its topic is deleted under a request.
    log_errors.LogClosedError: ErrorCode.unknown_topic_or_partition,
    log_errors.OutOfOrderSequenceError: ErrorCode.out_of_order_sequence_number,
    log_errors.InvalidProducerEpochError: ErrorCode.invalid_producer_epoch,
    log_errors.UnknownProducerIdError: ErrorCode.unknown_producer_id,
    log_errors.InvalidTxnStateError: ErrorCode.invalid_txn_state,
    log_errors.LogStorageError: ErrorCode.kafka_storage_error,
}


def error_code(exc: log_errors.LogError) -> ErrorCode:
    """The Kafka error code for a log error (its nearest mapped base class)."""
    for cls in type(exc).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return ErrorCode.unknown_server_error


class RequestDecodeError(Exception):
    """A request frame that is truncated or malformed."""
