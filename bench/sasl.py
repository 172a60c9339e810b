"""Connection set-up with SASL against PLAINTEXT: what one authentication costs the broker
(in process), and a new confluent-kafka client's time to its first metadata over each
mechanism (one `tierlog serve`, one run, alternating).

    python bench/sasl.py [--connections 60] [--iterations 8192]

In process: the broker's side of a SCRAM exchange (two messages, HMACs over the stored
keys: the PBKDF2 is the client's) and of a PLAIN check (one PBKDF2 of the password, on a
worker thread), against the client's PBKDF2 for the same credential. End to end: each
connection is a new Producer asking for metadata (ApiVersions, the SASL requests,
Metadata), closed after; medians and 90th percentiles, and the ratio to PLAINTEXT.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import scramp  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from bench.kafka import wait_for_port  # noqa: E402
from broker.security.scram import MECHANISMS, Credential, ScramExchange  # noqa: E402
from testkit.ports import free_port  # noqa: E402

PASSWORD = "bench-secret"


def per_call_ms(run: Callable[[], object], repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        run()
    return (time.perf_counter() - started) * 1000 / repeat


def server_side(iterations: int, repeat: int = 50) -> None:
    print(f"| mechanism ({iterations} iterations) | broker, per authentication | client's PBKDF2 |")
    print("| --- | --- | --- |")
    for mechanism in MECHANISMS.values():
        credential = Credential.from_password(mechanism, PASSWORD, iterations)

        def scram_exchange() -> None:
            client = scramp.ScramClient([mechanism.name], "bench", PASSWORD)
            client_first = client.get_client_first().encode()
            exchange = ScramExchange(mechanism, lambda _: credential)
            client.set_server_first(exchange.first(client_first).decode())
            client_final = client.get_client_final().encode()  # the client's PBKDF2 is here
            started = time.perf_counter()
            exchange.final(client_final)
            timings.append(time.perf_counter() - started)

        timings: list[float] = []
        client_ms = per_call_ms(lambda: mechanism.salted_password(PASSWORD.encode(), credential.salt, iterations),
                                repeat)
        first_ms = per_call_ms(lambda: ScramExchange(mechanism, lambda _: credential).first(
            scramp.ScramClient([mechanism.name], "bench", PASSWORD).get_client_first().encode()), repeat)
        for _ in range(repeat):
            scram_exchange()
        broker_ms = first_ms + statistics.median(timings) * 1000
        plain_ms = per_call_ms(lambda: credential.matches(PASSWORD.encode()), repeat)
        print(f"| {mechanism.name} | {broker_ms:.2f} ms | {client_ms:.2f} ms |")
        print(f"| PLAIN on a {mechanism.name} credential | {plain_ms:.2f} ms (off the event loop) | none |")


def start(root: str, iterations: int) -> tuple[subprocess.Popen[bytes], int, int]:
    data, objects = os.path.join(root, "data"), f"file://{os.path.abspath(os.path.join(root, 'objects'))}"
    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
        subprocess.run([sys.executable, "-m", "api.cli", "users", "add", "bench", "--mechanism", mechanism,
                        "--iterations", str(iterations), "--data-dir", data, "--object-store", objects],
                       input=PASSWORD.encode(), check=True, capture_output=True)
    plain, sasl = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--data-dir", data, "--object-store", objects,
         "--grpc-listen", f"127.0.0.1:{free_port()}",
         "--http-listen", f"127.0.0.1:{free_port()}",
         "--conf", f"listeners=PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}"],
        cwd=os.path.join(os.path.dirname(__file__), ".."), stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(root, "tierlog.log"), "wb"))
    wait_for_port(plain, process)
    wait_for_port(sasl, process)
    return process, plain, sasl


def first_metadata_ms(config: dict[str, str]) -> float:
    started = time.perf_counter()
    producer = Producer(config)
    producer.list_topics(timeout=10)
    elapsed = (time.perf_counter() - started) * 1000
    producer.flush(0)
    return elapsed


def end_to_end(connections: int, iterations: int) -> None:
    root = tempfile.mkdtemp(prefix="tierlog-sasl-bench-", dir=".")
    process, plain, sasl = start(root, iterations)
    configs = {"PLAINTEXT": {"bootstrap.servers": f"127.0.0.1:{plain}"}}
    for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        configs[mechanism] = {"bootstrap.servers": f"127.0.0.1:{sasl}", "security.protocol": "SASL_PLAINTEXT",
                              "sasl.mechanism": mechanism, "sasl.username": "bench", "sasl.password": PASSWORD}
    samples: dict[str, list[float]] = {name: [] for name in configs}
    try:
        for _ in range(connections):  # alternating, so drift hits every mechanism alike
            for name, config in configs.items():
                samples[name].append(first_metadata_ms(config))
    finally:
        process.terminate()
        process.wait(15)
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(samples["PLAINTEXT"])
    print(f"\n| new client to first metadata ({connections} each, {iterations} iterations) | median | p90 | "
          f"median / PLAINTEXT |")
    print("| --- | --- | --- | --- |")
    for name, times in samples.items():
        times.sort()
        median = statistics.median(times)
        print(f"| {name} | {median:.1f} ms | {times[int(len(times) * 0.9)]:.1f} ms | **{median / base:.2f}** |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=60, help="new clients per mechanism")
    parser.add_argument("--iterations", type=int, default=8192, help="the credentials' PBKDF2 iterations")
    args = parser.parse_args()
    server_side(args.iterations)
    end_to_end(args.connections, args.iterations)


if __name__ == "__main__":
    main()
