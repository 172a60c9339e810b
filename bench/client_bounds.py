"""What the Kafka listener's client bounds cost: produce throughput with the bounds on
(the defaults) and off, and resident memory per idle connection, in one run.

    python bench/client_bounds.py [--mib 128] [--rounds 3] [--connections 1000] [--baseline-tree DIR]

"Off" is the same code with queued.max.request.bytes=-1 and max.connections and the read
deadline out of reach. --baseline-tree runs a checkout of another commit as a third
broker (`git archive <commit> | tar -x -C DIR`), e.g. the one before the bounds. One
confluent-kafka producer (bench/kafka.py's: 1 KiB messages, linger.ms=5, 1 MiB batches)
sends --mib MiB with acks=1, then with acks=all, the brokers taking turns (in a rotating order);
figures are medians (the best run in brackets: on a shared machine the
runs fall in a fast and a slow mode, whatever the broker), with the broker's CPU seconds
per GB. Idle connections: --connections sockets opened and left idle (each
after one ApiVersions round trip), the broker's VmRSS read from /proc before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.kafka import MESSAGE_BYTES, Broker, produce, wait_for_port  # noqa: E402
from testkit.ports import free_port  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BOUNDS_OFF = ("queued.max.request.bytes=-1", "max.connections=1000000",
              "socket.request.read.timeout.ms=2000000000")
API_VERSIONS_V0 = struct.pack(">ihhih", 10, 18, 0, 1, -1)  # size, key, version, correlation id, null client


def start(tree: str, root: str, name: str, conf: tuple[str, ...]) -> Broker:
    data_dir = os.path.join(root, f"{name}-data")
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(f"{data_dir}-objects", ignore_errors=True)
    port = free_port()
    command = [sys.executable, "-m", "api.cli", "serve", "--data-dir", data_dir,
               "--object-store", f"file://{data_dir}-objects", "--kafka-listen", f"127.0.0.1:{port}",
               "--grpc-listen", f"127.0.0.1:{free_port()}", "--http-listen", f"127.0.0.1:{free_port()}",
               "--conf", "message.max.bytes=8388608", *(arg for c in conf for arg in ("--conf", c))]
    process = subprocess.Popen(command, cwd=tree, env={**os.environ, "PYTHONPATH": tree},
                               stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, f"{name}.log"), "wb"))
    wait_for_port(port, process)
    return Broker(name, process, port, data_dir)


def resident_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1]) / 1024


def idle_connection_kib(broker: Broker, count: int) -> float:
    """Resident memory the broker gains per connection left idle after one request."""
    time.sleep(1)
    before = resident_mib(broker.process.pid)
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
        sock.sendall(API_VERSIONS_V0)
        (size,) = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))
        sock.recv(size, socket.MSG_WAITALL)
        sockets.append(sock)
    time.sleep(1)
    grown = resident_mib(broker.process.pid) - before
    for sock in sockets:
        sock.close()
    return grown * 1024 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=128, help="MiB of messages per produce run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=1000, help="idle connections for the memory figure")
    parser.add_argument("--baseline-tree", help="a checkout of another commit, run as a third broker")
    args = parser.parse_args()
    count = args.mib * 1024 * 1024 // MESSAGE_BYTES
    setups = [("bounds on", HERE, ()), ("bounds off", HERE, BOUNDS_OFF)]
    if args.baseline_tree:
        setups.append(("baseline tree", os.path.abspath(args.baseline_tree), ()))
    seconds: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}  # the broker's CPU seconds per run
    idle: dict[str, float] = {}
    root = tempfile.mkdtemp(prefix="bench-bounds-", dir=".")
    try:
        for round_number in range(args.rounds):
            # Each round in another order, and the disk's writeback of the last run done before
            # the next starts, so that no broker pays for another's bytes.
            for name, tree, conf in setups[round_number % len(setups):] + setups[:round_number % len(setups)]:
                broker = start(tree, root, name.replace(" ", "-"), conf)
                try:
                    if round_number == 0:
                        idle[name] = idle_connection_kib(broker, args.connections)
                    for acks in ("1", "all"):
                        cpu_before = broker.cpu_seconds()
                        seconds.setdefault((name, acks), []).append(
                            produce(broker, f"bench-{acks}-{round_number}", count, acks))
                        cpu.setdefault((name, acks), []).append(broker.cpu_seconds() - cpu_before)
                finally:
                    broker.stop()
                    shutil.rmtree(broker.data_dir or "", ignore_errors=True)
                    os.sync()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = count * MESSAGE_BYTES
    print(f"{args.mib} MiB of 1 KiB messages, median of {args.rounds} rounds; idle: {args.connections} connections")
    print(f"{'broker':<14} {'acks=1 MB/s':>18} {'acks=all MB/s':>18} {'broker CPU-s/GB (1, all)':>25} "
          f"{'KiB per idle connection':>24}")
    for name, _, _ in setups:
        figures = []
        for acks in ("1", "all"):
            rates = [total / s / 1e6 for s in seconds[(name, acks)]]
            figures.append(f"{statistics.median(rates):>8.1f} ({max(rates):>6.1f})")
        per_gb = [statistics.median(cpu[(name, acks)]) / (total / 1e9) for acks in ("1", "all")]
        print(f"{name:<14} {figures[0]:>18} {figures[1]:>18} {per_gb[0]:>12.2f} {per_gb[1]:>12.2f} "
              f"{idle[name]:>24.1f}")
    for acks in ("1", "all"):
        runs = {name: [round(total / s / 1e6, 1) for s in seconds[(name, acks)]] for name, _, _ in setups}
        print(f"acks={acks} runs (MB/s): {runs}")


if __name__ == "__main__":
    main()
