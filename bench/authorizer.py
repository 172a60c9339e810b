"""What authorization costs a produce request: the Kafka Produce handler, in-process, on
a broker of its own, with no authorizer against the authorizer with `--acls` ACLs.

    python bench/authorizer.py [--acls 1000,10000] [--requests 20000] [--topics 1,10]

Each request is acks=1, one small batch per partition, to `--topics` topics of one
partition (each topic is one check). The ACLs are those of many teams: literal grants
to other principals on other topics, prefixed grants, a wildcard DESCRIBE, and the
principal's own prefixed WRITE among them. Reported: microseconds per request without and
with the authorizer (the fastest of 6 interleaved rounds each), their ratio, and the check
alone (Access.write_refusal) per topic.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any

sys.path[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

from kio.schema.produce.v9 import request as produce_v9  # noqa: E402

from api.kafka.codec import build, response_type  # noqa: E402
from api.kafka.context import Call, KafkaContext  # noqa: E402
from api.kafka.produce import handle_produce  # noqa: E402
from broker.node import Broker  # noqa: E402
from broker.security.acls import AclBinding, AclOperation, AclPermissionType, PatternType, ResourceType  # noqa: E402
from broker.security.authorizer import Access, AclIndex, AuthorizerConfig  # noqa: E402
from broker.security.principal import Principal  # noqa: E402
from broker.settings import BrokerSettings  # noqa: E402
from hotlog.records import Record, build_batch  # noqa: E402

PRODUCE = 0
PRINCIPAL = Principal("User", "bench")
HOST = "10.0.0.7"
ROUNDS = 6


def team_acls(count: int) -> list[AclBinding]:
    """`count` ACLs as a shared cluster holds them; the bench principal may write `bench-*`."""
    acls = [AclBinding(ResourceType.TOPIC, "bench-", PatternType.PREFIXED, str(PRINCIPAL), "*", AclOperation.WRITE,
                       AclPermissionType.ALLOW),
            AclBinding(ResourceType.TOPIC, "*", PatternType.LITERAL, "User:monitor", "*", AclOperation.DESCRIBE,
                       AclPermissionType.ALLOW)]
    for i in range(count - len(acls)):
        team = f"User:team-{i % 97}"
        if i % 10 == 0:  # a tenth prefixed, of many lengths
            acls.append(AclBinding(ResourceType.TOPIC, f"team-{i}-", PatternType.PREFIXED, team, "*",
                                   AclOperation.READ, AclPermissionType.ALLOW))
        else:
            acls.append(AclBinding(ResourceType.TOPIC, f"orders-{i}", PatternType.LITERAL, team, "*",
                                   AclOperation.WRITE if i % 3 else AclOperation.READ, AclPermissionType.ALLOW))
    return acls


def produce_request(topics: list[str]) -> Any:
    batch = build_batch([Record(b"key", b"a small value of about 64 bytes, as many events are......")])
    return build(produce_v9.ProduceRequest, transactional_id=None, acks=1, timeout=timedelta(seconds=5),
                 topic_data=tuple(build(produce_v9.TopicProduceData, name=t, partition_data=(
                     build(produce_v9.PartitionProduceData, index=0, records=batch),)) for t in topics))


async def per_request_us(kafka: KafkaContext, request: Any, requests: int) -> float:
    call = Call(9, "bench", f"/{HOST}", response_type(PRODUCE, 9), PRINCIPAL)
    for _ in range(200):  # warm up
        await handle_produce(kafka, call, request)
    started = time.perf_counter()
    for _ in range(requests):
        response = await handle_produce(kafka, call, request)
    elapsed = time.perf_counter() - started
    assert all(p.error_code.value == 0 for t in response.responses for p in t.partition_responses), response
    return elapsed / requests * 1e6


def check_us(access: Access, topic: str, checks: int) -> float:
    started = time.perf_counter()
    for _ in range(checks):
        access.write_refusal(topic)
    return (time.perf_counter() - started) / checks * 1e6


async def run(acl_counts: list[int], requests: int, topic_counts: list[int]) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        broker = Broker(data_dir, BrokerSettings.parse({"log.flush.scheduler.interval.ms": "1000"}))
        await broker.start()
        try:
            kafka = KafkaContext(broker, broker.groups, "127.0.0.1", 9092, "bench")
            names = [f"bench-{i}" for i in range(max(topic_counts))]
            for topic in names:
                broker.create_topic(topic, 1, {})
            authorizer = broker.authorizer
            print(f"{'topics':>6} {'ACLs':>7} {'no authorizer us':>17} {'authorizer us':>14} {'ratio':>6} "
                  f"{'check us/topic':>15}")
            for topics in topic_counts:
                request = produce_request(names[:topics])
                for count in acl_counts:
                    off = (AuthorizerConfig(), AclIndex())
                    on = (AuthorizerConfig(enabled=True), AclIndex(team_acls(count)))
                    best = {"off": float("inf"), "on": float("inf")}
                    for round_ in range(ROUNDS):  # interleaved, each first in turn; the fastest of each
                        order = (("off", off), ("on", on))
                        for label, (config, index) in order if round_ % 2 else reversed(order):
                            authorizer.config, authorizer.index = config, index
                            best[label] = min(best[label], await per_request_us(kafka, request, requests // ROUNDS))
                    check = check_us(Access(authorizer, PRINCIPAL, HOST), names[0], requests)
                    print(f"{topics:>6} {count:>7} {best['off']:>17.1f} {best['on']:>14.1f} "
                          f"{best['on'] / best['off']:>6.3f} {check:>15.2f}")
        finally:
            await broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acls", default="1000,10000")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--topics", default="1,10")
    args = parser.parse_args()
    asyncio.run(run([int(n) for n in args.acls.split(",")], args.requests,
                    [int(n) for n in args.topics.split(",")]))


if __name__ == "__main__":
    main()
