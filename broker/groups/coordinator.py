"""The group coordinator: a group's membership and its committed offsets, and what needs
both (listing, describing and deleting groups and their offsets). Membership is of one of
two protocols by group id: the classic one (`membership`) or the consumer protocol of
KIP-848 (`consumer_groups`). Protocol handlers call the halves directly, except to join a
classic group, which must not take over a consumer protocol group (`join`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from kio.schema.errors import ErrorCode
from prometheus_client import Gauge

from fetch.reader import Reader
from hotlog.manager import LogManager

from ..durability import Durability
from ..settings import BrokerSettings
from .consumer_protocol import ConsumerGroup, ConsumerGroups
from .membership import Group, GroupMembership, JoinRequest, JoinResult
from .offset_store import TopicPartition
from .offsets import GroupOffsets

CLASSIC, CONSUMER = "classic", "consumer"  # Kafka's group types (ListGroups v5)

GROUPS = Gauge("tierlog_groups", "Consumer groups with members, by protocol (classic, consumer)", ["protocol"])
GROUP_MEMBERS = Gauge("tierlog_group_members", "Members of consumer groups, by protocol", ["protocol"])


class OffsetDeletion(NamedTuple):
    error: ErrorCode  # of the group as a whole
    partitions: dict[TopicPartition, ErrorCode]


def _count(protocol: str, groups: Mapping[str, Group] | Mapping[str, ConsumerGroup]) -> None:
    """The gauges of a protocol's groups, read at scrape time (the broker's one coordinator)."""
    GROUPS.labels(protocol).set_function(lambda: sum(1 for g in groups.values() if g.members))
    GROUP_MEMBERS.labels(protocol).set_function(lambda: sum(len(g.members) for g in groups.values()))


class GroupListing(NamedTuple):
    group_id: str
    protocol_type: str
    state: str
    group_type: str  # CLASSIC or CONSUMER


class GroupCoordinator:
    """Event loop only."""

    def __init__(self, logs: LogManager, reader: Reader, settings: BrokerSettings,
                 durability: Durability | None = None) -> None:
        self.membership = GroupMembership(settings)
        self.consumer_groups = ConsumerGroups(settings, logs, self.membership)
        self.offsets = GroupOffsets(logs, reader, settings, self.membership, durability or Durability(),
                                    self.consumer_groups)
        _count(CLASSIC, self.membership.groups)
        _count(CONSUMER, self.consumer_groups.groups)

    async def load(self) -> None:
        await self.offsets.load()

    def close(self) -> None:
        self.membership.close()
        self.consumer_groups.close()

    async def join(self, request: JoinRequest) -> JoinResult:
        """A classic JoinGroup: refused in a consumer protocol group with members (Kafka,
        without its online downgrade); an empty one gives way to a classic group."""
        if self.consumer_groups.has_members(request.group_id):
            return JoinResult(ErrorCode.inconsistent_group_protocol, request.member_id)
        self.consumer_groups.forget(request.group_id)
        return await self.membership.join(request)

    def group(self, group_id: str) -> Group | None:
        """The group as members see it; a group with committed offsets only is Empty."""
        group = self.membership.groups.get(group_id)
        if group is None and group_id in self.offsets.groups:
            return Group(group_id)
        return group

    def groups(self) -> list[GroupListing]:
        """Every group with members or committed offsets, of either protocol."""
        consumer = self.consumer_groups.groups
        listed = [GroupListing(g.group_id, CONSUMER, g.state.value, CONSUMER) for g in consumer.values()]
        ids = dict.fromkeys(i for i in [*self.membership.groups, *self.offsets.groups] if i not in consumer)
        return listed + [GroupListing(g.group_id, g.protocol_type or "", g.state.value, CLASSIC)
                         for g in map(self.group, ids) if g is not None]

    async def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]) -> OffsetDeletion:
        """Kafka's OffsetDelete: the group's committed offsets of `partitions` go, except
        those of topics its members consume (GROUP_SUBSCRIBED_TO_TOPIC); a group with
        members of another protocol than `consumer` keeps all (NON_EMPTY_GROUP)."""
        if self.group(group_id) is None and group_id not in self.consumer_groups.groups:
            return OffsetDeletion(ErrorCode.group_id_not_found, {})
        subscribed = self.consumer_groups.topics_in_use(group_id)
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
            if self.group(group_id) is None and group_id not in self.consumer_groups.groups:
                results[group_id] = ErrorCode.group_id_not_found
            elif not self.membership.is_empty(group_id) or self.consumer_groups.has_members(group_id):
                results[group_id] = ErrorCode.non_empty_group
            else:
                await self.offsets.delete(group_id)
                self.membership.forget(group_id)
                self.consumer_groups.forget(group_id)
                results[group_id] = ErrorCode.none
        return results
