"""The log cleaner's offset map: key -> last offset, in a fixed amount of memory.

As Kafka's SkimpyOffsetMap, it stores a hash of each key, not the key, in an open
addressing table of at most `log.cleaner.dedupe.buffer.size` (it doubles as keys come),
with keys in at most `log.cleaner.io.buffer.load.factor` of that size's slots. A slot
is 16 bytes: a 64-bit key hash and the offset. Two keys with the same 64-bit hash would
count as one (the older one's last value could be cleaned away); with a million keys
the odds are about 1 in 3*10^7 per clean (Kafka takes the same kind of risk with MD5).

Every operation takes whole columns (numpy arrays) and probes all of them at once, so a
chunk of thousands of records costs a few numpy calls, not a Python loop per record.
Probing is double hashing over a power-of-two table: the step is odd, so it visits every
slot, and probe chains stay short at a load factor of 0.9.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SLOT_BYTES = 16  # key hash int64 + offset int64
_EMPTY = 0  # no key hashes to 0 (hashes of 0 are taken as 1)
_FIRST_SLOTS = 1 << 12


def key_hashes(keys: Sequence[bytes]) -> np.ndarray:
    """The 64-bit hashes the map stores for `keys`."""
    hashes = np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys))
    hashes[hashes == _EMPTY] = 1
    return hashes


class OffsetMap:
    def __init__(self, memory_bytes: int, load_factor: float = 0.9) -> None:
        slots = 1 << max(1, (memory_bytes // SLOT_BYTES).bit_length() - 1)  # the largest power of two that fits
        self.slots = slots
        self.capacity = int(slots * load_factor)
        if self.capacity < 1:
            raise ValueError(f"an offset map of {memory_bytes} bytes holds no key; raise log.cleaner.dedupe.buffer.size")
        self.clear()

    @property
    def memory_bytes(self) -> int:
        return self._hashes.nbytes + self._offsets.nbytes

    def clear(self) -> None:
        # The table starts small and doubles as keys come (up to `slots`): random hashes
        # would touch every page of a full-size table, and a page fault per key costs more
        # than the rest of a put.
        self._resize(min(self.slots, _FIRST_SLOTS), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
        self.size = 0
        self.latest_offset = -1  # the last offset the map covers: records after it are newer than the map

    def _resize(self, slots: int, hashes: np.ndarray, offsets: np.ndarray) -> None:
        """A table of `slots` holding `hashes` (distinct) and their offsets."""
        self._hashes = np.zeros(slots, dtype=np.int64)
        self._offsets = np.zeros(slots, dtype=np.int64)  # read only where a hash is found
        self._mask = np.int64(slots - 1)
        self._insert(hashes, offsets)

    def _grow_for(self, new_keys: int) -> None:
        """Double the table until `new_keys` more keys keep it at most half full: probe chains
        stay short until the full-size table, which fills to the load factor."""
        slots = len(self._hashes)
        while slots < self.slots and self.size + new_keys > slots // 2:
            slots *= 2
        if slots != len(self._hashes):
            held = self._hashes != _EMPTY
            self._resize(slots, self._hashes[held], self._offsets[held])

    def _slots_of(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each hash, the slot holding it or the empty slot where its probe ends, and
        whether it was found."""
        mask = self._mask
        slot = hashes & mask
        step = ((hashes >> 20) | 1) & mask
        found = np.zeros(len(hashes), dtype=bool)
        where = np.empty(len(hashes), dtype=np.int64)
        todo = np.arange(len(hashes))
        while todo.size:
            probed = slot[todo]
            held = self._hashes[probed]
            hit = held == hashes[todo]
            done = hit | (held == _EMPTY)
            where[todo[done]] = probed[done]
            found[todo[hit]] = True
            todo = todo[~done]
            slot[todo] = (slot[todo] + step[todo]) & mask
        return where, found

    def get(self, hashes: np.ndarray) -> np.ndarray:
        """The last offset of each key, -1 for keys the map does not hold."""
        if not self.size:
            return np.full(len(hashes), -1, dtype=np.int64)
        where, found = self._slots_of(hashes)
        return np.where(found, self._offsets[where], -1)

    def room(self, hashes: np.ndarray) -> int:
        """How many of `hashes` (in order) can go in before the map is full: all of them, or
        fewer, cut before the first new key that does not fit."""
        if len(hashes) <= self.capacity - self.size:  # even if all are new
            return len(hashes)
        unique, first = np.unique(hashes, return_index=True)
        _, found = self._slots_of(unique)
        new_firsts = np.sort(first[~found])
        free = self.capacity - self.size
        return len(hashes) if len(new_firsts) <= free else int(new_firsts[free])

    def put(self, hashes: np.ndarray, offsets: np.ndarray) -> None:
        """Record `offsets` (increasing) as the last offsets of the keys; the caller checked
        `room` first. A key given twice keeps its later offset."""
        if not len(hashes):
            return
        reversed_unique, last = np.unique(hashes[::-1], return_index=True)
        self._grow_for(len(reversed_unique))
        self.size += self._insert(reversed_unique, offsets[::-1][last])

    def _insert(self, hashes: np.ndarray, offsets: np.ndarray) -> int:
        """Put distinct `hashes` in the table; returns how many were new."""
        new = 0
        while len(hashes):
            where, found = self._slots_of(hashes)
            self._hashes[where] = hashes  # two new keys may claim one empty slot: one wins
            won = self._hashes[where] == hashes
            self._offsets[where[won]] = offsets[won]
            new += int(np.count_nonzero(won & ~found))
            hashes, offsets = hashes[~won], offsets[~won]
        return new

    @property
    def utilization(self) -> float:
        return self.size / self.slots
