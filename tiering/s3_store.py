"""An object store in an S3-compatible bucket (AWS, MinIO, moto's server), via aiobotocore.

Credentials come from the standard AWS chain (environment, shared files, instance role);
the endpoint from the URL or `AWS_ENDPOINT_URL`. Every upload carries a CRC-32C of its
bytes (`x-amz-checksum-crc32c`), which S3 checks before storing. Transient failures
(5xx, SlowDown, timeouts, dropped connections) are retried with exponential backoff and
full jitter; botocore's own retries are off so that each attempt is counted once."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
import botocore.exceptions as boto_errors
from aiobotocore.session import get_session
from botocore.config import Config
from crc32c import crc32c

from . import metrics
from .store import (
    ABORT_MULTIPART,
    COMPLETE_MULTIPART,
    CREATE_MULTIPART,
    DEFAULT_PART_BYTES,
    DELETE,
    GET,
    HEAD,
    LIST,
    PUT,
    UPLOAD_PART,
    AccessDeniedError,
    BucketNotFoundError,
    InvalidRangeError,
    NotFoundError,
    ObjectInfo,
    ObjectStore,
    ObjectStoreError,
    StoreConfigError,
    TransientStoreError,
    check_key,
    check_range,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MIN_PART_BYTES = 5 * 1024 * 1024  # S3's floor for every part but the last
MAX_KEY_BYTES = 1024  # S3's limit of a key, prefix included
MAX_DELETE_KEYS = 1000  # per DeleteObjects request
_TRANSIENT_CODES = {
    "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling", "ThrottlingException",
    "RequestLimitExceeded", "TooManyRequests", "503", "500", "502", "504",
}
_DENIED_CODES = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "403",
    "AllAccessDisabled", "AccountProblem",
}
_NETWORK_ERRORS = (
    boto_errors.ConnectionError, boto_errors.HTTPClientError, aiohttp.ClientError, asyncio.TimeoutError,
)
_CREDENTIAL_ERRORS = (
    boto_errors.NoCredentialsError, boto_errors.PartialCredentialsError, boto_errors.CredentialRetrievalError,
)


def crc32c_b64(data: bytes | memoryview) -> str:
    """The CRC-32C of `data` as S3's checksum headers spell it: base64 of 4 big-endian bytes."""
    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()


class S3Store(ObjectStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        part_bytes: int = DEFAULT_PART_BYTES,
        part_concurrency: int = 4,
        max_attempts: int = 6,
        backoff_base_s: float = 0.1,
        backoff_max_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        max_pool_connections: int = 32,
    ) -> None:
        super().__init__()
        if part_bytes < MIN_PART_BYTES:
            raise StoreConfigError(f"part size {part_bytes} is below S3's minimum of {MIN_PART_BYTES} bytes")
        if max_attempts < 1 or part_concurrency < 1:
            raise StoreConfigError("max_attempts and part_concurrency must be at least 1")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self.part_bytes = part_bytes
        self.part_concurrency = part_concurrency
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            max_pool_connections=max_pool_connections,
            retries={"total_max_attempts": 1, "mode": "standard"},  # we retry, and count, ourselves
        )
        self._exit_stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._client_lock = asyncio.Lock()

    @property
    def url(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def _full_key(self, key: str) -> str:
        full = f"{self.prefix}/{key}" if self.prefix else key
        check_key(key, MAX_KEY_BYTES - (len(full.encode()) - len(key.encode())))  # S3's limit counts the prefix
        return full

    async def _s3(self) -> Any:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    session = get_session()
                    kwargs: dict[str, Any] = {"config": self._config}
                    if self.endpoint_url:
                        kwargs["endpoint_url"] = self.endpoint_url
                    region = self.region or session.get_config_variable("region") or "us-east-1"
                    self._client = await self._exit_stack.enter_async_context(
                        session.create_client("s3", region_name=region, **kwargs)
                    )
        return self._client

    async def close(self) -> None:
        await self._exit_stack.aclose()
        self._client = None

    # -- retries and error mapping -----------------------------------------------------

    async def _call(self, operation: str, key: str, attempt_once: Callable[[Any], Awaitable[T]]) -> T:
        """Run one request with retries on transient failures; map errors to our types."""
        client = await self._s3()
        for attempt in range(1, self.max_attempts + 1):
            self.count(operation)
            try:
                return await attempt_once(client)
            except boto_errors.ClientError as exc:
                error = self._map_client_error(exc, key)
            except _CREDENTIAL_ERRORS as exc:
                raise AccessDeniedError(f"{self.url}: no usable AWS credentials ({exc})") from None
            except _NETWORK_ERRORS as exc:
                error = TransientStoreError(f"{self.url}: {operation} {key}: {type(exc).__name__}: {exc}")
            if not isinstance(error, TransientStoreError) or attempt == self.max_attempts:
                raise error
            metrics.STORE_RETRIES.labels(operation).inc()
            delay = random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))
            log.debug("%s %s failed (%s), retry %d in %.2fs", operation, key, error, attempt, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _map_client_error(self, exc: boto_errors.ClientError, key: str) -> ObjectStoreError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        text = f"{self.url}: {exc.operation_name} {key}: {code} {error.get('Message', '')}".rstrip()
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and exc.operation_name == "HeadBucket"):
            return BucketNotFoundError(f"bucket {self.bucket!r} does not exist ({self.url})")
        if code in ("NoSuchKey", "NotFound", "404") or status == 404:
            return NotFoundError(text)
        if code in _DENIED_CODES or status == 403:
            return AccessDeniedError(f"{text}: the store refuses our credentials or lacks a permission")
        if code == "InvalidRange" or status == 416:
            return InvalidRangeError(text)
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientStoreError(text)
        return ObjectStoreError(text)

    # -- writes ------------------------------------------------------------------------

    async def put(self, key: str, data: bytes) -> None:
        full = self._full_key(key)
        checksum = crc32c_b64(data)
        await self._call(PUT, full, lambda s3: s3.put_object(
            Bucket=self.bucket, Key=full, Body=data, ChecksumAlgorithm="CRC32C", ChecksumCRC32C=checksum,
        ))

    async def put_multipart(self, key: str, parts: AsyncIterable[bytes]) -> None:
        full = self._full_key(key)
        created = await self._call(CREATE_MULTIPART, full, lambda s3: s3.create_multipart_upload(
            Bucket=self.bucket, Key=full, ChecksumAlgorithm="CRC32C",
        ))
        upload_id = created["UploadId"]
        try:
            done = await self._upload_parts(full, upload_id, parts)
            if not done:  # S3 wants at least one part: an empty object is a plain put
                await self._abort(full, upload_id)
                await self.put(key, b"")
                return
            await self._call(COMPLETE_MULTIPART, full, lambda s3: s3.complete_multipart_upload(
                Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": done},
            ))
        except BaseException:
            await asyncio.shield(self._abort(full, upload_id))
            raise

    async def _upload_parts(self, full: str, upload_id: str, parts: AsyncIterable[bytes]) -> list[dict[str, Any]]:
        """Upload parts as they come, `part_concurrency` at a time; in part-number order."""
        slots = asyncio.Semaphore(self.part_concurrency)
        tasks: list[asyncio.Task[dict[str, Any]]] = []

        async def send(number: int, data: bytes) -> dict[str, Any]:
            try:
                checksum = crc32c_b64(data)
                response = await self._call(UPLOAD_PART, full, lambda s3: s3.upload_part(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=data,
                    ChecksumAlgorithm="CRC32C", ChecksumCRC32C=checksum,
                ))
                return {"PartNumber": number, "ETag": response["ETag"], "ChecksumCRC32C": checksum}
            finally:
                slots.release()

        try:
            number = 0
            async for data in parts:
                await slots.acquire()
                failed = [t for t in tasks if t.done() and t.exception() is not None]
                if failed:
                    slots.release()
                    raise failed[0].exception()  # type: ignore[misc]
                number += 1
                tasks.append(asyncio.create_task(send(number, data)))
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _abort(self, full: str, upload_id: str) -> None:
        try:
            await self._call(ABORT_MULTIPART, full, lambda s3: s3.abort_multipart_upload(
                Bucket=self.bucket, Key=full, UploadId=upload_id,
            ))
        except ObjectStoreError as exc:  # the upload's parts expire by the bucket's lifecycle rule
            log.warning("could not abort multipart upload of %s: %s", full, exc)

    # -- reads -------------------------------------------------------------------------

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        full = self._full_key(key)
        check_range(key, start, end)
        if end is not None and end == start:
            return b""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"

        async def attempt(s3: Any) -> bytes:
            response = await s3.get_object(**kwargs)
            async with response["Body"] as body:
                return await body.read()

        return await self._call(GET, full, attempt)

    async def head(self, key: str) -> ObjectInfo:
        full = self._full_key(key)
        response = await self._call(HEAD, full, lambda s3: s3.head_object(Bucket=self.bucket, Key=full))
        return ObjectInfo(key, response["ContentLength"], response["LastModified"].timestamp())

    async def list(self, prefix: str) -> list[ObjectInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        found: list[ObjectInfo] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call(LIST, full, lambda s3: s3.list_objects_v2(**kwargs))  # noqa: B023 - awaited here
            for item in page.get("Contents", ()):
                found.append(ObjectInfo(item["Key"][strip:], item["Size"], item["LastModified"].timestamp()))
            if not page.get("IsTruncated"):
                return found
            token = page["NextContinuationToken"]

    # -- deletes -----------------------------------------------------------------------

    async def delete(self, keys: Sequence[str]) -> None:
        full_keys = [self._full_key(key) for key in keys]
        for i in range(0, len(full_keys), MAX_DELETE_KEYS):
            chunk = [{"Key": k} for k in full_keys[i : i + MAX_DELETE_KEYS]]
            request = {"Bucket": self.bucket, "Delete": {"Objects": chunk, "Quiet": True}}
            response = await self._call(DELETE, chunk[0]["Key"],
                                        lambda s3: s3.delete_objects(**request))  # noqa: B023 - awaited here
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise ObjectStoreError(
                    f"{self.url}: could not delete {len(errors)} objects, "
                    f"first {first.get('Key')}: {first.get('Code')} {first.get('Message', '')}"
                )

    async def check(self) -> None:
        """A list under our prefix (HeadBucket would need ListBucket on the whole bucket, which
        a least-privilege role lacks), then a probe object written and deleted (a read-only
        key fails here)."""
        await self.list("_probe/")
        probe = f"_probe/{uuid.uuid4().hex}"
        await self.put(probe, b"tierlog start-up probe")
        await self.delete([probe])
