"""A segment's aborted-transaction index (`.txnindex`, Kafka's layout).

Entries of 34 bytes: version int16 (0), producer id int64, first offset int64,
last offset int64, last stable offset int64. Fetches at read_committed return the
aborted transactions overlapping their range so clients drop those records."""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from .durable import fsync_path

TXN_INDEX_SUFFIX = ".txnindex"
_ENTRY = struct.Struct(">hqqqq")


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class TxnIndex:
    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: list[AbortedTxn] = []

    def load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        self.entries = self.parse(data)

    @staticmethod
    def parse(data: bytes) -> list[AbortedTxn]:
        whole = len(data) - len(data) % _ENTRY.size  # a torn last entry is dropped
        return [AbortedTxn(*fields[1:]) for fields in _ENTRY.iter_unpack(data[:whole])]

    def append(self, txn: AbortedTxn) -> None:
        self.entries.append(txn)
        with open(self.path, "ab") as f:
            f.write(_ENTRY.pack(0, *txn))

    def fsync(self) -> None:
        try:
            fsync_path(self.path)
        except FileNotFoundError:  # no aborted transaction: no file
            pass

    def rewrite(self, entries: list[AbortedTxn]) -> None:
        self.entries = list(entries)
        if not entries:
            if os.path.exists(self.path):
                os.unlink(self.path)
            return
        with open(self.path, "wb") as f:
            f.write(b"".join(_ENTRY.pack(0, *e) for e in entries))

    def overlapping(self, start: int, end: int) -> list[AbortedTxn]:
        """Aborted transactions with records in [start, end)."""
        return [t for t in self.entries if t.last_offset >= start and t.first_offset < end]
