"""`tierlog serve` in a subprocess on free loopback ports, as the API tests talk to it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from testkit.ports import free_port

STARTUP_SECONDS = 20
STOP_SECONDS = 15


def tierlog_command() -> list[str]:
    """The installed `tierlog` script next to this Python (what a user runs)."""
    script = shutil.which("tierlog", path=os.path.dirname(sys.executable)) or shutil.which("tierlog")
    assert script, "the tierlog command is not installed: run `pip install -e .`"
    return [script]



def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class TierlogServer:
    def __init__(self, data_dir: str, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.kafka_port = free_port()
        self.objects_dir = f"{data_dir}-objects"
        self.log_path = f"{data_dir}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> TierlogServer:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*tierlog_command(), "serve", "--data-dir", self.data_dir,
                 "--grpc-listen", self.grpc_address, "--http-listen", f"127.0.0.1:{self.http_port}",
                 "--kafka-listen", f"127.0.0.1:{self.kafka_port}", "--object-store", f"file://{self.objects_dir}",
                 *self.extra],
                stdout=log, stderr=log,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"tierlog serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if http_get(f"{self.http_url}/healthz", timeout=1)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.01)  # a refused connection costs nothing; every server start waits here
        self.process.kill()
        raise AssertionError(f"tierlog serve did not become healthy in {STARTUP_SECONDS} s:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM, as an init system stops it; returns the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"tierlog serve ignored SIGTERM for {STOP_SECONDS} s:\n{self.log()}") from None

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()
