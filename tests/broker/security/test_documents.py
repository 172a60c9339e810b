"""The cluster's kept documents: local copy, bucket copy, restore, failures that change nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from broker.security.documents import DocumentError, KeptDocument
from broker.security.principal import ANONYMOUS, Principal
from tiering.local_store import LocalFolderStore
from tiering.wrappers import FaultInjectingStore


def test_principals_read_and_write_kafkas_form() -> None:
    assert Principal.parse("User:CN=a:b") == Principal("User", "CN=a:b")
    assert str(ANONYMOUS) == "User:ANONYMOUS"
    for bad in ("alice", ":alice", "User:"):
        with pytest.raises(ValueError):
            Principal.parse(bad)


def test_without_a_bucket_the_local_file_is_the_document(tmp_path: Path) -> None:
    async def scenario() -> None:
        document = KeptDocument(str(tmp_path), "acls")
        assert await document.load() is None
        await document.save({"acls": [1]})
        assert await KeptDocument(str(tmp_path), "acls").load() == {"acls": [1]}

    asyncio.run(scenario())


def test_a_folder_restored_from_the_bucket_gets_the_document_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalFolderStore(str(tmp_path / "bucket"))
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = KeptDocument(str(tmp_path / "a"), "users")
        first.keep_in(store)
        await first.save({"alice": 1})
        restored = KeptDocument(str(tmp_path / "b"), "users")  # an empty data folder
        restored.keep_in(store)
        assert await restored.load() == {"alice": 1}
        assert json.loads((tmp_path / "b" / "users.json").read_text()) == {"alice": 1}

    asyncio.run(scenario())


def test_a_local_copy_older_than_a_bucket_is_uploaded_and_a_refused_write_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        local = KeptDocument(str(tmp_path), "users")
        await local.save({"alice": 1})  # before the bucket was attached
        store = FaultInjectingStore(LocalFolderStore(str(tmp_path / "bucket")))
        document = KeptDocument(str(tmp_path), "users")
        document.keep_in(store)
        assert await document.load() == {"alice": 1}
        assert json.loads(await store.get(document.remote_key)) == {"alice": 1}
        store.fail_next(1, "put")
        with pytest.raises(DocumentError):
            await document.save({"alice": 2})
        assert await document.load() == {"alice": 1}
        assert json.loads((tmp_path / "users.json").read_text()) == {"alice": 1}

    asyncio.run(scenario())


def test_a_damaged_file_is_an_error_not_an_empty_document(tmp_path: Path) -> None:
    (tmp_path / "acls.json").write_text("{not json")
    with pytest.raises(DocumentError, match="damaged"):
        asyncio.run(KeptDocument(str(tmp_path), "acls").load())
