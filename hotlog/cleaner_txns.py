"""What the log cleaner tracks of transactions while it walks a log in offset order
(Kafka's CleanedTransactionMetadata): which batches belong to aborted transactions (they
are removed), and when a transaction's marker may go.

An ABORT marker stays while any batch of its transaction was seen in this walk (and the
aborted transaction's index entry goes with it into the cleaned segment); a COMMIT
marker stays while any batch of its transaction was seen. Markers with nothing left to
mark may be removed once the delete horizon has passed (the caller's decision).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from .batch import BatchHeader
from .txn_index import AbortedTxn


@dataclass
class _Aborted:
    txn: AbortedTxn
    seen_batches: bool = False


@dataclass
class CleanedTxns:
    _pending: list[tuple[int, int, AbortedTxn]] = field(default_factory=list)  # heap by first offset
    _known: set[tuple[int, int]] = field(default_factory=set)  # (producer id, first offset) added
    _aborted: dict[int, _Aborted] = field(default_factory=dict)  # by producer id: aborted, marker not yet read
    _committed: set[int] = field(default_factory=set)  # producers with batches of a txn whose marker is ahead
    index_entries: list[AbortedTxn] = field(default_factory=list)  # for the cleaned segment's txn index

    def add_aborted(self, txns: Iterable[AbortedTxn]) -> None:
        for txn in txns:
            key = (txn.producer_id, txn.first_offset)
            if key not in self._known:  # a transaction spanning segments is listed for each
                self._known.add(key)
                heapq.heappush(self._pending, (txn.first_offset, txn.producer_id, txn))

    def _reach(self, offset: int) -> None:
        while self._pending and self._pending[0][0] <= offset:
            _, pid, txn = heapq.heappop(self._pending)
            self._aborted.setdefault(pid, _Aborted(txn))

    def on_data(self, header: BatchHeader) -> bool:
        """A data batch read: whether it belongs to an aborted transaction (and goes)."""
        self._reach(header.last_offset)
        if not header.is_transactional:
            return False
        aborted = self._aborted.get(header.producer_id)
        if aborted is not None:
            aborted.seen_batches = True
            return True
        self._committed.add(header.producer_id)
        return False

    def on_marker(self, header: BatchHeader, commit: bool | None) -> bool:
        """A control batch read (`commit` None: an empty one, cleaned before): whether
        nothing is left for it to mark, so that it may go."""
        self._reach(header.last_offset)
        if commit is None:
            return True
        if commit:
            if header.producer_id in self._committed:
                self._committed.discard(header.producer_id)
                return False
            return True
        aborted = self._aborted.pop(header.producer_id, None)
        if aborted is not None and aborted.seen_batches:
            self.index_entries.append(aborted.txn)
            return False
        return True

    def take_index_entries(self) -> list[AbortedTxn]:
        """The aborted transactions whose markers the segment just cleaned keeps."""
        entries, self.index_entries = self.index_entries, []
        return entries
