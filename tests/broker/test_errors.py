"""The one error taxonomy: every error type the layers raise has a Kafka code and a gRPC
status, and trouble that is nobody's fault but the disk's or the bucket's is retriable."""

from __future__ import annotations

import errno
import inspect
from types import ModuleType

import pytest
from kio.schema.errors import ErrorCode
from prometheus_client import REGISTRY

import broker.errors
import fetch.index_cache
import hotlog.errors
import tiering.store
from broker.errors import ANSWERS, RefusedError, answer, is_storage_error, kafka_code
from broker.metrics import count_storage_error
from hotlog.errors import DiskWriteError, LogStorageError
from tiering.store import TransientStoreError

GRPC_STATUS_NAMES = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                     "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
                     "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}


def _errors_of(module: ModuleType) -> list[type[Exception]]:
    return [cls for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, Exception) and cls.__module__ == module.__name__]


ERROR_TYPES = [cls for module in (hotlog.errors, tiering.store, broker.errors) for cls in _errors_of(module)] \
    + [fetch.index_cache.RemoteDataError]


@pytest.mark.parametrize("error", ERROR_TYPES, ids=lambda cls: cls.__name__)
def test_every_error_type_has_a_kafka_code_and_a_grpc_status_of_its_own(error: type[Exception]) -> None:
    assert error in ANSWERS, f"{error.__name__} has no entry: it would be answered as its base class"
    entry = ANSWERS[error]
    assert isinstance(entry.kafka, ErrorCode)
    assert entry.grpc in GRPC_STATUS_NAMES


@pytest.mark.parametrize("exc", [LogStorageError("fsync failed"), TransientStoreError("503")],
                         ids=["disk", "bucket"])
def test_a_failing_disk_or_bucket_is_retriable_on_both_protocols(exc: Exception) -> None:
    assert answer(exc).kafka is ErrorCode.kafka_storage_error
    assert answer(exc).grpc == "UNAVAILABLE"


def test_a_refusal_carries_the_coordinators_own_kafka_code() -> None:
    assert kafka_code(RefusedError(ErrorCode.invalid_txn_state, "not in the transaction")) is ErrorCode.invalid_txn_state
    assert answer(RefusedError(ErrorCode.invalid_txn_state, "")).grpc == "FAILED_PRECONDITION"


@pytest.mark.parametrize("exc", [DiskWriteError("no space left"), OSError(errno.EIO, "Input/output error")],
                         ids=["undone-write", "untyped-disk-call"])
def test_a_disk_that_refuses_a_write_or_a_read_is_a_storage_error(exc: Exception) -> None:
    assert answer(exc) == (ErrorCode.kafka_storage_error, "UNAVAILABLE") and is_storage_error(exc)


def test_a_timeout_is_not_the_disks() -> None:
    assert answer(TimeoutError()).kafka is ErrorCode.request_timed_out and not is_storage_error(TimeoutError())


def test_storage_errors_answered_are_counted_by_protocol_api_and_error_type() -> None:
    def counted(error: str) -> float:
        return REGISTRY.get_sample_value("tierlog_storage_errors_total",
                                         {"protocol": "kafka", "api": "Produce", "error": error}) or 0.0

    before = counted("DiskWriteError")
    count_storage_error("kafka", "Produce", DiskWriteError("full"))
    count_storage_error("kafka", "Produce", RefusedError(ErrorCode.invalid_txn_state, "not the disk's"))
    assert counted("DiskWriteError") == before + 1 and counted("RefusedError") == 0
