"""Durable writes: a file is replaced whole, and fsynced with its folder when asked."""

import os

import pytest

from hotlog.durable import sync_written, write_atomically


@pytest.fixture
def fsynced(monkeypatch):
    """Paths fsynced, in order."""
    paths: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


def test_write_atomically_replaces_the_file_and_fsyncs_it_then_its_folder(tmp_path, fsynced):
    path = tmp_path / "checkpoint"
    path.write_bytes(b"old")
    write_atomically(str(path), b"new")
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["checkpoint"]
    # The temporary file's data, then the folder that holds the rename.
    assert fsynced == [str(tmp_path / "checkpoint.tmp"), str(tmp_path)]


def test_a_write_left_unsynced_is_fsynced_later_with_its_folder(tmp_path, fsynced):
    path = tmp_path / "00000000000000000042.snapshot"
    write_atomically(str(path), b"state", sync=False)
    assert path.read_bytes() == b"state" and fsynced == []
    sync_written(str(path))
    assert fsynced == [str(path), str(tmp_path)]
    path.unlink()
    sync_written(str(path))  # deleted meanwhile: nothing to do
    assert len(fsynced) == 2


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "topics.json"
    path.write_bytes(b"old")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_atomically(str(path), b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["topics.json"]
