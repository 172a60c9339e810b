"""Typed errors of the local log. The protocol layers map them to their own codes."""


class LogError(Exception):
    """Base of every error the log raises on bad input or state."""


class CorruptRecordError(LogError):
    """A record batch failed validation: truncated, wrong magic, bad length or CRC."""


class InvalidRecordError(LogError):
    """A record the topic cannot take, though well formed: one without a key, for a
    compacted topic (Kafka's INVALID_RECORD). `record_indexes`: which records of the
    append (counted across its batches from 0), so a producer fails those and retries the
    others (Kafka's record errors, KIP-467)."""

    def __init__(self, message: str, record_indexes: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.record_indexes = record_indexes


class RecordTooLargeError(LogError):
    """A batch exceeds the topic's max.message.bytes (or one append a segment's 2 GiB)."""


class OffsetOutOfRangeError(LogError):
    """A read asked for an offset outside [log start, log end]."""

    def __init__(self, offset: int, log_start_offset: int, log_end_offset: int) -> None:
        super().__init__(
            f"offset {offset} is out of range [{log_start_offset}, {log_end_offset}]"
        )
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset


class UnknownTopicOrPartitionError(LogError):
    """The topic or partition does not exist."""


class TopicExistsError(LogError):
    """A topic of that name exists already."""


class InvalidTopicError(LogError):
    """A topic name Kafka would not accept."""


class InvalidConfigError(LogError):
    """A config name or value that is not valid."""


class PolicyViolationError(LogError):
    """A request the topic's configs forbid (records deleted from a compacted-only topic)."""


class InvalidTimestampError(LogError):
    """A batch timestamp outside the allowed window."""


class LogClosedError(LogError):
    """The log was closed or its topic deleted."""


class LogStorageError(LogError):
    """The disk failed the log. Raised as itself, the log is offline: an fsync failed (what
    the page cache held may be lost) or a failed write could not be undone, so the log takes
    no more writes until the broker restarts and recovery has checked the disk."""


class DiskWriteError(LogStorageError):
    """A write the disk refused (ENOSPC, EIO, a short write), undone: the log holds what it
    held before and takes appends again once the disk does."""


class TooManyOpenFilesError(LogStorageError):
    """No file descriptor for a segment file (EMFILE, ENFILE), even after closing idle
    ones: nothing was read or written, and the log stays online; retriable."""


class CorruptSegmentError(LogError):
    """Stored bytes failed their check (a batch's CRC-32C, length or magic): they are never
    served. Unlike CorruptRecordError the fault is the disk's, not the client's."""


class OutOfOrderSequenceError(LogError):
    """An idempotent producer's batch does not continue its last sequence."""


class UnknownProducerIdError(LogError):
    """A batch that continues the sequence of a producer the partition has no state for
    (it expired, or left with deleted segments): the producer must start over."""


class InvalidProducerEpochError(LogError):
    """A batch from an older epoch of a producer that has since been bumped (fenced)."""


class InvalidTxnStateError(LogError):
    """A transaction marker or transactional batch that does not fit the producer's state."""
