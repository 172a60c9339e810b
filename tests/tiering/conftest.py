"""Fixtures of the tiering tests: a store factory parametrized over the local-folder and
S3 backends (moto's server and a fresh bucket come from tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from testkit.moto_server import MotoServer
from tiering.local_store import LocalFolderStore
from tiering.s3_store import S3Store
from tiering.store import ObjectStore

S3_PART_BYTES = 5 * 1024 * 1024  # S3's smallest part: multipart tests stay small on moto


StoreFactory = Callable[[], ObjectStore]


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path) -> StoreFactory:
    """Makes stores over one folder or one bucket (a new store per event loop: aiobotocore
    clients belong to the loop that made them)."""
    if request.param == "local":
        root = str(tmp_path / "bucket")
        return lambda: LocalFolderStore(root)
    moto: MotoServer = request.getfixturevalue("moto")
    name = moto.new_bucket()
    prefix = f"p{uuid.uuid4().hex[:6]}"
    return lambda: S3Store(name, prefix, endpoint_url=moto.endpoint_url, part_bytes=S3_PART_BYTES)
