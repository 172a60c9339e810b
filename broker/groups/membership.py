"""Group membership: Kafka's classic consumer group protocol on one broker.

A group moves Empty -> PreparingRebalance (members (re)join) -> CompletingRebalance (the
leader computes the assignment) -> Stable (SyncGroup relayed it). A member joining,
leaving or missing its session timeout sends the group back to PreparingRebalance; a
rebalance completes when every member has rejoined or its rebalance timeout passes
(members that did not rejoin are dropped). The first rebalance of an empty group waits
`group.initial.rebalance.delay.ms` so members starting together land in one generation.
A static member (group.instance.id, KIP-345) restarting takes its earlier incarnation's
place and assignment without a rebalance; only its session timeout or a LeaveGroup removes it.
All of it runs on the event loop: no locks, timers instead of polling. Committed offsets
are the other half of a group (offsets.py); this half only says whether a member may commit.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from kio.schema.errors import ErrorCode

from ..settings import BrokerSettings

log = logging.getLogger(__name__)


class GroupState(str, Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


class GroupProtocol(NamedTuple):
    """An assignment protocol a member can use (e.g. "range"), with its member metadata."""

    name: str
    metadata: bytes


class JoinedMember(NamedTuple):
    """A member as the leader sees it in its JoinGroup answer."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True)
class JoinResult:
    error: ErrorCode
    member_id: str = ""
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    members: tuple[JoinedMember, ...] = ()  # for the leader only
    skip_assignment: bool = False  # v9+: the leader keeps the current assignment (KIP-814)


@dataclass(frozen=True)
class SyncResult:
    error: ErrorCode
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol_name: str | None = None


@dataclass(frozen=True)
class JoinRequest:
    group_id: str
    member_id: str
    group_instance_id: str | None
    protocol_type: str
    protocols: tuple[GroupProtocol, ...]  # in the member's preference order
    session_timeout_ms: int
    rebalance_timeout_ms: int
    client_id: str
    client_host: str
    require_known_member_id: bool  # JoinGroup v4+ (KIP-394)
    supports_skip_assignment: bool = False  # JoinGroup v9+ (KIP-814)


@dataclass
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocols: tuple[GroupProtocol, ...]
    assignment: bytes = b""
    join_waiter: asyncio.Future[JoinResult] | None = None
    sync_waiter: asyncio.Future[SyncResult] | None = None
    expiry: asyncio.TimerHandle | None = None

    @property
    def rejoined(self) -> bool:
        """Asked to join this rebalance. A member whose connection dropped meanwhile still
        counts (as in Kafka); it then misses its session timeout and leaves."""
        return self.join_waiter is not None

    @property
    def awaiting_join(self) -> bool:
        return self.join_waiter is not None and not self.join_waiter.done()

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_waiter is not None and not self.sync_waiter.done()

    def metadata_for(self, protocol: str | None) -> bytes:
        return next((meta for name, meta in self.protocols if name == protocol), b"")


@dataclass
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    generation_id: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    pending: dict[str, asyncio.TimerHandle] = field(default_factory=dict)  # told MEMBER_ID_REQUIRED
    static_members: dict[str, str] = field(default_factory=dict)  # group instance id -> member id
    rebalance_timer: asyncio.TimerHandle | None = None
    initial_delay_until: float = 0.0  # loop time bound of the initial delayed join
    joined_during_delay: bool = False

    def candidate_protocols(self) -> set[str]:
        names: set[str] | None = None
        for member in self.members.values():
            mine = {name for name, _ in member.protocols}
            names = mine if names is None else names & mine
        return names or set()

    def all_joined(self) -> bool:
        return not self.pending and all(m.rejoined for m in self.members.values())


def _resolve(waiter: asyncio.Future[JoinResult] | asyncio.Future[SyncResult] | None, result: object) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(result)  # type: ignore[arg-type]


class GroupMembership:
    """Event loop only."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.groups: dict[str, Group] = {}

    def close(self) -> None:
        for group in self.groups.values():
            for member in group.members.values():
                if member.expiry is not None:
                    member.expiry.cancel()
            for timer in group.pending.values():
                timer.cancel()
            if group.rebalance_timer is not None:
                group.rebalance_timer.cancel()

    # -- join ----------------------------------------------------------------------------

    async def join(self, request: JoinRequest) -> JoinResult:
        settings = self.settings
        if not request.group_id:
            return JoinResult(ErrorCode.invalid_group_id)
        if not settings.group_min_session_timeout_ms <= request.session_timeout_ms <= \
                settings.group_max_session_timeout_ms:
            return JoinResult(ErrorCode.invalid_session_timeout, request.member_id)
        group = self.groups.setdefault(request.group_id, Group(request.group_id))
        if group.state is not GroupState.EMPTY and group.members and (
            request.protocol_type != group.protocol_type
            or not group.candidate_protocols() & {name for name, _ in request.protocols}
        ):
            return JoinResult(ErrorCode.inconsistent_group_protocol, request.member_id)
        if request.member_id in group.pending:
            group.pending.pop(request.member_id).cancel()
            return await self._add_member(group, request, request.member_id)
        if not request.member_id:
            return await self._join_new_member(group, request)
        if self._fenced(group, request.member_id, request.group_instance_id):
            return JoinResult(ErrorCode.fenced_instance_id, request.member_id)
        member = group.members.get(request.member_id)
        if member is None:
            return JoinResult(ErrorCode.unknown_member_id, request.member_id)
        return await self._rejoin(group, member, request)

    async def _join_new_member(self, group: Group, request: JoinRequest) -> JoinResult:
        member_id = f"{request.client_id}-{uuid.uuid4()}"
        instance_id = request.group_instance_id
        if instance_id is not None:
            if instance_id in group.static_members:
                return await self._replace_static_member(group, instance_id, request, member_id)
        elif request.require_known_member_id:
            # KIP-394: hand out the id first, so a client that never returns costs nothing.
            loop = asyncio.get_running_loop()
            group.pending[member_id] = loop.call_later(
                request.session_timeout_ms / 1000, self._expire_pending, group.group_id, member_id
            )
            return JoinResult(ErrorCode.member_id_required, member_id)
        return await self._add_member(group, request, member_id)

    async def _add_member(self, group: Group, request: JoinRequest, member_id: str) -> JoinResult:
        if group.state is GroupState.EMPTY or not group.members:
            group.protocol_type = request.protocol_type
        member = Member(member_id, request.group_instance_id, request.client_id, request.client_host,
                        request.session_timeout_ms, request.rebalance_timeout_ms, request.protocols)
        group.members[member_id] = member
        if request.group_instance_id is not None:
            group.static_members[request.group_instance_id] = member_id
        if group.initial_delay_until:
            group.joined_during_delay = True
        return await self._await_join(group, member)

    async def _replace_static_member(self, group: Group, instance_id: str, request: JoinRequest,
                                     member_id: str) -> JoinResult:
        """KIP-345: a static member restarting (a known instance id, no member id) takes its
        earlier incarnation's place under a new member id, assignment and leadership
        included; the earlier id is fenced. A Stable group whose protocol stays the same
        answers at once in the current generation; any other case rebalances, as Kafka's
        `updateStaticMemberThenRebalanceOrCompleteJoin` does."""
        earlier = group.members[group.static_members[instance_id]]
        self._evict(group, earlier, ErrorCode.fenced_instance_id)
        member = Member(member_id, instance_id, earlier.client_id, earlier.client_host, request.session_timeout_ms,
                        request.rebalance_timeout_ms, request.protocols, earlier.assignment)
        group.members[member_id] = member
        group.static_members[instance_id] = member_id
        leader_before = group.leader_id
        if leader_before == earlier.member_id:
            group.leader_id = member_id
        log.info("group %s: static member %s rejoined as %s (was %s)", group.group_id, instance_id, member_id,
                 earlier.member_id)
        if group.state is not GroupState.STABLE or self._select_protocol(group) != group.protocol_name:
            return await self._await_join(group, member)
        self._schedule_expiry(group, member)
        if request.supports_skip_assignment:
            return self._join_result(group, member, skip_assignment=member_id == group.leader_id)
        # Before v9 a leader would compute a new assignment: it is told the earlier leader's
        # id, so it syncs as a follower and keeps the one it had.
        return JoinResult(ErrorCode.none, member_id, group.generation_id, group.protocol_type,
                          group.protocol_name, leader_before or "")

    async def _rejoin(self, group: Group, member: Member, request: JoinRequest) -> JoinResult:
        changed = member.protocols != request.protocols
        member.protocols = request.protocols
        member.session_timeout_ms = request.session_timeout_ms
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        if group.state is GroupState.COMPLETING_REBALANCE and not changed:
            # The member lost the join response; the generation it missed is still current.
            self._schedule_expiry(group, member)
            return self._join_result(group, member)
        if group.state is GroupState.STABLE and not changed and member.member_id != group.leader_id:
            self._schedule_expiry(group, member)
            return self._join_result(group, member)
        return await self._await_join(group, member)

    async def _await_join(self, group: Group, member: Member) -> JoinResult:
        # A duplicate join (a client retrying) replaces the earlier one, which is told to rejoin.
        _resolve(member.join_waiter, JoinResult(ErrorCode.rebalance_in_progress, member.member_id))
        waiter: asyncio.Future[JoinResult] = asyncio.get_running_loop().create_future()
        member.join_waiter = waiter
        if member.expiry is not None:
            member.expiry.cancel()
            member.expiry = None
        if group.state is not GroupState.PREPARING_REBALANCE:
            self._prepare_rebalance(group, f"member {member.member_id} joined")
        else:
            self._maybe_complete_join(group)
        return await waiter

    def _join_result(self, group: Group, member: Member, skip_assignment: bool = False) -> JoinResult:
        leader = member.member_id == group.leader_id
        members = tuple(
            JoinedMember(m.member_id, m.group_instance_id, m.metadata_for(group.protocol_name))
            for m in group.members.values()
        ) if leader else ()
        return JoinResult(ErrorCode.none, member.member_id, group.generation_id, group.protocol_type,
                          group.protocol_name, group.leader_id or "", members, skip_assignment)

    # -- rebalancing ---------------------------------------------------------------------

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        loop = asyncio.get_running_loop()
        if group.state is GroupState.COMPLETING_REBALANCE:
            for member in group.members.values():
                _resolve(member.sync_waiter, SyncResult(ErrorCode.rebalance_in_progress))
        initial = group.state is GroupState.EMPTY and self.settings.group_initial_rebalance_delay_ms > 0
        group.state = GroupState.PREPARING_REBALANCE
        log.info("group %s: rebalancing (generation %d): %s", group.group_id, group.generation_id, reason)
        if group.rebalance_timer is not None:
            group.rebalance_timer.cancel()
        timeout_s = max((m.rebalance_timeout_ms for m in group.members.values()), default=0) / 1000
        if initial:
            delay_s = self.settings.group_initial_rebalance_delay_ms / 1000
            group.initial_delay_until = loop.time() + timeout_s
            group.joined_during_delay = False
            group.rebalance_timer = loop.call_later(
                min(delay_s, timeout_s), self._initial_delay_passed, group.group_id, group.generation_id
            )
            return
        group.rebalance_timer = loop.call_later(timeout_s, self._rebalance_timed_out, group.group_id,
                                                group.generation_id)
        self._maybe_complete_join(group)

    def _initial_delay_passed(self, group_id: str, generation_id: int) -> None:
        group = self.groups.get(group_id)
        if group is None or group.state is not GroupState.PREPARING_REBALANCE or group.generation_id != generation_id:
            return
        loop = asyncio.get_running_loop()
        remaining = group.initial_delay_until - loop.time()
        if group.joined_during_delay and remaining > 0:  # more members are arriving: wait a little more
            group.joined_during_delay = False
            delay_s = self.settings.group_initial_rebalance_delay_ms / 1000
            group.rebalance_timer = loop.call_later(
                min(delay_s, remaining), self._initial_delay_passed, group_id, generation_id
            )
            return
        group.initial_delay_until = 0.0
        self._complete_join(group)

    def _rebalance_timed_out(self, group_id: str, generation_id: int) -> None:
        group = self.groups.get(group_id)
        if group is not None and group.state is GroupState.PREPARING_REBALANCE and \
                group.generation_id == generation_id:
            self._complete_join(group)

    def _maybe_complete_join(self, group: Group) -> None:
        if group.state is GroupState.PREPARING_REBALANCE and not group.initial_delay_until and group.all_joined():
            self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        if group.rebalance_timer is not None:
            group.rebalance_timer.cancel()
            group.rebalance_timer = None
        for member in [m for m in group.members.values() if not m.rejoined]:
            log.info("group %s: member %s did not rejoin in time", group.group_id, member.member_id)
            self._drop(group, member)
        for timer in group.pending.values():
            timer.cancel()
        group.pending.clear()
        group.generation_id += 1
        if not group.members:
            group.state = GroupState.EMPTY
            group.protocol_name = group.leader_id = None
            log.info("group %s: empty at generation %d", group.group_id, group.generation_id)
            return
        group.protocol_name = self._select_protocol(group)
        if group.leader_id not in group.members:
            group.leader_id = next(iter(group.members))
        group.state = GroupState.COMPLETING_REBALANCE
        log.info("group %s: generation %d with %d members, protocol %s", group.group_id, group.generation_id,
                 len(group.members), group.protocol_name)
        for member in group.members.values():
            member.assignment = b""
            _resolve(member.join_waiter, self._join_result(group, member))
            member.join_waiter = None
            self._schedule_expiry(group, member)

    @staticmethod
    def _select_protocol(group: Group) -> str:
        """Every member votes for its most preferred protocol that all members support."""
        candidates = group.candidate_protocols()
        votes: dict[str, int] = {}
        for member in group.members.values():
            choice = next(name for name, _ in member.protocols if name in candidates)
            votes[choice] = votes.get(choice, 0) + 1
        return max(votes, key=lambda name: votes[name])  # ties: the first voted for

    # -- sync, heartbeat, leave -------------------------------------------------------------

    def _member_error(self, group: Group | None, member_id: str, instance_id: str | None,
                      generation_id: int) -> ErrorCode:
        if group is not None and self._fenced(group, member_id, instance_id):
            return ErrorCode.fenced_instance_id
        if group is None or member_id not in group.members:
            return ErrorCode.unknown_member_id
        if generation_id != group.generation_id:
            return ErrorCode.illegal_generation
        return ErrorCode.none

    @staticmethod
    def _fenced(group: Group, member_id: str, instance_id: str | None) -> bool:
        return instance_id is not None and group.static_members.get(instance_id, member_id) != member_id

    async def sync(self, group_id: str, generation_id: int, member_id: str, instance_id: str | None,
                   protocol_type: str | None, protocol_name: str | None,
                   assignments: Mapping[str, bytes]) -> SyncResult:
        group = self.groups.get(group_id)
        error = self._member_error(group, member_id, instance_id, generation_id)
        if error:
            return SyncResult(error)
        assert group is not None
        if (protocol_type is not None and protocol_type != group.protocol_type) or \
                (protocol_name is not None and protocol_name != group.protocol_name):
            return SyncResult(ErrorCode.inconsistent_group_protocol)
        member = group.members[member_id]
        if group.state is GroupState.PREPARING_REBALANCE:
            return SyncResult(ErrorCode.rebalance_in_progress)
        self._schedule_expiry(group, member)
        if group.state is GroupState.STABLE:
            return SyncResult(ErrorCode.none, member.assignment, group.protocol_type, group.protocol_name)
        waiter: asyncio.Future[SyncResult] = asyncio.get_running_loop().create_future()
        _resolve(member.sync_waiter, SyncResult(ErrorCode.rebalance_in_progress))
        member.sync_waiter = waiter
        if member_id == group.leader_id:
            for m in group.members.values():
                m.assignment = assignments.get(m.member_id, b"")
            group.state = GroupState.STABLE
            log.info("group %s: stable at generation %d", group.group_id, group.generation_id)
            for m in group.members.values():
                _resolve(m.sync_waiter, SyncResult(ErrorCode.none, m.assignment, group.protocol_type,
                                                   group.protocol_name))
                m.sync_waiter = None
        return await waiter

    def heartbeat(self, group_id: str, generation_id: int, member_id: str, instance_id: str | None) -> ErrorCode:
        group = self.groups.get(group_id)
        error = self._member_error(group, member_id, instance_id, generation_id)
        if error:
            return error
        assert group is not None
        self._schedule_expiry(group, group.members[member_id])
        if group.state is GroupState.PREPARING_REBALANCE:
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none

    def leave(self, group_id: str, members: Sequence[tuple[str, str | None]]) -> list[ErrorCode]:
        """Remove members (member id, or a static member's instance id); one error per member."""
        group = self.groups.get(group_id)
        errors = []
        for member_id, instance_id in members:
            if group is None:
                errors.append(ErrorCode.unknown_member_id)
                continue
            if not member_id and instance_id is not None:
                member_id = group.static_members.get(instance_id, "")
            if member_id in group.pending:
                group.pending.pop(member_id).cancel()
                errors.append(ErrorCode.none)
            elif self._fenced(group, member_id, instance_id):
                errors.append(ErrorCode.fenced_instance_id)
            elif member_id not in group.members:
                errors.append(ErrorCode.unknown_member_id)
            else:
                self._remove_member(group, group.members[member_id], ErrorCode.unknown_member_id)
                errors.append(ErrorCode.none)
        return errors

    # -- membership ---------------------------------------------------------------------

    def _schedule_expiry(self, group: Group, member: Member) -> None:
        if member.expiry is not None:
            member.expiry.cancel()
        member.expiry = asyncio.get_running_loop().call_later(
            member.session_timeout_ms / 1000, self._expire_member, group.group_id, member
        )

    def _expire_member(self, group_id: str, member: Member) -> None:
        group = self.groups.get(group_id)
        member.expiry = None
        if group is None or group.members.get(member.member_id) is not member:
            return
        if member.awaiting_join or member.awaiting_sync:  # inside a request: the rebalance timeout rules
            self._schedule_expiry(group, member)
            return
        log.info("group %s: member %s missed its session timeout", group_id, member.member_id)
        self._remove_member(group, member, ErrorCode.unknown_member_id)

    def _expire_pending(self, group_id: str, member_id: str) -> None:
        group = self.groups.get(group_id)
        if group is not None and group.pending.pop(member_id, None) is not None:
            self._maybe_complete_join(group)

    def _drop(self, group: Group, member: Member) -> None:
        del group.members[member.member_id]
        if member.expiry is not None:
            member.expiry.cancel()
        if member.group_instance_id is not None and \
                group.static_members.get(member.group_instance_id) == member.member_id:
            del group.static_members[member.group_instance_id]

    def _evict(self, group: Group, member: Member, error: ErrorCode) -> None:
        """Drop the member; a join or sync it awaits gets `error`."""
        self._drop(group, member)
        _resolve(member.join_waiter, JoinResult(error, member.member_id))
        _resolve(member.sync_waiter, SyncResult(error))

    def _remove_member(self, group: Group, member: Member, error: ErrorCode) -> None:
        self._evict(group, member, error)
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, f"member {member.member_id} left")
        else:
            self._maybe_complete_join(group)

    # -- what committing offsets asks of membership -----------------------------------------

    def commit_error(self, group_id: str, generation_id: int, member_id: str, instance_id: str | None) -> ErrorCode:
        """Why an OffsetCommit may not go ahead (ErrorCode.none: it may). A commit from a
        member also shows it is alive."""
        group = self.groups.get(group_id)
        if generation_id < 0 and (group is None or not group.members):
            # A consumer outside group management (or an admin) may commit while nobody is a
            # member, whatever member id it names: Kafka checks only the generation here
            # (librdkafka's consumer protocol client names the member id it made itself).
            return ErrorCode.none
        if generation_id < 0 and not member_id and instance_id is None:
            return ErrorCode.unknown_member_id
        error = self._member_error(group, member_id, instance_id, generation_id)
        if error:
            return error
        assert group is not None
        if group.state is GroupState.COMPLETING_REBALANCE:
            return ErrorCode.rebalance_in_progress
        self._schedule_expiry(group, group.members[member_id])
        return ErrorCode.none

    def member_error(self, group_id: str, member_id: str, instance_id: str | None, generation_id: int) -> ErrorCode:
        """Whether `member_id` is a current member of that generation (TxnOffsetCommit v3+)."""
        return self._member_error(self.groups.get(group_id), member_id, instance_id, generation_id)

    def subscribed_topics(self, group_id: str) -> set[str] | None:
        """The topics the members of a `consumer` protocol group subscribe to (their
        ConsumerProtocolSubscription: version, then the topics), or None for another
        protocol or metadata that does not parse."""
        group = self.groups.get(group_id)
        if group is None or group.protocol_type != "consumer":
            return None
        topics: set[str] = set()
        for member in group.members.values():
            found = _subscription_topics(member.metadata_for(group.protocol_name))
            if found is None:
                return None
            topics |= found
        return topics

    def is_empty(self, group_id: str) -> bool:
        group = self.groups.get(group_id)
        return group is None or (not group.members and group.state is GroupState.EMPTY)

    def forget(self, group_id: str) -> None:
        self.groups.pop(group_id, None)


def _subscription_topics(metadata: bytes) -> set[str] | None:
    """The topic names of a ConsumerProtocolSubscription (any version: they come first,
    after the version), or None when it does not parse."""
    try:
        count = int.from_bytes(metadata[2:6], "big", signed=True)
        if count < 0:
            return None
        at, topics = 6, set()
        for _ in range(count):
            size = int.from_bytes(metadata[at : at + 2], "big", signed=True)
            if size < 0 or at + 2 + size > len(metadata):
                return None
            topics.add(metadata[at + 2 : at + 2 + size].decode())
            at += 2 + size
        return topics
    except UnicodeDecodeError:
        return None
