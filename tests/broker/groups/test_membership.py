"""Group membership in-process: joins, syncs, timeouts and static members."""

from __future__ import annotations

import asyncio
from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.coordinator import GroupCoordinator
from broker.groups.membership import GroupState
from broker.node import Broker

from ..support import join, run


def test_two_members_join_one_generation_and_the_leader_assignment_reaches_both(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        first = await groups.membership.join(join())
        assert (first.error, first.generation_id, first.leader_id) == (ErrorCode.none, 1, first.member_id)
        # A second member: the leader must rejoin before the new generation forms.
        second_join = asyncio.ensure_future(groups.membership.join(join()))
        await asyncio.sleep(0.05)
        assert groups.membership.groups["g"].state is GroupState.PREPARING_REBALANCE
        assert groups.membership.heartbeat("g", 1, first.member_id, None) == ErrorCode.rebalance_in_progress
        leader, second = await asyncio.gather(groups.membership.join(join(first.member_id)), second_join)
        assert leader.generation_id == second.generation_id == 2
        assert [m[0] for m in leader.members] == [first.member_id, second.member_id] and second.members == ()
        follower_sync = asyncio.ensure_future(groups.membership.sync("g", 2, second.member_id, None, None, None, {}))
        leader_sync = await groups.membership.sync("g", 2, first.member_id, None, None, None,
                                        {first.member_id: b"p0", second.member_id: b"p1"})
        assert (leader_sync.assignment, (await follower_sync).assignment) == (b"p0", b"p1")
        assert groups.membership.groups["g"].state is GroupState.STABLE
        assert groups.membership.heartbeat("g", 2, second.member_id, None) == ErrorCode.none
        assert groups.membership.heartbeat("g", 1, second.member_id, None) == ErrorCode.illegal_generation
        assert groups.membership.heartbeat("g", 2, "stranger", None) == ErrorCode.unknown_member_id

    run(str(tmp_path), scenario)


def test_kip394_hands_out_a_member_id_before_joining(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        asked = await groups.membership.join(join(require_known_member_id=True))
        assert asked.error == ErrorCode.member_id_required and asked.member_id
        assert groups.membership.groups["g"].members == {}
        joined = await groups.membership.join(join(asked.member_id, require_known_member_id=True))
        assert (joined.error, joined.member_id) == (ErrorCode.none, asked.member_id)

    run(str(tmp_path), scenario)


def test_a_member_missing_its_session_timeout_is_removed_and_the_group_rebalances(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        quiet = await groups.membership.join(join(session_ms=300))
        busy_join = asyncio.ensure_future(groups.membership.join(join(session_ms=300)))
        await asyncio.sleep(0.01)
        quiet_rejoin = await groups.membership.join(join(quiet.member_id, session_ms=300))
        busy = await busy_join
        await asyncio.gather(groups.membership.sync("g", 2, quiet.member_id, None, None, None, {}),
                             groups.membership.sync("g", 2, busy.member_id, None, None, None, {}))
        assert quiet_rejoin.generation_id == 2
        for _ in range(8):  # busy heartbeats, quiet does not
            await asyncio.sleep(0.1)
            error = groups.membership.heartbeat("g", 2, busy.member_id, None)
        assert error == ErrorCode.rebalance_in_progress
        assert list(groups.membership.groups["g"].members) == [busy.member_id]
        alone = await groups.membership.join(join(busy.member_id, session_ms=300))
        assert (alone.generation_id, alone.leader_id, len(alone.members)) == (3, busy.member_id, 1)

    run(str(tmp_path), scenario)


def test_a_member_that_does_not_rejoin_in_the_rebalance_timeout_is_dropped(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        stale = await groups.membership.join(join(session_ms=10_000, rebalance_ms=300))
        await groups.membership.sync("g", 1, stale.member_id, None, None, None, {})
        newcomer = await groups.membership.join(join(session_ms=10_000, rebalance_ms=300))  # waits out the old member
        assert (newcomer.generation_id, newcomer.leader_id) == (2, newcomer.member_id)
        assert list(groups.membership.groups["g"].members) == [newcomer.member_id]
        assert groups.membership.heartbeat("g", 1, stale.member_id, None) == ErrorCode.unknown_member_id

    run(str(tmp_path), scenario)


def test_a_member_whose_join_is_dropped_does_not_hold_up_the_rebalance(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        first = await groups.membership.join(join(session_ms=300, rebalance_ms=10_000))
        vanishing = asyncio.ensure_future(groups.membership.join(join(session_ms=300, rebalance_ms=10_000)))
        await asyncio.sleep(0.05)
        vanishing.cancel()  # its connection closed while it waited
        rejoined = await groups.membership.join(join(first.member_id, session_ms=300, rebalance_ms=10_000))
        assert rejoined.generation_id == 2 and len(rejoined.members) == 2  # at once, not after 10 s
        await groups.membership.sync("g", 2, first.member_id, None, None, None, {})
        for _ in range(6):  # the vanished member sends no heartbeats and times out
            await asyncio.sleep(0.1)
            groups.membership.heartbeat("g", 2, first.member_id, None)
        assert list(groups.membership.groups["g"].members) == [first.member_id]

    run(str(tmp_path), scenario)


def test_the_initial_delay_gathers_members_starting_together(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        first = asyncio.ensure_future(groups.membership.join(join()))
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(groups.membership.join(join()))
        results = await asyncio.gather(first, second)
        assert {r.generation_id for r in results} == {1}

    run(str(tmp_path), scenario, group_initial_rebalance_delay_ms=300)


def test_joins_that_do_not_fit_the_group_are_refused(tmp_path: Any) -> None:
    async def scenario(broker: Broker, groups: GroupCoordinator) -> None:
        assert (await groups.membership.join(join(session_ms=5))).error == ErrorCode.invalid_session_timeout
        await groups.membership.join(join())
        assert (await groups.membership.join(join(protocol_type="connect"))).error == ErrorCode.inconsistent_group_protocol
        assert (await groups.membership.join(join(protocols=(("sticky", b""),)))).error == \
            ErrorCode.inconsistent_group_protocol
        assert (await groups.membership.join(join(group=""))).error == ErrorCode.invalid_group_id

    run(str(tmp_path), scenario)


