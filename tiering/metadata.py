"""What the bucket holds besides segment files: one metadata record per remote segment
(the commit point of its upload) and one record per tiered topic.

Layout, under the store's prefix:

    _topics/<folder>.json                                     topic record
    <folder>/<partition>/<base:020d>-<segment id>.<ext>       segment files
    <folder>/<partition>/meta/<base:020d>-<segment id>.json   segment record

The folder is `<topic>-<topic id>`, with the topic name shortened (hotlog.names) where
`<folder>.json` would pass the 255 bytes of one file name: a folder store holds a key
component as one file name. The topic record holds the full name and its folder (records
without one, written before names were shortened, mean `<topic>-<topic id>`), so keys
are found from the record, never rebuilt from a name. The longest key is then about
330 bytes: within S3's 1,024 and a folder store's PATH_MAX.

One small immutable object per segment record, rather than a per-partition manifest:
committing is a single PUT that needs no read-modify-write (S3 has no append and a
crash cannot leave a half-updated manifest), a tombstone overwrites just that record,
and listing `<partition>/meta/` returns the records already in offset order (the
20-digit base offset sorts). Restore and start-up pay one LIST per 1000 segments and
one GET per segment; at run time the manager keeps the records in memory.
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from hotlog.names import NAME_MAX, fit_name

TOPICS_PREFIX = "_topics/"
META_FOLDER = "meta/"
_RECORD_SUFFIX = ".json"
_SEGMENT_NAME = re.compile(r"^(\d{20})-([0-9a-f-]{36})\.([a-z]+)$")


class CorruptMetadataError(Exception):
    """A metadata record in the bucket that cannot be read."""


class SegmentState(str, enum.Enum):
    COPY_FINISHED = "COPY_FINISHED"  # committed: part of the remote log
    DELETE_STARTED = "DELETE_STARTED"  # tombstone: no longer part of the log, objects going away
    # Objects gone; the record stays only while it is a partition's newest, so a restore
    # knows where offsets continue even when retention emptied the remote log.
    DELETE_FINISHED = "DELETE_FINISHED"


class TopicState(str, enum.Enum):
    LIVE = "LIVE"
    DELETING = "DELETING"


def topic_folder(topic: str, topic_id: uuid.UUID) -> str:
    """The folder of a new topic's objects: `<topic>-<topic id>`, shortened so that its
    record's name, `<folder>.json`, is one file name."""
    return fit_name(topic, f"-{topic_id}", NAME_MAX - len(_RECORD_SUFFIX))


def legacy_topic_folder(topic: str, topic_id: uuid.UUID) -> str:
    """The folder of a topic whose record names none: never shortened."""
    return f"{topic}-{topic_id}"


def partition_prefix(folder: str, partition: int) -> str:
    return f"{folder}/{partition}/"


def segment_stem(base_offset: int, segment_id: uuid.UUID) -> str:
    return f"{base_offset:020d}-{segment_id}"


def segment_key(partition_folder: str, base_offset: int, segment_id: uuid.UUID, extension: str) -> str:
    """A segment's file in `partition_folder` (a partition_prefix)."""
    return f"{partition_folder}{segment_stem(base_offset, segment_id)}.{extension}"


def metadata_key(partition_folder: str, base_offset: int, segment_id: uuid.UUID) -> str:
    return f"{partition_folder}{META_FOLDER}{segment_stem(base_offset, segment_id)}{_RECORD_SUFFIX}"


def topic_record_key(folder: str) -> str:
    return f"{TOPICS_PREFIX}{folder}{_RECORD_SUFFIX}"


class SegmentName(NamedTuple):
    """What the name of a segment's object says, within its partition folder."""

    base_offset: int
    segment_id: uuid.UUID
    extension: str


def parse_segment_name(name: str) -> SegmentName | None:
    """The parts of a segment object's name within its partition folder, or None for
    anything else."""
    match = _SEGMENT_NAME.fullmatch(name)
    if match is None:
        return None
    try:
        return SegmentName(int(match[1]), uuid.UUID(match[2]), match[3])
    except ValueError:
        return None


@dataclass(frozen=True)
class SegmentFile:
    key: str
    size: int
    crc32c: int  # of the whole object, for readers to verify what they fetched


@dataclass(frozen=True)
class RemoteSegment:
    topic: str
    topic_id: uuid.UUID
    partition: int
    segment_id: uuid.UUID
    base_offset: int
    next_offset: int  # one past the segment's last offset
    max_timestamp: int
    files: Mapping[str, SegmentFile]  # by extension; `log`, `index`, `timeindex` always
    uploaded_ms: int
    state: SegmentState = SegmentState.COPY_FINISHED
    # The local file's last modified time: tombstones expire by it (delete.retention.ms);
    # 0 in records written before it was kept (then uploaded_ms stands in).
    modified_ms: int = 0
    # A cleaned segment: the ids of the committed segments it replaces, whose offsets it
    # covers exactly, and where the dirty section starts once it is committed (at most its
    # next offset: the clean's later groups may never be).
    replaces: tuple[uuid.UUID, ...] = ()
    cleaned_to: int = -1
    delete_after_ms: int = 0  # a tombstone: its objects stay until then (file.delete.delay.ms)

    @property
    def size_bytes(self) -> int:
        """Bytes of the `.log` object: what retention.bytes counts."""
        return self.files["log"].size

    @property
    def metadata_key(self) -> str:
        """Beside its `.log` object, whatever the topic's folder is called."""
        return metadata_key(self.key("log").rpartition("/")[0] + "/", self.base_offset, self.segment_id)

    def key(self, extension: str) -> str:
        return self.files[extension].key

    @property
    def last_modified_ms(self) -> int:
        return self.modified_ms or self.uploaded_ms

    def with_state(self, state: SegmentState, *, delete_after_ms: int = 0) -> RemoteSegment:
        return replace(self, state=state, delete_after_ms=delete_after_ms)

    def to_json(self) -> bytes:
        return json.dumps({
            "version": 1,
            "topic": self.topic,
            "topic_id": str(self.topic_id),
            "partition": self.partition,
            "segment_id": str(self.segment_id),
            "base_offset": self.base_offset,
            "next_offset": self.next_offset,
            "max_timestamp": self.max_timestamp,
            "uploaded_ms": self.uploaded_ms,
            "state": self.state.value,
            "files": {ext: {"key": f.key, "size": f.size, "crc32c": f.crc32c} for ext, f in self.files.items()},
            "modified_ms": self.modified_ms,
            "replaces": [str(i) for i in self.replaces],
            "cleaned_to": self.cleaned_to,
            "delete_after_ms": self.delete_after_ms,
        }, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> RemoteSegment:
        raw = _load(data, where)
        try:
            files = {ext: SegmentFile(str(f["key"]), int(f["size"]), int(f["crc32c"])) for ext, f in raw["files"].items()}
            segment = cls(
                topic=str(raw["topic"]), topic_id=uuid.UUID(raw["topic_id"]), partition=int(raw["partition"]),
                segment_id=uuid.UUID(raw["segment_id"]), base_offset=int(raw["base_offset"]),
                next_offset=int(raw["next_offset"]), max_timestamp=int(raw["max_timestamp"]), files=files,
                uploaded_ms=int(raw["uploaded_ms"]), state=SegmentState(raw["state"]),
                modified_ms=int(raw.get("modified_ms", 0)),
                replaces=tuple(uuid.UUID(i) for i in raw.get("replaces", ())),
                cleaned_to=int(raw.get("cleaned_to", -1)), delete_after_ms=int(raw.get("delete_after_ms", 0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptMetadataError(f"{where}: not a segment record ({exc!r})") from None
        if "log" not in files or segment.next_offset <= segment.base_offset:
            raise CorruptMetadataError(f"{where}: segment record without a log file or with an empty offset range")
        return segment


@dataclass(frozen=True)
class TopicRecord:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: Mapping[str, Any] = field(default_factory=dict)  # the topic's overrides
    state: TopicState = TopicState.LIVE
    folder: str = ""  # of its objects; "" at creation: topic_folder()
    # Per partition, the first offset DeleteRecords left (only those past 0), so that a
    # restore does not bring deleted records back.
    records_start: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.folder:
            object.__setattr__(self, "folder", topic_folder(self.name, self.topic_id))

    @property
    def key(self) -> str:
        return topic_record_key(self.folder)

    @property
    def prefix(self) -> str:
        """What every object of the topic's partitions starts with."""
        return self.folder + "/"

    def partition_prefix(self, partition: int) -> str:
        return partition_prefix(self.folder, partition)

    def to_json(self) -> bytes:
        return json.dumps({
            "version": 1, "name": self.name, "topic_id": str(self.topic_id), "partitions": self.partitions,
            "configs": dict(self.configs), "state": self.state.value, "folder": self.folder,
            "records_start": {str(p): offset for p, offset in sorted(self.records_start.items())},
        }, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> TopicRecord:
        raw = _load(data, where)
        try:
            name, topic_id = str(raw["name"]), uuid.UUID(raw["topic_id"])
            folder = str(raw.get("folder") or legacy_topic_folder(name, topic_id))
            starts = {int(p): int(offset) for p, offset in dict(raw.get("records_start", {})).items()}
            record = cls(name, topic_id, int(raw["partitions"]), dict(raw["configs"]), TopicState(raw["state"]), folder,
                         starts)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptMetadataError(f"{where}: not a topic record ({exc!r})") from None
        if "/" in folder or folder in (".", ".."):
            raise CorruptMetadataError(f"{where}: folder {folder!r} is not one name")
        return record


def _load(data: bytes, where: str) -> dict[str, Any]:
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptMetadataError(f"{where}: not JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("version") != 1:
        raise CorruptMetadataError(f"{where}: unknown record version")
    return raw
