"""Fixtures of the tiering tests: moto's S3 server over HTTP (one per session), a fresh
bucket per test, and a store factory parametrized over the local-folder and S3 backends."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from testkit.moto_server import FAKE_CREDENTIALS, MotoServer
from tiering.local_store import LocalFolderStore
from tiering.s3_store import S3Store
from tiering.store import ObjectStore

S3_PART_BYTES = 5 * 1024 * 1024  # S3's smallest part: multipart tests stay small on moto


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    saved = {name: os.environ.get(name) for name in (*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL", "AWS_PROFILE")}
    os.environ.update(FAKE_CREDENTIALS)  # the standard credential chain finds these
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)
    try:
        with MotoServer() as server:
            yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def bucket(moto: MotoServer) -> str:
    return moto.new_bucket()


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
