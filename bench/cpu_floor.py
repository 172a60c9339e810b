"""The CPU per GB that no broker on this machine can go below, in one run: the system
calls and checks a produce or a fetch of a page-cache log must make, timed alone.

    python bench/cpu_floor.py [--mib 1024] [--rounds 3] [--dir DIR]

- receive: 1 MiB `recv_into` a reused buffer from a loopback TCP socket (the sender is
  another process, so only the receiving side is counted, as a broker's is);
- page-cache write: 1 MiB `os.writev` appends to a file (no fsync);
- CRC-32C: of every byte, in 1 MiB pieces (what the append path checks);
- the page-cache write with an `fdatasync` after each 1 MiB (acks=all's writes: with
  acks=1 the kernel's flusher threads write back, outside the broker's CPU);
- sendfile: a file in the page cache to a loopback TCP socket (the other side drains it in
  another process), the local-tier fetch's whole cost;
- pread + send: the same by `os.pread` into a buffer and `send`, the copy path sendfile
  replaced.

Each figure is the CPU time (user + system) of this process per GB moved, the median of
--rounds. Compare them with bench/kafka.py's broker CPU-s per GB from the same session:
a produce pays receive + page-cache write + CRC at least, a fetch sendfile.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import crc32c

PIECE = 1024 * 1024

_DRAIN = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = bytearray(1 << 20)
while s.recv_into(buf):
    pass
"""

_FEED = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
piece = b"x" * (1 << 20)
for _ in range(int(sys.argv[2])):
    s.sendall(piece)
s.close()
"""


def cpu() -> float:
    return time.process_time()


def with_peer(script: str, *args: str) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """A loopback TCP connection to a Python process of its own running `script`."""
    listener = socket.create_server(("127.0.0.1", 0))
    peer = subprocess.Popen([sys.executable, "-c", script, str(listener.getsockname()[1]), *args])
    conn, _ = listener.accept()
    listener.close()
    return conn, peer


def receive(pieces: int) -> float:
    conn, peer = with_peer(_FEED, str(pieces))
    buf = bytearray(PIECE)
    start = cpu()
    while conn.recv_into(buf):
        pass
    used = cpu() - start
    conn.close()
    peer.wait()
    return used


def page_cache_write(folder: str, pieces: int, *, fsync: bool = False) -> float:
    path = os.path.join(folder, "floor-write.log")
    piece = os.urandom(PIECE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
    start = cpu()
    for _ in range(pieces):
        os.writev(fd, [piece[:61], memoryview(piece)[61:]])  # a batch header and its records, as appends write
        if fsync:
            os.fdatasync(fd)
    used = cpu() - start
    os.close(fd)
    os.unlink(path)
    return used


def checksum(pieces: int) -> float:
    piece = os.urandom(PIECE)
    start = cpu()
    for _ in range(pieces):
        crc32c.crc32c(piece)
    return cpu() - start


def source_file(folder: str, pieces: int) -> str:
    path = os.path.join(folder, "floor-read.log")
    piece = os.urandom(PIECE)
    with open(path, "wb") as f:
        for _ in range(pieces):
            f.write(piece)
    with open(path, "rb") as f:  # in the page cache, as a recent segment is
        while f.read(PIECE):
            pass
    return path


def send_file(path: str, pieces: int) -> float:
    conn, peer = with_peer(_DRAIN)
    conn.setblocking(True)
    fd = os.open(path, os.O_RDONLY)
    start = cpu()
    position, end = 0, pieces * PIECE
    while position < end:
        position += os.sendfile(conn.fileno(), fd, position, end - position)
    used = cpu() - start
    os.close(fd)
    conn.close()
    peer.wait()
    return used


def pread_send(path: str, pieces: int) -> float:
    conn, peer = with_peer(_DRAIN)
    fd = os.open(path, os.O_RDONLY)
    start = cpu()
    for i in range(pieces):
        conn.sendall(os.pread(fd, PIECE, i * PIECE))
    used = cpu() - start
    os.close(fd)
    conn.close()
    peer.wait()
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="folder on the disk under test (default: a temp folder in .)")
    args = parser.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="tierlog-floor-", dir=".")
    pieces = args.mib
    gb = pieces * PIECE / 1e9
    path = source_file(folder, pieces)
    runs: dict[str, Callable[[], float]] = {
        "receive (recv_into)": lambda: receive(pieces),
        "page-cache write (writev)": lambda: page_cache_write(folder, pieces),
        "CRC-32C": lambda: checksum(pieces),
        "page-cache write + fdatasync each 1 MiB": lambda: page_cache_write(folder, pieces, fsync=True),
        "sendfile to a socket": lambda: send_file(path, pieces),
        "pread + send": lambda: pread_send(path, pieces),
    }
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            samples[name].append(run() / gb)
    os.unlink(path)
    if args.dir is None:
        os.rmdir(folder)
    print(f"{args.mib} MiB per run, median of {args.rounds} rounds (this process's CPU-s per GB)")
    print("| what | CPU-s per GB | rounds |")
    print("| --- | --- | --- |")
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values):.3f} | {', '.join(f'{v:.3f}' for v in values)} |")
    median = {name: statistics.median(values) for name, values in samples.items()}
    receive_crc = median["receive (recv_into)"] + median["CRC-32C"]
    print(f"| produce acks=1 floor (receive + write + CRC) | {receive_crc + median['page-cache write (writev)']:.3f} | |")
    print(f"| produce acks=all floor (receive + write and fdatasync + CRC) | "
          f"{receive_crc + median['page-cache write + fdatasync each 1 MiB']:.3f} | |")


if __name__ == "__main__":
    main()
