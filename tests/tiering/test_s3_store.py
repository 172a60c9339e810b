"""The S3 backend over real HTTP: retries and their counts, timeouts, refusals, checksums,
the endpoint from the environment, and the start-up check."""

from __future__ import annotations

import asyncio
import os

import pytest
from prometheus_client import REGISTRY

from testkit.flaky_proxy import FlakyProxy
from testkit.moto_server import MotoServer
from tiering.manager import TieringManager
from tiering.s3_store import S3Store, crc32c_b64
from tiering.store import AccessDeniedError, BucketNotFoundError, NotFoundError, TransientStoreError
from tiering.url import open_store

from .support import open_logs


def retries(operation: str) -> float:
    return REGISTRY.get_sample_value("tierlog_object_store_retries_total", {"operation": operation}) or 0.0


def quick_store(bucket: str, endpoint_url: str, **options: object) -> S3Store:
    options = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, **options}
    return S3Store(bucket, "pre", endpoint_url=endpoint_url, **options)  # type: ignore[arg-type]


def test_slow_down_and_5xx_are_retried_with_each_attempt_counted(moto: MotoServer, bucket: str) -> None:
    async def scenario() -> None:
        async with FlakyProxy(moto.endpoint_url) as proxy:
            store = quick_store(bucket, proxy.endpoint_url)
            proxy.fail(1, 503, "SlowDown")
            proxy.fail(1, 500, "InternalError")
            before = retries("PUT")
            await store.put("a/b", b"payload")
            assert store.requests["PUT"] == 3
            assert retries("PUT") - before == 2
            assert await store.get("a/b") == b"payload"
            await store.close()

    asyncio.run(scenario())


def test_a_store_that_keeps_failing_raises_a_transient_error_after_the_last_attempt(
        moto: MotoServer, bucket: str) -> None:
    async def scenario() -> None:
        async with FlakyProxy(moto.endpoint_url) as proxy:
            store = quick_store(bucket, proxy.endpoint_url, max_attempts=3)
            proxy.fail(10, 503, "ServiceUnavailable")
            with pytest.raises(TransientStoreError, match="ServiceUnavailable"):
                await store.put("a/b", b"payload")
            assert store.requests["PUT"] == 3 and len(proxy.seen) == 3
            await store.close()

    asyncio.run(scenario())


def test_a_stalled_request_times_out_and_is_retried(moto: MotoServer, bucket: str) -> None:
    async def scenario() -> None:
        async with FlakyProxy(moto.endpoint_url) as proxy:
            store = quick_store(bucket, proxy.endpoint_url, read_timeout_s=0.3)
            await store.put("a/b", b"payload")
            proxy.stall(1, 1.0)
            began = asyncio.get_running_loop().time()
            assert await store.get("a/b") == b"payload"
            assert asyncio.get_running_loop().time() - began < 0.9
            assert store.requests["GET"] == 2
            await store.close()

    asyncio.run(scenario())


def test_refusals_and_missing_objects_are_not_retried(moto: MotoServer, bucket: str) -> None:
    async def scenario() -> None:
        async with FlakyProxy(moto.endpoint_url) as proxy:
            store = quick_store(bucket, proxy.endpoint_url)
            proxy.fail(1, 403, "AccessDenied")
            with pytest.raises(AccessDeniedError, match="refuses our credentials"):
                await store.put("a/b", b"x")
            with pytest.raises(NotFoundError):
                await store.get("a/missing")
            assert store.requests["PUT"] == 1 and store.requests["GET"] == 1
            await store.close()

    asyncio.run(scenario())


def test_every_upload_carries_a_crc32c_the_bucket_keeps(moto: MotoServer, bucket: str) -> None:
    data = os.urandom(5000)

    async def scenario() -> None:
        store = S3Store(bucket, "pre", endpoint_url=moto.endpoint_url)
        await store.put("c/one", data)
        await store.close()

    asyncio.run(scenario())
    head = moto.client().head_object(Bucket=bucket, Key="pre/c/one", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32C"] == crc32c_b64(data)


def test_the_endpoint_comes_from_aws_endpoint_url(moto: MotoServer, bucket: str, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint_url)

    async def scenario() -> None:
        store = open_store(f"s3://{bucket}/env/prefix")
        await store.check()
        await store.put("k", b"v")
        await store.close()

    asyncio.run(scenario())
    assert moto.client().get_object(Bucket=bucket, Key="env/prefix/k")["Body"].read() == b"v"


def test_a_missing_bucket_is_a_clear_error_at_start_up(moto: MotoServer, tmp_path) -> None:
    logs = open_logs(tmp_path / "data", create=False)

    async def scenario() -> None:
        store = S3Store("no-such-bucket-here", endpoint_url=moto.endpoint_url)
        manager = TieringManager(logs, store)
        with pytest.raises(BucketNotFoundError, match="'no-such-bucket-here' does not exist"):
            await manager.open()
        assert store.requests["LIST"] == 1, "not retried"
        await store.close()

    asyncio.run(scenario())
    assert logs.topics == {}


def test_credentials_the_store_refuses_are_a_clear_error_at_start_up(tmp_path) -> None:
    logs = open_logs(tmp_path / "data", create=False)
    with MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as strict:

        async def scenario() -> None:
            store = S3Store("some-bucket", endpoint_url=strict.endpoint_url)
            with pytest.raises(AccessDeniedError, match="refuses our credentials"):
                await TieringManager(logs, store).check_store()
            await store.close()

        asyncio.run(scenario())


def test_no_credentials_at_all_is_a_clear_error(moto: MotoServer, bucket: str, monkeypatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    async def scenario() -> None:
        store = S3Store(bucket, endpoint_url=moto.endpoint_url)
        with pytest.raises(AccessDeniedError, match="no usable AWS credentials"):
            await store.check()
        await store.close()

    asyncio.run(scenario())

