"""A `tierlog serve` process for the bench: its own data folder, free loopback ports, and
broker settings that make segments reach the object store within the run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class ServerError(Exception):
    """The server did not start, or died during the run."""


@dataclass(frozen=True)
class LatencyModel:
    """S3 as seen from EC2: a time to first byte, then a per-connection rate."""

    first_byte_ms: float
    mb_per_s: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchServer:
    """Starts `tierlog serve` on entry, stops it (SIGTERM) and removes its folders on exit."""

    def __init__(self, object_store: str | None, conf: dict[str, str], latency: LatencyModel | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.folder = tempfile.mkdtemp(prefix="tierlog-bench-")
        self.object_store = object_store or f"file://{os.path.join(self.folder, 'objects')}"
        self.kafka_port, self.grpc_port, self.http_port = free_port(), free_port(), free_port()
        self.conf = conf
        self.latency = latency
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.folder, "serve.log")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/metrics"

    def command(self) -> list[str]:
        serve_args = [
            "serve", "--data-dir", os.path.join(self.folder, "data"), "--object-store", self.object_store,
            "--kafka-listen", self.bootstrap, "--grpc-listen", f"127.0.0.1:{self.grpc_port}",
            "--http-listen", f"127.0.0.1:{self.http_port}",
        ]
        for name, value in self.conf.items():
            serve_args += ["--conf", f"{name}={value}"]
        if self.latency is None:
            return [sys.executable, "-m", "api.cli", *serve_args]
        return [sys.executable, "-m", "api.bench.modeled_serve", "--first-byte-ms", str(self.latency.first_byte_ms),
                "--mb-per-s", str(self.latency.mb_per_s), *serve_args]

    def __enter__(self) -> BenchServer:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                message = f"tierlog serve exited with {self.process.returncode}: {self.log_tail()}"
                self.__exit__()
                raise ServerError(message)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1):
                    socket.create_connection(("127.0.0.1", self.kafka_port), timeout=1).close()
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise ServerError(f"tierlog serve did not answer within {START_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ServerError(f"tierlog serve exited with {self.process.returncode}: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return " | ".join(f.read().splitlines()[-lines:])
        except OSError:
            return ""

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
