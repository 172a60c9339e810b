"""Fixtures every test package may use: moto's S3 server over HTTP (one per session) and a
fresh bucket per test. kafka-python is imported once here with its import-time
DeprecationWarnings (legacy importlib.resources calls, nothing of ours) silenced, so test
output shows only our warnings."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import pytest

from testkit.moto_server import FAKE_CREDENTIALS, MotoServer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401


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
