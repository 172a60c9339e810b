"""Server-side partition assignors of the consumer group protocol (KIP-848): `uniform` and
`range`, by Kafka's names. An assignor maps each member's subscribed topics to the
partitions it should own (the group's target assignment); the coordinator then moves
members towards it (consumer_protocol.py). Pure functions of their input: no clock, no IO.
"""

from __future__ import annotations

import heapq
import math
import uuid
from collections.abc import Callable, Mapping
from typing import NamedTuple

# A member's partitions by topic id, as the protocol carries them.
Assignment = Mapping[uuid.UUID, frozenset[int]]


class AssignorMember(NamedTuple):
    """What an assignor knows of a member: its subscription and its last target."""

    topic_ids: frozenset[uuid.UUID]
    target: Assignment  # the previous target assignment: stickiness keeps it where it can


# member id -> member; topic id -> its partition count; the result: member id -> target.
Assignor = Callable[[Mapping[str, AssignorMember], Mapping[uuid.UUID, int]], dict[str, Assignment]]


def _grouped(owners: Mapping[tuple[uuid.UUID, int], str], members: Mapping[str, AssignorMember]
             ) -> dict[str, Assignment]:
    """Per-partition owners as each member's partitions by topic (every member present)."""
    by_member: dict[str, dict[uuid.UUID, set[int]]] = {member_id: {} for member_id in members}
    for (topic_id, partition), member_id in owners.items():
        by_member[member_id].setdefault(topic_id, set()).add(partition)
    return {member_id: {t: frozenset(ps) for t, ps in topics.items()} for member_id, topics in by_member.items()}


def uniform(members: Mapping[str, AssignorMember], partitions: Mapping[uuid.UUID, int]) -> dict[str, Assignment]:
    """Kafka's default: partitions spread evenly over the members subscribed to their
    topics, each member keeping what it had as far as balance allows (sticky), so a
    member joining or leaving moves as few partitions as it can."""
    subscribers: dict[uuid.UUID, list[str]] = {}
    for member_id in sorted(members):
        for topic_id in members[member_id].topic_ids:
            if topic_id in partitions:
                subscribers.setdefault(topic_id, []).append(member_id)
    # A member's fair share: of each topic it subscribes to, its part among the subscribers.
    share = {member_id: math.ceil(sum(partitions[t] / len(subscribers[t]) for t in m.topic_ids if t in partitions))
             for member_id, m in members.items()}
    owners: dict[tuple[uuid.UUID, int], str] = {}
    counts = dict.fromkeys(members, 0)
    for member_id in sorted(members):  # sticky: keep the previous target up to the share
        member = members[member_id]
        for topic_id, kept in sorted(member.target.items()):
            for partition in sorted(kept):
                key = (topic_id, partition)
                if topic_id in member.topic_ids and partition < partitions.get(topic_id, 0) \
                        and key not in owners and counts[member_id] < share[member_id]:
                    owners[key] = member_id
                    counts[member_id] += 1
    for topic_id in sorted(subscribers):  # the rest to the least loaded subscriber
        lightest = [(counts[m], m) for m in subscribers[topic_id]]
        heapq.heapify(lightest)
        for partition in range(partitions[topic_id]):
            if (topic_id, partition) not in owners:
                count, chosen = heapq.heappop(lightest)
                owners[(topic_id, partition)] = chosen
                counts[chosen] = count + 1
                heapq.heappush(lightest, (count + 1, chosen))
    _balance(owners, counts, subscribers, partitions)
    return _grouped(owners, members)


def _balance(owners: dict[tuple[uuid.UUID, int], str], counts: dict[str, int],
             subscribers: Mapping[uuid.UUID, list[str]], partitions: Mapping[uuid.UUID, int]) -> None:
    """Move partitions from a member to a subscriber owning two or more fewer, until none
    can move (subscriptions that differ can leave the sticky pass uneven). Each move
    lowers the sum of squared counts, so this ends."""
    moved = True
    while moved:
        moved = False
        for topic_id in sorted(subscribers):
            lightest = min(subscribers[topic_id], key=lambda m: (counts[m], m))
            for partition in range(partitions[topic_id]):
                owner = owners[(topic_id, partition)]
                if counts[lightest] <= counts[owner] - 2:
                    owners[(topic_id, partition)] = lightest
                    counts[owner] -= 1
                    counts[lightest] += 1
                    moved = True
                    lightest = min(subscribers[topic_id], key=lambda m: (counts[m], m))


def range_assignor(members: Mapping[str, AssignorMember], partitions: Mapping[uuid.UUID, int]
                   ) -> dict[str, Assignment]:
    """Kafka's `range`: each topic's partitions cut into contiguous ranges, one per member
    subscribed to it in member id order, the first ones a partition longer; members
    subscribed to the same co-partitioned topics get the same partition numbers."""
    owners: dict[tuple[uuid.UUID, int], str] = {}
    for topic_id, count in partitions.items():
        subscribed = sorted(m for m, member in members.items() if topic_id in member.topic_ids)
        if not subscribed:
            continue
        size, longer = divmod(count, len(subscribed))
        start = 0
        for index, member_id in enumerate(subscribed):
            end = start + size + (1 if index < longer else 0)
            for partition in range(start, end):
                owners[(topic_id, partition)] = member_id
            start = end
    return _grouped(owners, members)


ASSIGNORS: dict[str, Assignor] = {"uniform": uniform, "range": range_assignor}
