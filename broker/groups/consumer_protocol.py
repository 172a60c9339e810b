"""The consumer group protocol (KIP-848): the broker assigns, members reconcile.

Members send ConsumerGroupHeartbeat; nothing waits. The group has an epoch, bumped when
a member joins, leaves or changes its subscription, or when the subscribed topics' metadata
changes (a topic created that a regex matches, partitions added). A newer group epoch gets
a new target assignment from a server-side assignor (assignors.py). Each member then moves
towards its target with its own member epoch, as Kafka's CurrentAssignmentBuilder does: a
partition it must give up is asked back first (it stays at its epoch, UNREVOKED_PARTITIONS,
until a heartbeat no longer lists it); a partition another member still holds is left out
of its assignment (UNRELEASED_PARTITIONS) until that member has let it go; a member owning
no more than its target reaches the group's assignment epoch.

Member state lives in memory on this broker: after a restart a member's heartbeat gets
UNKNOWN_MEMBER_ID and it rejoins with epoch 0 (committed offsets persist: offsets.py).
Timers, not polling, expire members past their session timeout and members that do not
revoke within their rebalance timeout. Static members (`instance_id`) leaving with epoch
-2 keep their assignment for the session timeout; a new incarnation takes it over.
Classic groups (membership.py) live beside these, by group id; neither takes over a group
the other has members in (Kafka's upgrade and downgrade paths are not built).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any, NamedTuple

import re2
from kio.schema.errors import ErrorCode

from hotlog.manager import LogManager

from ..errors import RefusedError
from ..internal_topics import is_internal
from ..settings import BrokerSettings
from .assignors import ASSIGNORS, Assignment, AssignorMember
from .membership import GroupMembership

log = logging.getLogger(__name__)

LEAVE_GROUP_EPOCH = -1
LEAVE_GROUP_STATIC_EPOCH = -2  # a static member leaving for now: it keeps its assignment
REGEX_MAX_LENGTH = 1024  # Kafka's bound on a subscription regex's length
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a client's bad pattern is its INVALID_REGULAR_EXPRESSION, not our stderr

TopicIdPartition = tuple[uuid.UUID, int]  # Kafka's name: a partition by its topic's id


class ConsumerGroupState(str, Enum):
    """Kafka's names of a consumer protocol group's states."""

    EMPTY = "Empty"
    ASSIGNING = "Assigning"  # a newer group epoch than its target assignment
    RECONCILING = "Reconciling"  # members still moving towards their targets
    STABLE = "Stable"
    DEAD = "Dead"


class MemberState(Enum):
    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    UNRELEASED_PARTITIONS = "unreleased_partitions"


class SubscribedTopic(NamedTuple):
    """A subscribed topic as the target assignment was computed for."""

    topic_id: uuid.UUID
    partitions: int


@dataclass(frozen=True)
class Heartbeat:
    """A ConsumerGroupHeartbeat request; None: unchanged since the member's last one."""

    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: tuple[str, ...] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned: Assignment | None = None  # the partitions the member owns
    client_id: str = ""
    client_host: str = ""
    member_id_required: bool = True  # v1+: the member makes its id (v0: the broker may)


@dataclass(frozen=True)
class HeartbeatResult:
    error: ErrorCode = ErrorCode.none
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Assignment | None = None  # sent on a full request or when it changed


@dataclass
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    rebalance_timeout_ms: int = 0
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_member_epoch: int = -1
    state: MemberState = MemberState.STABLE
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)
    session_timer: asyncio.TimerHandle | None = None
    rebalance_timer: asyncio.TimerHandle | None = None

    def subscription(self) -> tuple[tuple[str, ...], str | None]:
        return tuple(sorted(self.subscribed_topic_names)), self.subscribed_topic_regex

    def cancel_timers(self) -> None:
        for timer in (self.session_timer, self.rebalance_timer):
            if timer is not None:
                timer.cancel()
        self.session_timer = self.rebalance_timer = None


@dataclass
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    target: dict[str, Assignment] = field(default_factory=dict)  # member id -> target assignment
    subscribed: dict[str, SubscribedTopic] = field(default_factory=dict)  # by topic name
    owners: dict[TopicIdPartition, str] = field(default_factory=dict)  # held (assigned or being revoked)

    @property
    def state(self) -> ConsumerGroupState:
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        if any(m.member_epoch != self.assignment_epoch or m.state is not MemberState.STABLE
               for m in self.members.values() if m.member_epoch != LEAVE_GROUP_STATIC_EPOCH):
            return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def assignor(self, default: str) -> str:
        """Kafka's choice: the assignor most members name, else the broker's default."""
        named = [m.server_assignor for m in self.members.values() if m.server_assignor]
        return max(sorted(set(named)), key=named.count) if named else default


def _refuse(code: ErrorCode, message: str) -> RefusedError:
    return RefusedError(code, message)


@lru_cache(maxsize=256)
def compile_regex(pattern: str) -> Any:
    """A subscription regex (whole-name match, as RE2J's `matches`), or
    INVALID_REGULAR_EXPRESSION. RE2, as Kafka's RE2J: matching is linear in the name, so a
    client's pattern cannot hold the event loop by backtracking (Python's `re` can, for
    seconds, on `(a+)+b`); RE2 refuses what it cannot match so (lookarounds, backreferences)."""
    if len(pattern) > REGEX_MAX_LENGTH:
        raise _refuse(ErrorCode.invalid_regular_expression,
                      f"SubscribedTopicRegex is longer than {REGEX_MAX_LENGTH} characters.")
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise _refuse(ErrorCode.invalid_regular_expression,
                      f"SubscribedTopicRegex {pattern!r} is invalid: {reason}.") from None


def _union(*assignments: Assignment) -> dict[uuid.UUID, frozenset[int]]:
    merged: dict[uuid.UUID, frozenset[int]] = {}
    for assignment in assignments:
        for topic_id, partitions in assignment.items():
            merged[topic_id] = merged.get(topic_id, frozenset()) | partitions
    return {t: ps for t, ps in merged.items() if ps}


def _partitions(assignment: Assignment) -> Iterable[TopicIdPartition]:
    return ((topic_id, p) for topic_id, ps in assignment.items() for p in ps)


def _owns_any(owned: Assignment | None, partitions: Assignment) -> bool:
    """Whether a heartbeat's owned partitions include any of `partitions` (not said: yes)."""
    if owned is None:
        return True
    return any(p in partitions.get(topic_id, ()) for topic_id, p in _partitions(owned))


def _is_subset(owned: Assignment | None, assignment: Assignment) -> bool:
    return owned is not None and all(p in assignment.get(t, ()) for t, p in _partitions(owned))


def _validate(request: Heartbeat, assignors: Iterable[str]) -> None:
    """Kafka's checks of a heartbeat, with its messages (INVALID_REQUEST and kin)."""
    invalid = ErrorCode.invalid_request
    if not request.group_id:
        raise _refuse(invalid, "GroupId can't be empty.")
    if request.instance_id == "":
        raise _refuse(invalid, "InstanceId can't be empty.")
    if request.rack_id == "":
        raise _refuse(invalid, "RackId can't be empty.")
    epoch = request.member_epoch
    if not request.member_id and (request.member_id_required or epoch != 0):
        raise _refuse(invalid, "MemberId can't be empty.")
    if epoch == 0:
        if request.rebalance_timeout_ms == -1:
            raise _refuse(invalid, "RebalanceTimeoutMs must be provided in first request.")
        if request.owned is None or any(request.owned.values()):
            raise _refuse(invalid, "TopicPartitions must be empty when (re-)joining.")
        if request.subscribed_topic_names is None and request.subscribed_topic_regex is None:
            raise _refuse(invalid, "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.")
    elif epoch == LEAVE_GROUP_STATIC_EPOCH and request.instance_id is None:
        raise _refuse(invalid, "InstanceId can't be null.")
    elif epoch < LEAVE_GROUP_STATIC_EPOCH:
        raise _refuse(invalid, "MemberEpoch is invalid.")
    if request.server_assignor is not None and request.server_assignor not in assignors:
        raise _refuse(ErrorCode.unsupported_assignor, f"ServerAssignor {request.server_assignor} is not supported. "
                                                      f"Supported assignors: {', '.join(assignors)}.")
    if request.subscribed_topic_regex is not None:
        compile_regex(request.subscribed_topic_regex)


class ConsumerGroups:
    """The consumer protocol groups of this broker. Event loop only."""

    def __init__(self, settings: BrokerSettings, logs: LogManager, classic: GroupMembership) -> None:
        self.settings = settings
        self.logs = logs
        self.classic = classic
        self.groups: dict[str, ConsumerGroup] = {}

    def close(self) -> None:
        for group in self.groups.values():
            for member in group.members.values():
                member.cancel_timers()

    def heartbeat(self, request: Heartbeat) -> HeartbeatResult:
        try:
            _validate(request, self.settings.group_consumer_assignors)
            if request.member_epoch in (LEAVE_GROUP_EPOCH, LEAVE_GROUP_STATIC_EPOCH):
                return self._leave(request)
            return self._heartbeat(request)
        except RefusedError as exc:
            return HeartbeatResult(exc.code, str(exc))

    # -- joining and heartbeating ---------------------------------------------------------

    def _heartbeat(self, request: Heartbeat) -> HeartbeatResult:
        group = self._group_for(request)
        member = self._member_for(group, request)
        before_assigned = dict(member.assigned)
        before_subscription = member.subscription()
        self._update(member, request)
        bump = member.subscription() != before_subscription
        subscribed = self._subscription_metadata(group)
        if subscribed != group.subscribed:
            group.subscribed = subscribed
            bump = True
        if bump:
            group.group_epoch += 1
            log.info("group %s: epoch %d", group.group_id, group.group_epoch)
        if group.group_epoch > group.assignment_epoch:
            self._assign(group)
        self._reconcile(group, member, request.owned)
        self._schedule_session_timeout(group, member)
        full = request.member_epoch == 0 or (request.rebalance_timeout_ms != -1 and request.owned is not None
                                             and request.subscribed_topic_names is not None)
        changed = member.assigned != before_assigned
        return HeartbeatResult(member_id=member.member_id, member_epoch=member.member_epoch,
                               heartbeat_interval_ms=self.settings.group_consumer_heartbeat_interval_ms,
                               assignment=member.assigned if full or changed else None)

    def _group_for(self, request: Heartbeat) -> ConsumerGroup:
        """The consumer group, created by a first join (which takes over an empty classic group)."""
        group = self.groups.get(request.group_id)
        if group is not None:
            return group
        if not self.classic.is_empty(request.group_id):
            # Kafka's answer with its online upgrade off (the only way here).
            raise _refuse(ErrorCode.group_id_not_found, f"Group {request.group_id} is not a consumer group.")
        if request.member_epoch != 0:
            # Kafka keeps member state across restarts and would say GROUP_ID_NOT_FOUND; here a
            # group unknown to a member with an epoch was forgotten in a restart: rejoin.
            raise _refuse(ErrorCode.unknown_member_id, f"Member {request.member_id} is not a member of group "
                                                       f"{request.group_id}.")
        self.classic.forget(request.group_id)
        group = self.groups[request.group_id] = ConsumerGroup(request.group_id)
        return group

    def _member_for(self, group: ConsumerGroup, request: Heartbeat) -> ConsumerMember:
        """The member the heartbeat is from (new on a join), its epoch checked."""
        member_id = request.member_id or str(uuid.uuid4())  # v0 may leave it to the broker
        if request.instance_id is not None:
            return self._static_member_for(group, request, member_id)
        member = group.members.get(member_id)
        if request.member_epoch == 0:
            if member is None:
                log.info("group %s: member %s joins", group.group_id, member_id)
                member = group.members[member_id] = ConsumerMember(member_id)
            else:
                self._restart(group, member)
            return member
        if member is None:
            raise _refuse(ErrorCode.unknown_member_id,
                          f"Member {member_id} is not a member of group {group.group_id}.")
        self._check_epoch(member, request)
        return member

    def _static_member_for(self, group: ConsumerGroup, request: Heartbeat, member_id: str) -> ConsumerMember:
        instance_id = request.instance_id
        assert instance_id is not None
        existing_id = group.static_members.get(instance_id)
        existing = None if existing_id is None else group.members[existing_id]
        if request.member_epoch != 0:
            if existing is None:
                raise _refuse(ErrorCode.unknown_member_id, f"Instance id {instance_id} is unknown.")
            if existing.member_id != member_id:
                raise _refuse(ErrorCode.fenced_instance_id, f"Static member {member_id} with instance id "
                                                            f"{instance_id} was fenced by member {existing.member_id}.")
            self._check_epoch(existing, request)
            return existing
        if existing is None:
            log.info("group %s: static member %s (%s) joins", group.group_id, member_id, instance_id)
            member = group.members[member_id] = ConsumerMember(member_id, instance_id)
            group.static_members[instance_id] = member_id
            return member
        if existing.member_id == member_id:  # the same incarnation rejoining after an error
            self._restart(group, existing)
            return existing
        if existing.member_epoch != LEAVE_GROUP_STATIC_EPOCH:
            raise _refuse(ErrorCode.unreleased_instance_id, f"Static member {member_id} with instance id "
                                                            f"{instance_id} cannot join the group because the "
                                                            f"instance id is owned by {existing.member_id} member.")
        return self._replace_static_member(group, existing, member_id)

    def _replace_static_member(self, group: ConsumerGroup, earlier: ConsumerMember, member_id: str) -> ConsumerMember:
        """A static member back within its session timeout: its new incarnation takes the
        earlier one's subscription and partitions (Kafka's replaceMember), at epoch 0, so
        the group's epoch and everyone else's assignment stay as they are."""
        earlier.cancel_timers()
        del group.members[earlier.member_id]
        member = ConsumerMember(
            member_id, earlier.instance_id, earlier.rack_id, earlier.client_id, earlier.client_host,
            earlier.rebalance_timeout_ms, earlier.subscribed_topic_names, earlier.subscribed_topic_regex,
            earlier.server_assignor, member_epoch=0, previous_member_epoch=0, assigned=earlier.assigned)
        group.members[member_id] = member
        assert member.instance_id is not None
        group.static_members[member.instance_id] = member_id
        if earlier.member_id in group.target:
            group.target[member_id] = group.target.pop(earlier.member_id)
        for tp in _partitions(earlier.assigned):
            group.owners[tp] = member_id
        log.info("group %s: static member %s rejoined as %s (was %s)", group.group_id, member.instance_id,
                 member_id, earlier.member_id)
        return member

    def _restart(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        """A known member joining again with epoch 0 (it was fenced, or lost an answer) has
        given up all its partitions: it starts over, keeping its id."""
        self._release(group, member)
        member.assigned, member.pending_revocation = {}, {}
        member.member_epoch, member.previous_member_epoch, member.state = 0, -1, MemberState.STABLE

    @staticmethod
    def _check_epoch(member: ConsumerMember, request: Heartbeat) -> None:
        """FENCED_MEMBER_EPOCH unless the member's epoch is current, or the previous one with
        no partitions beyond its assignment (it lost the answer that bumped it)."""
        epoch = request.member_epoch
        if epoch > member.member_epoch or (epoch < member.member_epoch and not (
                epoch == member.previous_member_epoch and _is_subset(request.owned, member.assigned))):
            raise _refuse(ErrorCode.fenced_member_epoch,
                          f"The consumer group member has a member epoch ({epoch}) other than the one known by "
                          f"the group coordinator ({member.member_epoch}). The member must abandon all its "
                          f"partitions and rejoin.")

    def _update(self, member: ConsumerMember, request: Heartbeat) -> None:
        member.client_id, member.client_host = request.client_id, request.client_host
        if request.rack_id is not None:
            member.rack_id = request.rack_id
        if request.rebalance_timeout_ms != -1:
            member.rebalance_timeout_ms = request.rebalance_timeout_ms
        if request.server_assignor is not None:
            member.server_assignor = request.server_assignor
        if request.subscribed_topic_names is not None:
            member.subscribed_topic_names = request.subscribed_topic_names
        if request.subscribed_topic_regex is not None:
            member.subscribed_topic_regex = request.subscribed_topic_regex or None  # "": no regex

    # -- subscriptions and the target assignment ----------------------------------------------

    def _subscriptions(self, group: ConsumerGroup) -> dict[str, set[str]]:
        """The existing topics each member subscribes to: by name, and those its regex
        matches (internal topics excepted); each regex is matched once over the topics."""
        topics = self.logs.topics
        matches: dict[str, set[str]] = {}
        for regex in {m.subscribed_topic_regex for m in group.members.values() if m.subscribed_topic_regex}:
            pattern = compile_regex(regex)
            matches[regex] = {name for name in topics if not is_internal(name) and pattern.fullmatch(name)}
        return {member_id: {name for name in m.subscribed_topic_names if name in topics}
                | matches.get(m.subscribed_topic_regex or "", set()) for member_id, m in group.members.items()}

    def _subscription_metadata(self, group: ConsumerGroup) -> dict[str, SubscribedTopic]:
        topics = self.logs.topics
        names = set().union(*self._subscriptions(group).values())
        return {name: SubscribedTopic(topics[name].topic_id, topics[name].partitions) for name in sorted(names)}

    def _assign(self, group: ConsumerGroup) -> None:
        name = group.assignor(self.settings.group_consumer_assignors[0])
        members = {
            member_id: AssignorMember(
                frozenset(group.subscribed[t].topic_id for t in subscribed if t in group.subscribed),
                group.target.get(member_id, {}))
            for member_id, subscribed in self._subscriptions(group).items()
        }
        partitions = {topic.topic_id: topic.partitions for topic in group.subscribed.values()}
        group.target = ASSIGNORS[name](members, partitions)
        group.assignment_epoch = group.group_epoch
        log.info("group %s: target assignment of epoch %d by %s", group.group_id, group.group_epoch, name)

    # -- reconciliation -----------------------------------------------------------------------

    def _reconcile(self, group: ConsumerGroup, member: ConsumerMember, owned: Assignment | None) -> None:
        """Move the member one step towards its target (Kafka's CurrentAssignmentBuilder)."""
        if member.state is MemberState.UNREVOKED_PARTITIONS:
            if _owns_any(owned, member.pending_revocation):
                return
            self._next_assignment(group, member, member.member_epoch + 1, owned)
        elif member.state is MemberState.UNRELEASED_PARTITIONS or member.member_epoch != group.assignment_epoch:
            self._next_assignment(group, member, member.member_epoch, owned)

    def _next_assignment(self, group: ConsumerGroup, member: ConsumerMember, epoch: int,
                         owned: Assignment | None) -> None:
        target = group.target.get(member.member_id, {})
        kept: dict[uuid.UUID, frozenset[int]] = {}
        revoking: dict[uuid.UUID, frozenset[int]] = {}
        adding: dict[uuid.UUID, frozenset[int]] = {}
        unreleased = False
        for topic_id in set(target) | set(member.assigned):
            wanted = target.get(topic_id, frozenset())
            current = member.assigned.get(topic_id, frozenset())
            kept[topic_id], revoking[topic_id] = current & wanted, current - wanted
            free = frozenset(p for p in wanted - current if group.owners.get((topic_id, p), member.member_id)
                             == member.member_id)
            unreleased |= free != wanted - current
            adding[topic_id] = free
        self._release(group, member)
        if any(revoking.values()) and _owns_any(owned, revoking):
            # Revocation first: the member keeps its epoch until it has let them go.
            member.state = MemberState.UNREVOKED_PARTITIONS
            self._set_epoch(member, epoch)
            member.assigned, member.pending_revocation = _union(kept), _union(revoking)
            self._schedule_rebalance_timeout(group, member)
        else:
            member.state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
            self._set_epoch(member, group.assignment_epoch)
            member.assigned, member.pending_revocation = _union(kept, adding), {}
            if member.rebalance_timer is not None:
                member.rebalance_timer.cancel()
                member.rebalance_timer = None
        for tp in _partitions(_union(member.assigned, member.pending_revocation)):
            group.owners[tp] = member.member_id

    @staticmethod
    def _set_epoch(member: ConsumerMember, epoch: int) -> None:
        if epoch != member.member_epoch:
            member.previous_member_epoch, member.member_epoch = member.member_epoch, epoch

    @staticmethod
    def _release(group: ConsumerGroup, member: ConsumerMember) -> None:
        for tp in _partitions(_union(member.assigned, member.pending_revocation)):
            if group.owners.get(tp) == member.member_id:
                del group.owners[tp]

    # -- leaving --------------------------------------------------------------------------

    def _leave(self, request: Heartbeat) -> HeartbeatResult:
        group = self.groups.get(request.group_id)
        if group is None:
            raise _refuse(ErrorCode.group_id_not_found, f"Consumer group {request.group_id} not found.")
        if request.instance_id is None:
            member = group.members.get(request.member_id)
            if member is None:
                raise _refuse(ErrorCode.unknown_member_id,
                              f"Member {request.member_id} is not a member of group {group.group_id}.")
        else:
            member_id = group.static_members.get(request.instance_id)
            if member_id is None:
                raise _refuse(ErrorCode.unknown_member_id, f"Instance id {request.instance_id} is unknown.")
            if member_id != request.member_id:
                raise _refuse(ErrorCode.fenced_instance_id, f"Static member {request.member_id} with instance id "
                                                            f"{request.instance_id} was fenced by member {member_id}.")
            member = group.members[member_id]
            if request.member_epoch == LEAVE_GROUP_STATIC_EPOCH:
                # It will be back: its assignment waits for it, its session timer runs on.
                for tp in _partitions(member.pending_revocation):
                    group.owners.pop(tp, None)
                member.pending_revocation, member.member_epoch = {}, LEAVE_GROUP_STATIC_EPOCH
                log.info("group %s: static member %s left for now", group.group_id, member.member_id)
                return HeartbeatResult(member_id=member.member_id, member_epoch=LEAVE_GROUP_STATIC_EPOCH)
        log.info("group %s: member %s left", group.group_id, member.member_id)
        self._remove(group, member)
        return HeartbeatResult(member_id=request.member_id, member_epoch=request.member_epoch)

    def _remove(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        """The member goes with its partitions; the group's epoch is bumped, so the next
        heartbeat computes a target without it."""
        member.cancel_timers()
        self._release(group, member)
        del group.members[member.member_id]
        group.target.pop(member.member_id, None)
        if member.instance_id is not None and group.static_members.get(member.instance_id) == member.member_id:
            del group.static_members[member.instance_id]
        group.subscribed = self._subscription_metadata(group)
        group.group_epoch += 1

    def _schedule_session_timeout(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        if member.session_timer is not None:
            member.session_timer.cancel()
        member.session_timer = asyncio.get_running_loop().call_later(
            self.settings.group_consumer_session_timeout_ms / 1000, self._expire, group, member, "session")

    def _schedule_rebalance_timeout(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        """Each revocation asked for gets the member's whole rebalance timeout."""
        if member.rebalance_timer is not None:
            member.rebalance_timer.cancel()
        member.rebalance_timer = asyncio.get_running_loop().call_later(
            member.rebalance_timeout_ms / 1000, self._expire, group, member, "rebalance")

    def _expire(self, group: ConsumerGroup, member: ConsumerMember, timeout: str) -> None:
        if group.members.get(member.member_id) is not member:
            return
        log.info("group %s: member %s missed its %s timeout", group.group_id, member.member_id, timeout)
        self._remove(group, member)

    # -- what offsets, listing and deleting ask ---------------------------------------------

    def commit_error(self, group_id: str, member_id: str, member_epoch: int, carries_epoch: bool) -> ErrorCode:
        """Why a member of a consumer group may not commit (Kafka's validateOffsetCommit);
        `carries_epoch`: OffsetCommit v9+ or TxnOffsetCommit, whose members send epochs."""
        group = self.groups[group_id]
        if member_epoch < 0 and not group.members:
            return ErrorCode.none
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.unknown_member_id
        if not carries_epoch:
            return ErrorCode.unsupported_version  # OffsetCommit v9 or above must be used
        return ErrorCode.none if member_epoch == member.member_epoch else ErrorCode.stale_member_epoch

    def fetch_error(self, group_id: str, member_id: str | None, member_epoch: int) -> ErrorCode:
        """Kafka's validateOffsetFetch: a member reading its group's offsets (OffsetFetch v9+)."""
        group = self.groups.get(group_id)
        if group is None or (member_id is None and member_epoch < 0):
            return ErrorCode.none
        member = group.members.get(member_id or "")
        if member is None:
            return ErrorCode.unknown_member_id
        return ErrorCode.none if member_epoch == member.member_epoch else ErrorCode.stale_member_epoch

    def topics_in_use(self, group_id: str) -> set[str]:
        group = self.groups.get(group_id)
        return set() if group is None else set(group.subscribed)

    def has_members(self, group_id: str) -> bool:
        group = self.groups.get(group_id)
        return group is not None and bool(group.members)

    def forget(self, group_id: str) -> None:
        group = self.groups.pop(group_id, None)
        if group is not None:
            for member in group.members.values():
                member.cancel_timers()

    def topic_names(self) -> Mapping[uuid.UUID, str]:
        return {topic.topic_id: name for name, topic in self.logs.topics.items()}
