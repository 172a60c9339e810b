"""A small JSON document of the cluster's (users' credentials, ACLs) kept in the data
folder and, with an object store, in the bucket, so a broker restored from the bucket
alone gets it back.

With a bucket, the bucket's copy is the document: it is read at open (the local file is
only a copy, used without a bucket), and a change is written to the bucket first, then
to the local file. A change the bucket refused changes nothing anywhere."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from hotlog.durable import write_atomically
from tiering.store import NotFoundError, ObjectStore

REMOTE_PREFIX = "_cluster/"  # beside the topics' prefixes; the orphan cleaner never lists it


class DocumentError(Exception):
    """The document could not be read or written (a damaged file, a failing store)."""


class KeptDocument:
    """Event loop only; one writer at a time (callers hold `lock` around read-modify-write)."""

    def __init__(self, data_dir: str, name: str) -> None:
        self.name = name
        self.path = os.path.join(data_dir, f"{name}.json")
        self.store: ObjectStore | None = None
        self.lock = asyncio.Lock()

    @property
    def remote_key(self) -> str:
        return f"{REMOTE_PREFIX}{self.name}.json"

    def keep_in(self, store: ObjectStore) -> None:
        self.store = store

    async def load(self) -> Any:
        """The document, or None if it was never written. With a bucket that lacks it but a
        local copy (the bucket was attached later), the local copy is uploaded."""
        local = await asyncio.to_thread(self._read_local)
        if self.store is None:
            return local
        try:
            data = await self.store.get(self.remote_key)
        except NotFoundError:
            if local is not None:
                await self.save(local)
            return local
        except Exception as exc:
            raise DocumentError(f"cannot read {self.remote_key} from {self.store.url}: {exc}") from exc
        document = _decode(data, f"{self.store.url} {self.remote_key}")
        if document != local:  # a restore, or a change whose local write did not happen
            await asyncio.to_thread(write_atomically, self.path, data)
        return document

    async def save(self, document: Any) -> None:
        data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        if self.store is not None:
            try:
                await self.store.put(self.remote_key, data)
            except Exception as exc:
                raise DocumentError(f"cannot write {self.remote_key} to {self.store.url}: {exc}") from exc
        try:
            await asyncio.to_thread(write_atomically, self.path, data)
        except OSError as exc:
            raise DocumentError(f"cannot write {self.path}: {exc}") from exc

    def _read_local(self) -> Any:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DocumentError(f"cannot read {self.path}: {exc}") from exc
        return _decode(data, self.path)


def _decode(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise DocumentError(f"{where} is damaged: {exc}") from exc
