"""The group coordinator: a group's membership and its committed offsets, and what needs
both (listing, describing and deleting groups). Protocol handlers call its two halves,
`membership` and `offsets`, directly."""

from __future__ import annotations

from collections.abc import Sequence

from kio.schema.errors import ErrorCode

from fetch.reader import Reader
from hotlog.manager import LogManager

from ..durability import Durability
from ..settings import BrokerSettings
from .membership import Group, GroupMembership
from .offsets import GroupOffsets


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
