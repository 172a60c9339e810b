"""What the tiering manager knows of one partition's remote log: its committed segments
(what readers may fetch), tombstones still being deleted, and upload bookkeeping."""

from __future__ import annotations

import asyncio
import bisect
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

from hotlog.log import PartitionLog

from .backoff import Backoff
from .metadata import RemoteSegment, SegmentState


def _base_offset(segment: RemoteSegment) -> int:
    return segment.base_offset


class CopyLag(NamedTuple):
    """Sealed local segments not uploaded yet."""

    segments: int = 0
    size_bytes: int = 0


class CleanCommit(NamedTuple):
    """A cleaned segment's record and the committed segments it takes the place of."""

    record: RemoteSegment
    replaced: list[RemoteSegment]


class RemoteStatus(NamedTuple):
    """A partition's remote tier at a glance (tier status, metrics)."""

    log_start_offset: int = -1  # -1: nothing readable in the object store
    log_end_offset: int = -1  # one past the highest tiered offset; -1: nothing ever tiered
    size_bytes: int = 0
    copy_lag_segments: int = 0  # sealed local segments not uploaded yet
    copy_lag_bytes: int = 0


@dataclass
class RemotePartition:
    topic: str
    topic_id: uuid.UUID
    partition: int
    prefix: str  # of the partition's objects: its topic record's partition_prefix()
    segments: list[RemoteSegment] = field(default_factory=list)  # COPY_FINISHED, by base offset
    tombstones: list[RemoteSegment] = field(default_factory=list)  # DELETE_STARTED, objects to delete
    # The newest DELETE_FINISHED record while no committed segment is newer: it remembers
    # where offsets continue after retention emptied the remote log.
    end_marker: RemoteSegment | None = None
    stale_markers: list[RemoteSegment] = field(default_factory=list)  # older markers, to delete
    in_flight: set[uuid.UUID] = field(default_factory=set)  # segment ids uploading, not committed
    # Uploaded, but the PUT of its record failed in a way that may have reached the store
    # (a timeout): whether it is committed is checked before anything else is uploaded.
    uncertain: RemoteSegment | None = None
    # Copy and retention back off apart: a store that refuses uploads must not stop
    # retention from deleting what has expired, nor the other way round.
    copy_backoff: Backoff = field(default_factory=lambda: Backoff(1_000, 60_000))
    retention_backoff: Backoff = field(default_factory=lambda: Backoff(1_000, 60_000))
    clean_backoff: Backoff = field(default_factory=lambda: Backoff(1_000, 600_000))
    # Held by whatever takes committed segments out (retention) or replaces them (a clean).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # A cleaned segment whose commit failed in a way that may have reached the store:
    # resolved before the next clean or retention.
    uncertain_clean: CleanCommit | None = None

    @classmethod
    def from_records(cls, topic: str, topic_id: uuid.UUID, partition: int, prefix: str,
                     records: list[RemoteSegment]) -> RemotePartition:
        state = cls(topic, topic_id, partition, prefix)
        markers = []
        # A clean that stopped between committing a cleaned segment and writing the
        # tombstones of those it replaces: they are tombstones all the same.
        replaced = {i for r in records if r.state is SegmentState.COPY_FINISHED for i in r.replaces}
        for record in sorted(records, key=lambda r: (r.base_offset, r.uploaded_ms)):
            if record.state is SegmentState.COPY_FINISHED and record.segment_id in replaced:
                state.tombstones.append(record.with_state(SegmentState.DELETE_STARTED))
            elif record.state is SegmentState.COPY_FINISHED:
                if state.segments and record.base_offset < state.segments[-1].next_offset:
                    # The same offsets committed twice (a commit retried after an ambiguous
                    # failure): the first one stands, the other is deleted.
                    state.tombstones.append(record.with_state(SegmentState.DELETE_STARTED))
                    continue
                state.segments.append(record)
            elif record.state is SegmentState.DELETE_STARTED:
                state.tombstones.append(record)
            else:
                markers.append(record)
        if markers:
            newest = max(markers, key=lambda r: r.next_offset)
            markers.remove(newest)
            state.stale_markers = markers
            if state.segments and state.segments[-1].next_offset >= newest.next_offset:
                state.stale_markers.append(newest)
            else:
                state.end_marker = newest
        return state

    # -- what readers need -------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        """The first offset readable from the object store, or -1."""
        return self.segments[0].base_offset if self.segments else -1

    @property
    def end_offset(self) -> int:
        """One past the highest offset ever tiered (still readable or expired), or -1."""
        ends = [self.segments[-1].next_offset] if self.segments else []
        if self.end_marker is not None:
            ends.append(self.end_marker.next_offset)
        return max(ends, default=-1)

    @property
    def first_dirty_offset(self) -> int:
        """Where the bucket's cleaner starts next: where the newest clean stopped. A segment
        vouches for its own offsets only: records written before cleaned_to was capped at
        the segment's end claim the whole pass, though a stop may have kept the pass's
        later groups from being committed."""
        cleaned = max((min(s.cleaned_to, s.next_offset) for s in self.segments), default=-1)
        return max(cleaned, self.log_start_offset)

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self.segments)

    def segment_for(self, offset: int) -> RemoteSegment | None:
        """The committed segment holding `offset`, or None."""
        i = bisect.bisect_right(self.segments, offset, key=_base_offset) - 1  # no list built per read
        if i >= 0 and offset < self.segments[i].next_offset:
            return self.segments[i]
        return None

    def protected_ids(self) -> set[uuid.UUID]:
        """Segment ids whose objects must stay: committed, being deleted, or uploading."""
        return {r.segment_id for r in (*self.segments, *self.tombstones)} | self.in_flight

    # -- upload bookkeeping ------------------------------------------------------------

    def copy_lag(self, plog: PartitionLog) -> CopyLag:
        end = self.end_offset
        lagging = [s for s in plog.segments if s.sealed and s.base_offset >= end]
        return CopyLag(len(lagging), sum(s.size for s in lagging))

    def status(self, plog: PartitionLog | None) -> RemoteStatus:
        lag = self.copy_lag(plog) if plog is not None else CopyLag()
        return RemoteStatus(self.log_start_offset, self.end_offset, self.size_bytes, lag.segments, lag.size_bytes)
