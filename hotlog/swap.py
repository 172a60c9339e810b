"""Swapping cleaned segments in for the ones they replace, so that a crash at any point
leaves the old segments or the new one, never a mix (Kafka's suffix protocol).

A cleaned segment is written, fsynced, as `<base>.<ext>.cleaned` (all four files; the
first replaced segment has the same base). Then:
1. every `.cleaned` is renamed `.swap`, the `.log` last, and the folder fsynced: once
   `<base>.log.swap` exists the swap is committed;
2. the other replaced segments' files are unlinked;
3. every `.swap` is renamed to its final name, the `.log` last, and the folder fsynced.
At start `recover_swaps` discards what was not committed (`.cleaned` files, and `.swap`
indexes without a `.log.swap`) and completes what was (steps 2 and 3 again).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from .durable import fsync_path
from .segment import LOG_SUFFIX, LogSegment, segment_file_name
from .txn_index import TXN_INDEX_SUFFIX

log = logging.getLogger(__name__)

CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
SEGMENT_SUFFIXES = (".index", ".timeindex", TXN_INDEX_SUFFIX, LOG_SUFFIX)  # the `.log` last


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rename_all(directory: str, base: int, old_suffix: str, new_suffix: str) -> None:
    for ext in SEGMENT_SUFFIXES:
        name = segment_file_name(base, ext)
        source = os.path.join(directory, name + old_suffix)
        if os.path.exists(source):
            os.replace(source, os.path.join(directory, name + new_suffix))
    fsync_path(directory)


def _delete_segment_files(directory: str, base: int) -> None:
    for ext in SEGMENT_SUFFIXES:
        _unlink(os.path.join(directory, segment_file_name(base, ext)))


def commit_swap(cleaned: LogSegment, replaced: Sequence[LogSegment]) -> None:
    """Put `cleaned` (written with the `.cleaned` suffix, fsynced) in the place of `replaced`
    on disk. Readers holding a replaced file's descriptor go on reading the old bytes."""
    directory, base = cleaned.directory, cleaned.base_offset
    if not os.path.exists(cleaned.txn_index.path):  # so that every file of the old segment is replaced
        os.close(os.open(cleaned.txn_index.path, os.O_WRONLY | os.O_CREAT, 0o644))
        fsync_path(cleaned.txn_index.path)
    _rename_all(directory, base, CLEANED_SUFFIX, SWAP_SUFFIX)
    for segment in replaced:
        if segment.base_offset != base:
            _delete_segment_files(directory, segment.base_offset)
    _rename_all(directory, base, SWAP_SUFFIX, "")


def discard_cleaned_segment(directory: str, base: int) -> None:
    for ext in SEGMENT_SUFFIXES:
        _unlink(os.path.join(directory, segment_file_name(base, ext) + CLEANED_SUFFIX))


def recover_swaps(directory: str, index_interval_bytes: int, index_max_bytes: int) -> None:
    """At start: discard the cleans a crash stopped before their commit (`.cleaned` files),
    complete the others."""
    names = os.listdir(directory)
    if not any(n.endswith((CLEANED_SUFFIX, SWAP_SUFFIX)) for n in names):
        return
    for name in names:
        if name.endswith(CLEANED_SUFFIX):
            _unlink(os.path.join(directory, name))
    bases = sorted(int(n[: -len(LOG_SUFFIX)]) for n in names if n.endswith(LOG_SUFFIX))
    swap_log = LOG_SUFFIX + SWAP_SUFFIX
    for name in names:
        if not name.endswith(swap_log):
            continue
        base = int(name[: -len(swap_log)])
        swapped = LogSegment(directory, base, index_interval_bytes=index_interval_bytes,
                             index_max_bytes=index_max_bytes, suffix=SWAP_SUFFIX)
        swapped.recover()  # fsynced before the commit: this only learns where it ends
        swapped.close()
        for other in bases:
            if base < other < swapped.next_offset:
                _delete_segment_files(directory, other)
        _rename_all(directory, base, SWAP_SUFFIX, "")
        log.warning("%s: completed the swap of cleaned segment %d that a stop interrupted", directory, base)
    for name in os.listdir(directory):
        if name.endswith(SWAP_SUFFIX):  # an index renamed before its `.log`: the swap was not committed
            _unlink(os.path.join(directory, name))
    fsync_path(directory)
