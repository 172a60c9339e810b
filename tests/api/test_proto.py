"""The committed stubs in api/proto are what grpcio-tools makes of tierlog.proto today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GENERATED = ("tierlog_pb2.py", "tierlog_pb2.pyi", "tierlog_pb2_grpc.py")


def test_generated_stubs_match_the_proto(tmp_path: Path) -> None:
    # The command in api/proto/__init__.py, writing elsewhere.
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", "api/proto/tierlog.proto"],
                   cwd=REPO, check=True, timeout=60)
    for name in GENERATED:
        fresh = (tmp_path / "api" / "proto" / name).read_text()
        assert fresh == (REPO / "api" / "proto" / name).read_text(), f"api/proto/{name} is stale: regenerate it"


def test_the_stubs_import_as_a_package_without_grpc_tools() -> None:
    code = ("import sys; sys.modules['grpc_tools'] = None; "
            "from api.proto import tierlog_pb2, tierlog_pb2_grpc; "
            "assert tierlog_pb2_grpc.TierlogStub and tierlog_pb2.DESCRIPTOR.package == 'tierlog.v1'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
