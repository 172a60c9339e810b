"""Choose an object store by URL: `file:///path` or `s3://bucket/prefix`.

S3 options go in the query string: `s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000
&region=eu-west-1&part_bytes=16777216`. Without `endpoint_url`, botocore reads
`AWS_ENDPOINT_URL` (or talks to AWS)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .local_store import LocalFolderStore
from .s3_store import S3Store
from .store import ObjectStore, StoreConfigError

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_OPTIONS: dict[str, type] = {
    "endpoint_url": str, "region": str, "part_bytes": int, "part_concurrency": int, "max_attempts": int,
    "connect_timeout_s": float, "read_timeout_s": float, "max_pool_connections": int,
}


def open_store(url: str, **options: Any) -> ObjectStore:
    """An ObjectStore for `url`. Keyword options override the URL's query (S3) or set the
    part size (file). A URL that is not valid raises StoreConfigError and opens nothing."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise StoreConfigError(f"object store URL {url!r}: a folder is file:///absolute/path")
        if parts.query:
            raise StoreConfigError(f"object store URL {url!r}: file URLs take no options")
        return LocalFolderStore(unquote(parts.path), **options)
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise StoreConfigError(
                f"object store URL {url!r}: {bucket!r} is not a valid bucket name "
                "(3 to 63 lower-case letters, digits, '.' and '-')"
            )
        kwargs: dict[str, Any] = {}
        for name, raw in parse_qsl(parts.query, keep_blank_values=True):
            kind = _S3_OPTIONS.get(name)
            if kind is None:
                raise StoreConfigError(f"object store URL {url!r}: unknown option {name!r}")
            try:
                kwargs[name] = kind(raw)
            except ValueError:
                raise StoreConfigError(f"object store URL {url!r}: {name}={raw!r} is not a number") from None
        kwargs.update(options)
        return S3Store(bucket, unquote(parts.path).strip("/"), **kwargs)
    raise StoreConfigError(f"object store URL {url!r}: use file:///path or s3://bucket/prefix")
