"""Static members (KIP-345) in-process: a restart under the same group.instance.id takes
the earlier member's place, with or without a rebalance as Kafka decides."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.coordinator import GroupCoordinator
from broker.groups.membership import GroupMembership, GroupProtocol, GroupState, JoinRequest, JoinResult
from broker.node import Broker

from ..support import join, run


def static(instance_id: str, member_id: str = "", **changes: Any) -> JoinRequest:
    return dataclasses.replace(join(member_id), group_instance_id=instance_id, **changes)


async def stable_pair(membership: GroupMembership) -> tuple[JoinResult, JoinResult]:
    """Static members "a" (the leader) and "b" of a Stable generation 1, assigned b"A" and b"B"."""
    a, b = await asyncio.gather(membership.join(static("a")), membership.join(static("b")))
    assert a.generation_id == b.generation_id == 1 and a.leader_id == a.member_id
    await asyncio.gather(
        membership.sync("g", 1, a.member_id, "a", None, None, {a.member_id: b"A", b.member_id: b"B"}),
        membership.sync("g", 1, b.member_id, "b", None, None, {}))
    assert membership.groups["g"].state is GroupState.STABLE
    return a, b


def test_the_restarted_leader_gets_its_assignment_in_the_same_generation_and_its_old_id_is_fenced(
        tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        membership = groups.membership
        a, b = await stable_pair(membership)
        again = await membership.join(static("a"))
        # Before JoinGroup v9 the new leader is told the earlier id: it syncs as a follower.
        assert (again.error, again.generation_id, again.leader_id, again.members) == \
            (ErrorCode.none, 1, a.member_id, ())
        assert again.member_id != a.member_id and membership.groups["g"].leader_id == again.member_id
        assert membership.groups["g"].state is GroupState.STABLE
        assert (await membership.sync("g", 1, again.member_id, "a", None, None, {})).assignment == b"A"
        assert membership.heartbeat("g", 1, b.member_id, "b") == ErrorCode.none
        assert membership.heartbeat("g", 1, a.member_id, "a") == ErrorCode.fenced_instance_id
        assert (await membership.sync("g", 1, a.member_id, "a", None, None, {})).error == ErrorCode.fenced_instance_id
        assert (await membership.join(static("a", a.member_id))).error == ErrorCode.fenced_instance_id
        assert membership.leave("g", [(a.member_id, "a")]) == [ErrorCode.fenced_instance_id]

    run(str(tmp_path), scenario, group_initial_rebalance_delay_ms=100)  # a and b join together


def test_from_joingroup_v9_the_restarted_leader_is_the_leader_and_skips_the_assignment(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        a, b = await stable_pair(groups.membership)
        again = await groups.membership.join(static("a", supports_skip_assignment=True))
        assert (again.generation_id, again.leader_id, again.skip_assignment) == (1, again.member_id, True)
        assert {m.member_id for m in again.members} == {again.member_id, b.member_id}

    run(str(tmp_path), scenario, group_initial_rebalance_delay_ms=100)  # a and b join together


def test_a_restart_that_changes_the_groups_protocol_rebalances(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        membership = groups.membership
        both = (GroupProtocol("range", b""), GroupProtocol("roundrobin", b""))
        alone = await membership.join(static("a", protocols=both))
        await membership.sync("g", 1, alone.member_id, "a", None, None, {alone.member_id: b"A"})
        again = await membership.join(static("a", protocols=both[::-1]))  # now prefers roundrobin
        assert (again.generation_id, again.protocol_name, again.leader_id) == (2, "roundrobin", again.member_id)
        assert membership.groups["g"].state is GroupState.COMPLETING_REBALANCE

    run(str(tmp_path), scenario)


def test_a_restart_while_the_leader_assigns_rebalances_and_fences_the_earlier_sync(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        membership = groups.membership
        a, b = await asyncio.gather(membership.join(static("a")), membership.join(static("b")))
        waiting = asyncio.ensure_future(membership.sync("g", 1, b.member_id, "b", None, None, {}))
        await asyncio.sleep(0.05)
        assert membership.groups["g"].state is GroupState.COMPLETING_REBALANCE
        restarted = asyncio.ensure_future(membership.join(static("b")))
        assert (await waiting).error == ErrorCode.fenced_instance_id
        assert membership.groups["g"].state is GroupState.PREPARING_REBALANCE
        leader = await membership.join(static("a", a.member_id))
        assert (await restarted).generation_id == leader.generation_id == 2
        assert {m.member_id for m in leader.members} == {a.member_id, (await restarted).member_id}

    run(str(tmp_path), scenario, group_initial_rebalance_delay_ms=100)  # a and b join together


def test_leave_by_instance_id_removes_a_static_member_at_once(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        membership = groups.membership
        a, b = await stable_pair(membership)
        assert membership.leave("g", [("", "b")]) == [ErrorCode.none]
        assert list(membership.groups["g"].members) == [a.member_id]
        assert membership.groups["g"].static_members == {"a": a.member_id}
        assert membership.heartbeat("g", 1, a.member_id, "a") == ErrorCode.rebalance_in_progress
        assert membership.leave("g", [("", "b")]) == [ErrorCode.unknown_member_id]

    run(str(tmp_path), scenario, group_initial_rebalance_delay_ms=100)  # a and b join together
