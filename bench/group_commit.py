"""What an acks=all produce to N partitions waits for and costs in the log: in process, 8
records of 1 KB appended to each of N partition logs, then all N flushed at once
(`flush_async`, as the Produce handler waits), again and again; the wait's p50 and p99 and
the process's CPU (user + system, the worker threads' fsyncs included) per request.

    python bench/group_commit.py [--requests 200] [--rounds 3] [--baseline-tree DIR]

With --baseline-tree (a checkout of another commit: git archive C | tar -x -C DIR), each
round runs both trees, in turn first, each in a process of its own; figures are medians
over the rounds. The logs live in a temporary folder under the current one (the disk
under test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PARTITIONS = (1, 4, 16, 64)


async def measure(requests: int) -> dict[str, list[float]]:
    """Per partition count: p50 and p99 in ms, and CPU us per request (child process only)."""
    from hotlog.config import LogConfig
    from hotlog.log import PartitionLog
    from hotlog.records import Record, build_batch

    batch = build_batch([Record(None, os.urandom(1000)) for _ in range(8)])
    config = LogConfig.build({"flush.ms": 2**62}, {})
    figures: dict[str, list[float]] = {}
    folder = tempfile.mkdtemp(prefix="tierlog-group-commit-", dir=".")
    try:
        for count in PARTITIONS:
            logs = [PartitionLog.open(os.path.join(folder, f"p{count}-{i}"), "t", i, config, clean=True)
                    for i in range(count)]
            waits = []
            usage = resource.getrusage(resource.RUSAGE_SELF)
            for _ in range(requests):
                for plog in logs:
                    plog.append(batch)
                start = time.perf_counter()
                await asyncio.gather(*(plog.flush_async() for plog in logs))
                waits.append(time.perf_counter() - start)
            end = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (end.ru_utime - usage.ru_utime) + (end.ru_stime - usage.ru_stime)
            waits.sort()
            figures[str(count)] = [waits[len(waits) // 2] * 1e3, waits[int(len(waits) * 0.99)] * 1e3,
                                   cpu / requests * 1e6]
            for plog in logs:
                plog.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return figures


def run_tree(tree: str, requests: int) -> dict[str, list[float]]:
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--requests", str(requests)],
                          cwd=tree, env={**os.environ, "PYTHONPATH": tree}, capture_output=True, text=True,
                          check=True)
    figures: dict[str, list[float]] = json.loads(done.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per partition count")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-tree", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.requests))))
        return
    trees = {"this tree": os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")}
    if args.baseline_tree:
        trees["baseline tree"] = os.path.abspath(args.baseline_tree)
    runs: dict[str, list[dict[str, list[float]]]] = {name: [] for name in trees}
    names = list(trees)
    for i in range(args.rounds):
        for name in names[i % len(names):] + names[: i % len(names)]:
            runs[name].append(run_tree(trees[name], args.requests))
    print("| partitions | tree | p50 ms | p99 ms | CPU us per request |")
    print("| --- | --- | --- | --- | --- |")
    for count in PARTITIONS:
        for name in names:
            medians = [statistics.median(run[str(count)][k] for run in runs[name]) for k in range(3)]
            print(f"| {count} | {name} | {medians[0]:.2f} | {medians[1]:.2f} | {medians[2]:.0f} |")


if __name__ == "__main__":
    main()
