"""Transaction markers: the one record of a control batch, Kafka's EndTransactionMarker.

Key: version int16, type int16 (0 abort, 1 commit). Value: version int16, coordinator
epoch int32. The log writes them (PartitionLog.append_marker) and reads them back at
recovery; the broker reads them when it replays its internal topics."""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import CorruptRecordError
from .records import DecodedBatch, Record

_KEY = struct.Struct(">hh")
_VALUE = struct.Struct(">hi")
ABORT, COMMIT = 0, 1


class TxnMarker(NamedTuple):
    commit: bool
    coordinator_epoch: int  # -1 when the marker carries none

    def record(self) -> Record:
        return Record(_KEY.pack(0, COMMIT if self.commit else ABORT), _VALUE.pack(0, self.coordinator_epoch))


def read_marker(batch: DecodedBatch) -> TxnMarker:
    """The marker of a decoded control batch."""
    if not batch.records:
        raise CorruptRecordError("control batch without a record")
    record = batch.records[0]
    if record.key is None or len(record.key) < _KEY.size:
        raise CorruptRecordError("control record without a marker key")
    _, kind = _KEY.unpack_from(record.key)
    epoch = _VALUE.unpack_from(record.value)[1] if record.value and len(record.value) >= _VALUE.size else -1
    return TxnMarker(kind == COMMIT, epoch)
