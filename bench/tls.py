"""Kafka throughput over SSL against PLAINTEXT: one `tierlog serve` with both listeners,
confluent-kafka producing and consuming through each in turn, in one run.

    python bench/tls.py [--mib 256] [--rounds 3] [--dir DIR]

The loads are bench/kafka.py's (1 KiB messages, acks=1, one partition; then a consumer
reading the topic back from the local tier). Certificates: a fresh trustme CA and an ECDSA
P-256 server certificate; TLSv1.3 with OpenSSL's default suite (AES-256-GCM). Each figure
is the median of --rounds runs; the broker's and the client's CPU seconds per GB say who
pays for the encryption.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import trustme  # noqa: E402

from bench.kafka import MESSAGE_BYTES, Broker, Samples, consume, produce, wait_for_port  # noqa: E402
from testkit.ports import free_port  # noqa: E402


def start(root: str) -> tuple[Broker, Broker]:
    """One tierlog process; a Broker view of each listener (PLAINTEXT, SSL)."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    keystore, truststore = Path(root, "server.pem"), Path(root, "ca.pem")
    keystore.write_bytes(leaf.private_key_pem.bytes() + b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(str(truststore))
    plain, tls = free_port(), free_port()
    command = [sys.executable, "-m", "api.cli", "serve", "--data-dir", os.path.join(root, "data"),
               "--object-store", f"file://{os.path.join(root, 'objects')}", "--grpc-listen", f"127.0.0.1:{free_port()}",
               "--http-listen", f"127.0.0.1:{free_port()}", "--conf", "message.max.bytes=8388608",
               "--conf", f"listeners=PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{tls}",
               "--conf", f"ssl.keystore.location={keystore}"]
    process = subprocess.Popen(command, cwd=os.path.join(os.path.dirname(__file__), ".."),
                               stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, "tierlog.log"), "wb"))
    wait_for_port(plain, process)
    wait_for_port(tls, process)
    return (Broker("PLAINTEXT", process, plain),
            Broker("SSL", process, tls, client={"security.protocol": "SSL", "ssl.ca.location": str(truststore)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="MiB of messages per produce run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--dir", default=None, help="folder on the disk under test (default: a temp folder in .)")
    args = parser.parse_args()
    # Absolute: the server runs in the repository, whatever the folder this runs from.
    root = os.path.abspath(args.dir or tempfile.mkdtemp(prefix="tierlog-tls-bench-", dir="."))
    os.makedirs(root, exist_ok=True)
    count = args.mib * 1024 * 1024 // MESSAGE_BYTES
    payload = count * MESSAGE_BYTES
    samples = Samples()
    plain, tls = start(root)
    try:
        for i in range(args.rounds):  # alternating, so drift on a shared machine hits both alike
            for listener in (plain, tls):
                topic = f"{listener.name.lower()}-{i}"
                samples.time(f"{listener.name} produce", lambda: produce(listener, topic, count, "1"), listener)
                samples.time(f"{listener.name} consume", lambda: consume(listener, topic, count), listener)
    finally:
        plain.stop()
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print("| load | PLAINTEXT MB/s | SSL MB/s | SSL / PLAINTEXT | CPU-s per GB, PLAINTEXT: broker / client "
          "| CPU-s per GB, SSL: broker / client |")
    print("| --- | --- | --- | --- | --- | --- |")
    for load in ("produce", "consume"):
        ours, theirs = samples.mbps(f"PLAINTEXT {load}", payload), samples.mbps(f"SSL {load}", payload)
        print(f"| {load} (acks=1, 1 KiB messages) | {ours:.0f} | {theirs:.0f} | **{theirs / ours:.2f}** | "
              f"{samples.cpu_per_gb(f'PLAINTEXT {load}', payload)} | {samples.cpu_per_gb(f'SSL {load}', payload)} |")


if __name__ == "__main__":
    main()
