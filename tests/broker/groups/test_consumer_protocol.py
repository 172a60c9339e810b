"""The consumer group protocol (KIP-848) in-process: reconciliation with revocation first,
epochs and fencing, session timeouts, static members, assignors, and the offset checks."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kio.schema.errors import ErrorCode

from broker.groups.assignors import AssignorMember, range_assignor, uniform
from broker.groups.consumer_protocol import ConsumerGroups, ConsumerGroupState, Heartbeat, HeartbeatResult
from broker.groups.membership import GroupMembership
from broker.settings import BrokerSettings
from hotlog.manager import Topic

from ..support import join as classic_join

T = uuid.UUID(int=1)  # the topic "t", 4 partitions


class Logs:
    """What the coordinator reads of the log manager: its topics."""

    def __init__(self) -> None:
        self.topics = {"t": Topic("t", T, 4)}


def run(scenario: Callable[[ConsumerGroups], Awaitable[None]], **settings: Any) -> None:
    async def main() -> None:
        values = {"group_consumer_session_timeout_ms": 60_000, "group_consumer_heartbeat_interval_ms": 100,
                  **settings}
        broker_settings = BrokerSettings(**values)
        groups = ConsumerGroups(broker_settings, Logs(), GroupMembership(broker_settings))  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(scenario(groups), 10)
        finally:
            groups.close()
    asyncio.run(main())


def join(member_id: str, **changes: Any) -> Heartbeat:
    request = Heartbeat("g", member_id, 0, rebalance_timeout_ms=30_000, subscribed_topic_names=("t",), owned={})
    return dataclasses.replace(request, **changes)


def beat(member_id: str, epoch: int, owned: Mapping[uuid.UUID, frozenset[int]] | None, **changes: Any) -> Heartbeat:
    return dataclasses.replace(Heartbeat("g", member_id, epoch, owned=owned), **changes)


def parts(result: HeartbeatResult) -> set[int]:
    assert result.error == ErrorCode.none, result
    assert result.assignment is not None
    return set(result.assignment.get(T, frozenset()))


def owning(*partitions: int) -> dict[uuid.UUID, frozenset[int]]:
    return {T: frozenset(partitions)}


def test_a_partition_moves_only_after_its_owner_revoked_it_and_epochs_advance_on_convergence() -> None:
    async def scenario(groups: ConsumerGroups) -> None:
        a = groups.heartbeat(join("a"))
        assert parts(a) == {0, 1, 2, 3} and a.member_epoch == 1
        b = groups.heartbeat(join("b"))
        group = groups.groups["g"]
        assert group.group_epoch == 2
        # b's target is two of a's partitions: a still owns them, so b gets none yet.
        assert parts(b) == set() and b.member_epoch == 2
        a_again = groups.heartbeat(beat("a", 1, owning(0, 1, 2, 3)))
        kept = parts(a_again)
        assert len(kept) == 2 and a_again.member_epoch == 1  # asked to revoke, epoch kept
        assert group.state is ConsumerGroupState.RECONCILING
        assert groups.heartbeat(beat("b", 2, owning())).assignment is None  # not revoked yet: nothing new
        revoked = groups.heartbeat(beat("a", 1, owning(*kept)))
        assert revoked.member_epoch == 2 and revoked.assignment is None  # converged, nothing new
        b_now = groups.heartbeat(beat("b", 2, owning()))
        assert parts(b_now) == {0, 1, 2, 3} - kept
        assert group.state is ConsumerGroupState.STABLE
    run(scenario)


def test_epochs_other_than_the_current_one_are_fenced_but_a_lost_bump_is_forgiven() -> None:
    async def scenario(groups: ConsumerGroups) -> None:
        groups.heartbeat(join("a"))
        groups.heartbeat(join("b"))
        groups.heartbeat(beat("a", 1, owning(0, 1, 2, 3)))
        kept = groups.groups["g"].members["a"].assigned[T]
        assert groups.heartbeat(beat("a", 1, owning(*kept))).member_epoch == 2
        assert groups.heartbeat(beat("a", 3, owning(*kept))).error == ErrorCode.fenced_member_epoch
        # The answer with epoch 2 was lost: epoch 1 is accepted while it owns no more than it has.
        assert groups.heartbeat(beat("a", 1, owning(*kept))).error == ErrorCode.none
        assert groups.heartbeat(beat("a", 1, owning(0, 1, 2, 3))).error == ErrorCode.fenced_member_epoch
        assert groups.heartbeat(beat("nobody", 2, None)).error == ErrorCode.unknown_member_id
        # A group this broker forgot (a restart) tells its members to rejoin.
        assert groups.heartbeat(beat("a", 2, None, group_id="forgotten")).error == ErrorCode.unknown_member_id
        # Joining again with epoch 0 starts over: its partitions are free for others meanwhile.
        again = groups.heartbeat(join("a"))
        assert again.error == ErrorCode.none and again.member_epoch == groups.groups["g"].assignment_epoch
    run(scenario)


def test_a_member_missing_its_session_timeout_is_removed_and_the_other_gets_its_partitions() -> None:
    async def scenario(groups: ConsumerGroups) -> None:
        groups.heartbeat(join("a"))
        b = groups.heartbeat(join("b"))
        group = groups.groups["g"]
        groups.heartbeat(beat("a", 1, owning(0, 1, 2, 3)))
        deadline = asyncio.get_running_loop().time() + 5
        while "b" in group.members:  # b never heartbeats again; a does
            assert asyncio.get_running_loop().time() < deadline
            owned = group.members["a"].assigned
            groups.heartbeat(beat("a", group.members["a"].member_epoch, dict(owned)))
            await asyncio.sleep(0.01)
        a = groups.heartbeat(beat("a", group.members["a"].member_epoch, dict(group.members["a"].assigned)))
        assert parts(a) == {0, 1, 2, 3} and a.member_epoch > b.member_epoch
    run(scenario, group_consumer_session_timeout_ms=200)


def test_a_member_leaving_gives_its_share_back_to_the_others() -> None:
    async def scenario(groups: ConsumerGroups) -> None:
        groups.heartbeat(join("a"))
        groups.heartbeat(join("b"))
        kept = parts(groups.heartbeat(beat("a", 1, owning(0, 1, 2, 3))))  # a is asked to revoke b's share
        left = groups.heartbeat(beat("b", -1, None))
        assert left.error == ErrorCode.none and left.member_epoch == -1
        assert "b" not in groups.groups["g"].members
        assert groups.heartbeat(beat("b", -1, None)).error == ErrorCode.unknown_member_id
        a = groups.heartbeat(beat("a", 1, owning(*kept)))
        assert parts(a) == {0, 1, 2, 3} and a.member_epoch == groups.groups["g"].group_epoch == 3
    run(scenario)


def test_a_static_member_leaving_for_now_keeps_its_partitions_for_its_next_incarnation() -> None:
    async def scenario(groups: ConsumerGroups) -> None:
        a1 = groups.heartbeat(join("a1", instance_id="a"))
        groups.heartbeat(join("b", instance_id="b"))
        a_kept = parts(groups.heartbeat(beat("a1", 1, owning(0, 1, 2, 3))))
        groups.heartbeat(beat("a1", 1, owning(*a_kept)))
        epoch = groups.groups["g"].group_epoch
        assert groups.heartbeat(join("a2", instance_id="a")).error == ErrorCode.unreleased_instance_id
        away = groups.heartbeat(beat("a1", -2, None, instance_id="a"))
        assert away.member_epoch == -2 and a1.member_id == "a1"
        assert groups.heartbeat(beat("b", 2, owning())).error == ErrorCode.none
        assert groups.groups["g"].members["b"].assigned.get(T, frozenset()).isdisjoint(a_kept)
        a2 = groups.heartbeat(join("a2", instance_id="a"))
        assert parts(a2) == a_kept and groups.groups["g"].group_epoch == epoch  # no rebalance
        fenced = groups.heartbeat(beat("a1", 2, None, instance_id="a"))
        assert fenced.error == ErrorCode.fenced_instance_id
    run(scenario)


def test_bad_requests_are_refused_with_kafkas_errors_and_change_nothing() -> None:
    async def scenario(groups: ConsumerGroups) -> None:
        cases = {
            ErrorCode.invalid_request: [join("a", group_id=""), join(""), join("a", rebalance_timeout_ms=-1),
                                        join("a", owned=owning(1)), join("a", subscribed_topic_names=None),
                                        beat("a", -3, None), beat("a", -2, None), join("a", instance_id="")],
            ErrorCode.unsupported_assignor: [join("a", server_assignor="sticky")],
            ErrorCode.invalid_regular_expression: [join("a", subscribed_topic_regex="t("),
                                                   join("a", subscribed_topic_regex="t" * 1025)],
        }
        for code, requests in cases.items():
            for request in requests:
                assert groups.heartbeat(request).error == code, request
        assert groups.groups == {}
        assert groups.heartbeat(join("", member_id_required=False)).member_id  # v0: the broker names it
    run(scenario)


def test_a_regex_subscription_picks_up_a_topic_created_later() -> None:
    async def scenario(groups: ConsumerGroups) -> None:
        first = groups.heartbeat(join("a", subscribed_topic_names=(), subscribed_topic_regex="t.*"))
        assert parts(first) == {0, 1, 2, 3}
        other = uuid.UUID(int=2)
        groups.logs.topics["t2"] = Topic("t2", other, 2)
        groups.logs.topics["__consumer_offsets"] = Topic("__consumer_offsets", uuid.UUID(int=3), 3)
        again = groups.heartbeat(beat("a", first.member_epoch, owning(0, 1, 2, 3)))
        assert again.member_epoch == first.member_epoch + 1
        assert again.assignment == {T: frozenset(range(4)), other: frozenset(range(2))}  # never internal topics
    run(scenario)


def test_a_backtracking_regex_costs_no_more_than_any_other() -> None:
    """`(a+)+b` over a name of 27 a's takes Python's `re` some 6 s (it doubles with each a;
    a 249-character name would take ages); RE2 matches in time linear in the name, and
    refuses what it cannot match so."""
    async def scenario(groups: ConsumerGroups) -> None:
        groups.logs.topics["a" * 27] = Topic("a" * 27, uuid.UUID(int=9), 1)
        began = time.monotonic()
        result = groups.heartbeat(join("a", subscribed_topic_names=(), subscribed_topic_regex="(a+)+b"))
        assert result.error == ErrorCode.none and parts(result) == set()
        assert time.monotonic() - began < 1
        lookahead = groups.heartbeat(join("b", subscribed_topic_names=(), subscribed_topic_regex="(?=t).*"))
        assert lookahead.error == ErrorCode.invalid_regular_expression
    run(scenario)


def test_a_member_that_does_not_revoke_within_its_rebalance_timeout_is_removed() -> None:
    async def scenario(groups: ConsumerGroups) -> None:
        groups.heartbeat(join("a", rebalance_timeout_ms=100))
        groups.heartbeat(join("b"))
        group = groups.groups["g"]
        groups.heartbeat(beat("a", 1, owning(0, 1, 2, 3)))  # asked to revoke; it never does
        deadline = asyncio.get_running_loop().time() + 5
        while "a" in group.members:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        b = groups.heartbeat(beat("b", group.members["b"].member_epoch, owning()))
        assert parts(b) == {0, 1, 2, 3}
    run(scenario)


def test_the_protocols_keep_to_their_own_groups_and_an_empty_group_gives_way() -> None:
    async def scenario(groups: ConsumerGroups) -> None:
        classic = await groups.classic.join(classic_join(group="classic"))
        assert classic.error == ErrorCode.none
        refused = groups.heartbeat(join("a", group_id="classic"))
        assert refused.error == ErrorCode.group_id_not_found  # Kafka's, with online upgrades off
        assert "classic" not in groups.groups and groups.classic.groups["classic"].members
        groups.classic.leave("classic", [(classic.member_id, None)])
        assert groups.heartbeat(join("a", group_id="classic")).error == ErrorCode.none
        assert "classic" not in groups.classic.groups
    run(scenario, group_initial_rebalance_delay_ms=0, group_min_session_timeout_ms=10)


def test_commits_and_fetches_need_the_members_current_epoch() -> None:
    async def scenario(groups: ConsumerGroups) -> None:
        a = groups.heartbeat(join("a"))
        assert groups.commit_error("g", "a", a.member_epoch, carries_epoch=True) == ErrorCode.none
        assert groups.commit_error("g", "a", a.member_epoch - 1, carries_epoch=True) == ErrorCode.stale_member_epoch
        assert groups.commit_error("g", "a", a.member_epoch, carries_epoch=False) == ErrorCode.unsupported_version
        assert groups.commit_error("g", "x", a.member_epoch, carries_epoch=True) == ErrorCode.unknown_member_id
        assert groups.commit_error("g", "", -1, carries_epoch=True) == ErrorCode.unknown_member_id  # has members
        assert groups.fetch_error("g", "a", a.member_epoch + 1) == ErrorCode.stale_member_epoch
        assert groups.fetch_error("g", None, -1) == ErrorCode.none  # an admin client
        groups.heartbeat(beat("a", -1, None))
        assert groups.commit_error("g", "", -1, carries_epoch=True) == ErrorCode.none  # empty: anyone may
    run(scenario)


def test_uniform_spreads_evenly_and_keeps_partitions_where_they_were() -> None:
    topics = {T: 12}
    members = {m: AssignorMember(frozenset({T}), {}) for m in "abc"}
    first = uniform(members, topics)
    assert sorted(len(a[T]) for a in first.values()) == [4, 4, 4]
    assert frozenset().union(*(a[T] for a in first.values())) == frozenset(range(12))
    grown = {**{m: AssignorMember(frozenset({T}), first[m]) for m in "abc"}, "d": AssignorMember(frozenset({T}), {})}
    second = uniform(grown, topics)
    assert sorted(len(a.get(T, ())) for a in second.values()) == [3, 3, 3, 3]
    assert all(second[m][T] <= first[m][T] for m in "abc")  # only d's share moved


def test_uniform_balances_members_of_different_subscriptions() -> None:
    other = uuid.UUID(int=2)
    members = {"a": AssignorMember(frozenset({T}), {}), "b": AssignorMember(frozenset({T, other}), {})}
    assigned = uniform(members, {T: 4, other: 4})
    assert assigned == {"a": {T: frozenset(range(4))}, "b": {other: frozenset(range(4))}}


def test_range_gives_contiguous_ranges_in_member_order_and_the_first_ones_one_more() -> None:
    other = uuid.UUID(int=2)
    members = {"a": AssignorMember(frozenset({T, other}), {}), "b": AssignorMember(frozenset({T}), {})}
    assigned = range_assignor(members, {T: 5, other: 2})
    assert assigned["a"] == {T: frozenset({0, 1, 2}), other: frozenset({0, 1})}
    assert assigned["b"] == {T: frozenset({3, 4})}
