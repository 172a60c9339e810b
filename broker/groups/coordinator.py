"""The group coordinator: a group's membership and its committed offsets, and what needs
both (listing, describing and deleting groups and their offsets). Protocol handlers call its two halves,
`membership` and `offsets`, directly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from kio.schema.errors import ErrorCode

from fetch.reader import Reader
from hotlog.manager import LogManager

from ..durability import Durability
from ..settings import BrokerSettings
from .membership import Group, GroupMembership
from .offset_store import TopicPartition
from .offsets import GroupOffsets


class OffsetDeletion(NamedTuple):
    error: ErrorCode  # of the group as a whole
    partitions: dict[TopicPartition, ErrorCode]


class GroupCoordinator:
    """Event loop only."""

    def __init__(self, logs: LogManager, reader: Reader, settings: BrokerSettings,
                 durability: Durability | None = None) -> None:
        self.membership = GroupMembership(settings)
        self.offsets = GroupOffsets(logs, reader, settings, self.membership, durability or Durability())

    async def load(self) -> None:
        await self.offsets.load()

    def close(self) -> None:
        self.membership.close()

    def group(self, group_id: str) -> Group | None:
        """The group as members see it; a group with committed offsets only is Empty."""
        group = self.membership.groups.get(group_id)
        if group is None and group_id in self.offsets.groups:
            return Group(group_id)
        return group

    def groups(self) -> list[Group]:
        """Every group with members or committed offsets."""
        ids = dict.fromkeys([*self.membership.groups, *self.offsets.groups])
        return [group for group in map(self.group, ids) if group is not None]

    async def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]) -> OffsetDeletion:
        """Kafka's OffsetDelete: the group's committed offsets of `partitions` go, except
        those of topics its members consume (GROUP_SUBSCRIBED_TO_TOPIC); a group with
        members of another protocol than `consumer` keeps all (NON_EMPTY_GROUP)."""
        if self.group(group_id) is None:
            return OffsetDeletion(ErrorCode.group_id_not_found, {})
        subscribed: set[str] = set()
        if not self.membership.is_empty(group_id):
            topics = self.membership.subscribed_topics(group_id)
            if topics is None:
                return OffsetDeletion(ErrorCode.non_empty_group, {})
            subscribed = topics
        doomed = [tp for tp in partitions if tp.topic not in subscribed]
        await self.offsets.delete_partitions(group_id, doomed)
        return OffsetDeletion(ErrorCode.none, {
            tp: ErrorCode.group_subscribed_to_topic if tp.topic in subscribed else ErrorCode.none for tp in partitions})

    async def delete_groups(self, group_ids: Sequence[str]) -> dict[str, ErrorCode]:
        results = {}
        for group_id in group_ids:
            if self.group(group_id) is None:
                results[group_id] = ErrorCode.group_id_not_found
            elif not self.membership.is_empty(group_id):
                results[group_id] = ErrorCode.non_empty_group
            else:
                await self.offsets.delete(group_id)
                self.membership.forget(group_id)
                results[group_id] = ErrorCode.none
        return results
