"""The LRU of open segment files: descriptors on demand, the least recently used idle one
closed past the bound, pinned ones never, deleted ones readable by whoever holds them."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from hotlog.config import LogConfig
from hotlog.log import PartitionLog
from hotlog.manager import LogManager
from hotlog.open_files import OpenFiles

from .support import make_batch, payload_digest, read_all


def files_in(tmp_path, count):
    paths = []
    for i in range(count):
        path = tmp_path / f"{i:03d}.log"
        path.write_bytes(b"file %d" % i)
        paths.append(str(path))
    return paths


def fd_targets() -> list[str]:
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{name}"))
        except FileNotFoundError:  # the descriptor listdir itself used
            pass
    return out


def read_through(file) -> bytes:
    fd = file.acquire()
    try:
        return os.pread(fd, 100, 0)
    finally:
        file.release()


def test_idle_files_past_the_bound_close_least_recently_used_first_and_reopen_on_use(tmp_path):
    files = OpenFiles(limit=3)
    handles = [files.file(p) for p in files_in(tmp_path, 5)]
    assert not any(h.is_open for h in handles)  # nothing opened until used
    for h in handles:
        read_through(h)
    assert files.open_count == 3
    assert [h.is_open for h in handles] == [False, False, True, True, True]
    read_through(handles[2])  # now the most recent: handles[3] is the oldest open one
    assert read_through(handles[0]) == b"file 0"  # reopened
    assert [h.is_open for h in handles] == [True, False, True, False, True]
    assert sum(path.startswith(str(tmp_path)) for path in fd_targets()) == 3


def test_pinned_files_stay_open_past_the_bound_and_trim_once_released(tmp_path):
    files = OpenFiles(limit=2)
    handles = [files.file(p) for p in files_in(tmp_path, 4)]
    fds = [h.acquire() for h in handles]
    assert files.open_count == 4 and all(h.is_open for h in handles)
    assert [os.pread(fd, 6, 0) for fd in fds] == [b"file %d" % i for i in range(4)]
    handles[1].acquire()  # a second user of one file
    for h in handles:
        h.release()
    assert files.open_count == 2 and handles[1].is_open  # still pinned once
    handles[1].release()
    assert files.open_count == 2


def test_a_deleted_segment_stays_readable_by_a_slice_taken_before_and_closes_after(tmp_path):
    files = OpenFiles(limit=2)
    plog = PartitionLog.open(str(tmp_path / "t-0"), "t", 0, LogConfig.build({}, {"segment.bytes": 2000}),
                             clean=True, files=files)
    for i in range(40):
        plog.append(make_batch(2, value_size=60, tag=b"b%d" % i))
    first = plog.segments[0]
    found = plog.read(0, 1 << 20)
    expected = found.read()
    read_all(plog)  # every segment used since: the bound closed every idle one
    plog.flush()
    assert len(plog.delete_oldest_segments(1)) == 1 and not os.path.exists(first.log_path)
    assert found.read() == expected  # through the descriptor the slice pinned
    assert first.log_path + " (deleted)" in fd_targets()
    del found
    assert first.log_path + " (deleted)" not in fd_targets()  # closed with its last user
    with pytest.raises(FileNotFoundError):
        first.pread(0, 10)  # never reopened: a new segment may take its name


def test_logs_use_at_most_the_bound_of_descriptors_whatever_their_count_and_restart_within_it(tmp_path):
    def open_in_folder() -> int:  # other tests' leftovers elsewhere in the process do not count
        return sum(path.startswith(str(tmp_path)) for path in fd_targets())

    manager = LogManager(str(tmp_path), {"segment.bytes": 3000}, open_files=OpenFiles(limit=8)).open()
    manager.create_topic("many", 200)
    sent = {p: [make_batch(1 + p % 3, value_size=200, tag=b"p%d-%d" % (p, i)) for i in range(12)] for p in range(200)}
    for i in range(12):
        for p in range(200):
            manager.log("many", p).append(sent[p][i])
    assert len(manager.log("many", 7).segments) > 1
    assert manager.open_files.open_count <= 8 and open_in_folder() <= 8
    manager.close()
    assert manager.open_files.open_count == 0  # closed logs hold none

    for clean in (True, False):
        if not clean:
            os.unlink(tmp_path / ".clean-shutdown")  # recovery scans every segment after the checkpoint
        again = LogManager(str(tmp_path), open_files=OpenFiles(limit=8)).open()
        assert again.opened_clean is clean
        assert again.open_files.open_count <= 8 and open_in_folder() <= 8
        for p in range(200):
            assert [payload_digest(b) for b in read_all(again.log("many", p))] == [payload_digest(b) for b in sent[p]]
        assert again.open_files.open_count <= 8
        again.close()


RUN_OUT_OF_DESCRIPTORS = textwrap.dedent("""
    import json, logging, os, resource, sys
    from hotlog.errors import TooManyOpenFilesError
    from hotlog.open_files import OpenFiles

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    folder = sys.argv[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    files = OpenFiles(limit=1000)  # more than the process may open
    handles = []
    for i in range(200):
        path = os.path.join(folder, "%03d.log" % i)
        with open(path, "wb") as f:
            f.write(b"%03d" % i)
        handles.append(files.file(path))
    read = []
    for h in handles:  # each EMFILE closes idle files and the open is tried again
        fd = h.acquire()
        read.append(os.pread(fd, 3, 0).decode())
        h.release()
    pinned, refused = 0, 0
    for h in handles:  # all pinned: nothing left to close
        try:
            h.acquire()
            pinned += 1
        except TooManyOpenFilesError:
            refused += 1
    print(json.dumps({"read": read, "pinned": pinned, "refused": refused}))
""")


def test_running_out_of_descriptors_closes_idle_files_then_refuses_clearly_with_a_rate_limited_warning(tmp_path):
    done = subprocess.run([sys.executable, "-c", RUN_OUT_OF_DESCRIPTORS, str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=os.getcwd())
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["read"] == [f"{i:03d}" for i in range(200)]  # every file read despite EMFILE
    assert 0 < result["pinned"] < 64 and result["refused"] == 200 - result["pinned"]
    warnings = done.stderr.splitlines()
    # Dozens of EMFILEs, then well over a hundred refusals, within seconds: one warning.
    assert len(warnings) == 1 and "out of file descriptors" in warnings[0], done.stderr
