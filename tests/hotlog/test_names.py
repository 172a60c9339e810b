"""Names made from topic names fit one file name: the partition folders of a 249-character
topic (Kafka's longest), the folders its deletion renames them to, and shortened names
that stay apart."""

import os
import shutil

import pytest

from hotlog.manager import LogManager
from hotlog.names import NAME_MAX, fit_name

from .support import make_batch

LONGEST = "x" * 249


def test_names_that_fit_are_kept_and_longer_ones_are_shortened_apart() -> None:
    assert fit_name("orders", "-3") == "orders-3"
    assert fit_name(LONGEST, "-9999") == f"{LONGEST}-9999", "Kafka's own folder names fit"
    long_suffix = "-0.0123456789abcdef0123456789abcdef-delete"
    shortened = {fit_name(name, long_suffix) for name in (LONGEST, "x" * 248 + "y", "x" * 230)}
    assert len(shortened) == 3
    for name in shortened:
        assert len(name.encode()) == NAME_MAX and name.endswith(long_suffix) and "~" in name
        assert name.startswith("x" * 190)
    assert fit_name("é" * 200, "-1") == fit_name("é" * 200, "-1")  # deterministic
    assert len(fit_name("é" * 200, "-1").encode()) <= NAME_MAX, "cut between characters, never inside one"
    with pytest.raises(ValueError):
        fit_name("t", "-" * NAME_MAX)


def test_a_topic_of_249_characters_has_kafkas_folders_and_is_deleted(tmp_path) -> None:
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic(LONGEST, 3)
    manager.log(LONGEST, 2).append(make_batch(3))
    assert {f"{LONGEST}-{p}" for p in range(3)} <= set(os.listdir(tmp_path))
    manager.delete_topic(LONGEST)
    assert not [n for n in os.listdir(tmp_path) if n.startswith("xxx")]
    assert LONGEST not in manager.topics
    manager.create_topic(LONGEST, 1)
    assert manager.log(LONGEST, 0).log_end_offset == 0
    manager.close()


def test_a_crash_after_the_deletion_rename_leaves_a_folder_the_next_start_removes(tmp_path, monkeypatch) -> None:
    manager = LogManager(str(tmp_path)).open()
    topic = manager.create_topic(LONGEST, 1)
    manager.log(LONGEST, 0).append(make_batch(3))
    with monkeypatch.context() as m:
        m.setattr(shutil, "rmtree", lambda *args, **kwargs: None)  # the process dies before removing it
        manager.delete_topic(LONGEST)
    [doomed] = [n for n in os.listdir(tmp_path) if n.startswith("xxx")]
    assert doomed.endswith(f"-0.{topic.topic_id.hex}-delete") and len(doomed) == 255, "Kafka's name, cut short"
    LogManager(str(tmp_path)).open().close()
    assert not [n for n in os.listdir(tmp_path) if n.startswith("xxx")]


def test_a_disk_that_refuses_the_deletion_rename_still_sees_the_topic_deleted(tmp_path, monkeypatch) -> None:
    manager = LogManager(str(tmp_path)).open()
    manager.create_topic("t", 2)
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        if str(dst).endswith("-delete"):
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    deleted = manager.delete_topic("t")  # after the commit point: nothing to raise to the client
    assert deleted.name == "t" and "t" not in manager.topics
    assert not [n for n in os.listdir(tmp_path) if n.startswith("t-")], "removed in place"
