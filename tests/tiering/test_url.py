"""Choosing a store by URL, and URLs that are refused before anything opens."""

from __future__ import annotations

import pytest

from tiering.local_store import LocalFolderStore
from tiering.s3_store import S3Store
from tiering.store import StoreConfigError
from tiering.url import open_store


def test_a_file_url_opens_a_local_folder(tmp_path) -> None:
    store = open_store(f"file://{tmp_path}/bucket")
    assert isinstance(store, LocalFolderStore)
    assert store.root == f"{tmp_path}/bucket"
    assert store.url == f"file://{tmp_path}/bucket"


def test_an_s3_url_opens_a_bucket_with_its_prefix_and_options() -> None:
    store = open_store("s3://my-bucket/tiered/prod/?endpoint_url=http://127.0.0.1:9000&part_bytes=16777216&region=eu-west-1")
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.endpoint_url, store.region) == (
        "my-bucket", "tiered/prod", "http://127.0.0.1:9000", "eu-west-1")
    assert store.part_bytes == 16 * 1024 * 1024
    assert open_store("s3://my-bucket").prefix == ""


@pytest.mark.parametrize("url, problem", [
    ("s3://B/x", "not a valid bucket name"),
    ("s3://ab/x", "not a valid bucket name"),
    ("s3://bucket/x?colour=blue", "unknown option 'colour'"),
    ("s3://bucket/x?part_bytes=lots", "part_bytes='lots' is not a number"),
    ("s3://bucket/x?part_bytes=1024", "below S3's minimum"),
    ("file://relative/path", "file:///absolute/path"),
    ("file:///tmp/x?sync=no", "take no options"),
    ("gs://bucket/x", "use file:///path or s3://bucket/prefix"),
    ("/just/a/path", "use file:///path or s3://bucket/prefix"),
])
def test_bad_urls_are_refused_with_a_reason(url: str, problem: str) -> None:
    with pytest.raises(StoreConfigError, match=problem.replace("?", r"\?")):
        open_store(url)
