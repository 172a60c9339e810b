"""The README's first command, as a newcomer runs it: a fresh virtual environment (no
packages from this one), `pip install -e .`, then `tierlog serve` with no flags.

A plain venv rather than --system-site-packages, so a dependency missing from
pyproject.toml fails here; it takes about 20 s (pip resolving and installing every
dependency), which fits the API tests' budget."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .server import http_get

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PORTS = {"Kafka": 9092, "gRPC": 9093, "HTTP": 9644}
INSTALL_SECONDS = 600
STARTUP_SECONDS = 30


def _readme_command() -> tuple[str, str]:
    """The first shell block of the README: `<install> && <run>`."""
    block = re.search(r"```sh\n(.+?)\n```", (REPO / "README.md").read_text(), re.S)
    assert block, "README.md has no ```sh block"
    install, run = (part.strip() for part in block.group(1).split("&&"))
    return install, run


def test_readme_first_command_on_a_fresh_venv(tmp_path: Path) -> None:
    install, run = _readme_command()
    assert (install, run) == ("pip install -e .", "tierlog serve")
    for name, port in DEFAULT_PORTS.items():
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"the default {name} port {port} is taken; free it"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    installed = subprocess.run(install, shell=True, cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=INSTALL_SECONDS)
    assert installed.returncode == 0, installed.stderr[-3000:]

    workdir = tmp_path / "work"
    workdir.mkdir()
    server = subprocess.Popen(f"exec {run}", shell=True, cwd=workdir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if http_get(f"http://127.0.0.1:{DEFAULT_PORTS['HTTP']}/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        assert server.poll() is None, server.communicate()[1]
        with grpc.insecure_channel(f"127.0.0.1:{DEFAULT_PORTS['gRPC']}") as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert "clean shutdown" in stderr
    assert (workdir / "tierlog-data" / ".clean-shutdown").exists()
