"""moto's S3 server in a subprocess on a free loopback port: real HTTP for real clients.

Used by tests/ and bench/: `with MotoServer() as moto: moto.endpoint_url`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping

import boto3
from botocore.config import Config

from .ports import free_port

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}



class MotoServer:
    def __init__(self, env: Mapping[str, str] | None = None, start_timeout_s: float = 20.0) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **FAKE_CREDENTIALS, **(env or {})}
        self._start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=self._env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"moto's server did not start on port {self.port}") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self):  # noqa: ANN201 - a boto3 S3 client
        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id="testing", aws_secret_access_key="testing",
            region_name="us-east-1", config=Config(retries={"max_attempts": 1}),
        )

    def new_bucket(self) -> str:
        name = f"tierlog-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name
