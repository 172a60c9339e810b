"""What every object store promises, run against the local folder and moto's S3 server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from tiering.store import InvalidKeyError, InvalidRangeError, NotFoundError, ObjectStore

from .conftest import StoreFactory


def run(make_store: StoreFactory, scenario) -> object:
    async def main() -> object:
        store = make_store()
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


async def parts_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_put_then_get_whole_and_ranges(make_store: StoreFactory) -> None:
    data = os.urandom(10_000)

    async def scenario(store: ObjectStore) -> None:
        await store.put("t-1/0/a.log", data)
        assert await store.get("t-1/0/a.log") == data
        assert await store.get("t-1/0/a.log", 100, 4196) == data[100:4196]
        assert await store.get("t-1/0/a.log", 9_990) == data[9_990:]
        assert await store.get("t-1/0/a.log", 9_000, 20_000) == data[9_000:], "a range past the end stops at it"
        assert await store.get("t-1/0/a.log", 5, 5) == b""
        with pytest.raises(InvalidRangeError):
            await store.get("t-1/0/a.log", 10_000)
        info = await store.head("t-1/0/a.log")
        assert (info.key, info.size) == ("t-1/0/a.log", 10_000)
        assert info.last_modified > 1_600_000_000

    run(make_store, scenario)


def test_missing_objects_raise_not_found_and_deleting_them_is_fine(make_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        with pytest.raises(NotFoundError):
            await store.get("nope/x")
        with pytest.raises(NotFoundError):
            await store.head("nope/x")
        await store.delete(["nope/x", "nope/y"])
        assert await store.list("nope/") == []

    run(make_store, scenario)


def test_put_replaces_and_list_is_by_prefix_in_key_order(make_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        for key in ["a/1/b", "a/1/a", "a/10/x", "a/2/meta/z.json", "b/1/a"]:
            await store.put(key, key.encode())
        await store.put("a/1/a", b"new")
        assert await store.get("a/1/a") == b"new"
        assert [o.key for o in await store.list("a/1")] == ["a/1/a", "a/1/b", "a/10/x"]
        assert [o.key for o in await store.list("a/1/")] == ["a/1/a", "a/1/b"]
        listed = await store.list("a/")
        assert [(o.key, o.size) for o in listed] == [
            ("a/1/a", 3), ("a/1/b", 5), ("a/10/x", 6), ("a/2/meta/z.json", 15),
        ]
        await store.delete(["a/1/a", "a/2/meta/z.json"])
        assert [o.key for o in await store.list("")] == ["a/1/b", "a/10/x", "b/1/a"]

    run(make_store, scenario)


def test_multipart_put_joins_parts_and_ranges_cross_part_boundaries(make_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        part = store.part_bytes
        data = os.urandom(2 * part + 1234)
        await store.put_multipart("big/obj", parts_of(data, part))
        assert (await store.head("big/obj")).size == len(data)
        assert await store.get("big/obj", part - 10, part + 10) == data[part - 10 : part + 10]
        assert await store.get("big/obj", 2 * part) == data[2 * part :]
        assert await store.get("big/obj") == data

    run(make_store, scenario)


def test_a_failed_multipart_put_leaves_no_object(make_store: StoreFactory) -> None:
    class ReadFailed(Exception):
        pass

    async def failing_parts(part: int) -> AsyncIterator[bytes]:
        yield os.urandom(part)
        raise ReadFailed("the segment file could not be read")

    async def scenario(store: ObjectStore) -> None:
        with pytest.raises(ReadFailed):
            await store.put_multipart("big/half", failing_parts(store.part_bytes))
        with pytest.raises(NotFoundError):
            await store.head("big/half")
        assert await store.list("big/") == []

    run(make_store, scenario)


def test_bad_keys_are_refused_before_any_request(make_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        for key in ["", "/abs", "a//b", "a/../b", "a/./b"]:
            with pytest.raises(InvalidKeyError):
                await store.put(key, b"x")
        assert sum(store.requests.values()) == 0

    run(make_store, scenario)


def test_keys_past_the_stores_limits_are_refused_before_any_request(make_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        too_long = "k" * 1025 if store.url.startswith("s3:") else "k" * 256  # S3's key, one file name
        for key in (too_long, f"a/{too_long}/b"):
            with pytest.raises(InvalidKeyError, match="allowed"):
                await store.put(key, b"x")
        assert sum(store.requests.values()) == 0
        await store.put("k" * 255, b"fits")
        assert await store.get("k" * 255) == b"fits"

    run(make_store, scenario)


def test_requests_are_counted_by_operation(make_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        await store.put("c/x", b"1")
        await store.get("c/x")
        await store.head("c/x")
        await store.list("c/")
        await store.delete(["c/x"])
        assert {op: store.requests[op] for op in ("PUT", "GET", "HEAD", "LIST", "DELETE")} == {
            "PUT": 1, "GET": 1, "HEAD": 1, "LIST": 1, "DELETE": 1,
        }

    run(make_store, scenario)


def test_check_passes_on_a_usable_store(make_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        await store.check()
        assert await store.list("") == [], "the probe object is gone after the check"

    run(make_store, scenario)


def test_put_file_stores_the_first_bytes_of_an_open_file_paced(make_store: StoreFactory, tmp_path) -> None:
    async def scenario(store: ObjectStore) -> None:
        data = os.urandom(2 * store.part_bytes + 777)
        path = tmp_path / "segment.log"
        path.write_bytes(data + b"trailing bytes past the size")
        paced: list[int] = []

        async def pace(n: int) -> None:
            paced.append(n)

        fd = os.open(path, os.O_RDONLY)
        try:
            await store.put_file("f/big", fd, len(data), pace)
            await store.put_file("f/small", fd, 1000)
            assert os.lseek(fd, 0, os.SEEK_CUR) == 0, "the file position is untouched"
        finally:
            os.close(fd)
        assert await store.get("f/big") == data
        assert await store.get("f/small") == data[:1000]
        assert sum(paced) == len(data)

    run(make_store, scenario)
