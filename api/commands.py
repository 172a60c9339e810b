"""The client commands of the CLI: users, topics, produce, consume, replay, tier-status.

Data goes to stdout (one record per line, tables as plain aligned columns); errors go to
stderr as one line, with exit status 1."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from broker.security.documents import DocumentError
from broker.security.scram import UnknownMechanismError, mechanism_named, type_of
from broker.security.users import Deletion, UserCredentials, UserStore, salted
from tiering.store import ObjectStoreError
from tiering.url import open_store

from .cli import DEFAULT_OBJECT_STORE, object_store_url
from .client import Admin, Consumer, Message, NewRecord, Producer, TierlogError
from .replay import ReplayError, message_json, replay

# A produce request holds at most this much; lines waiting on a slow stdin go out sooner.
PRODUCE_RECORDS = 2000
PRODUCE_BYTES = 512 * 1024
COMMIT_INTERVAL_SECONDS = 1.0


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


# -- topics ------------------------------------------------------------------------------

def topics(args: argparse.Namespace) -> int:
    with Admin(args.server) as admin:
        if args.action == "create":
            info = admin.create_topic(args.topic, args.partitions or 0, dict(args.config))
            print(f"created topic {info.name} with {len(info.partitions)} partition(s)", file=sys.stderr)
        elif args.action == "list":
            for name in admin.list_topics(internal=args.internal):
                _out(name)
        elif args.action == "describe":
            info = admin.describe_topic(args.topic)
            _out(f"topic {info.name}  id {info.topic_id}  partitions {len(info.partitions)}")
            _out(format_table(["PARTITION", "LOG_START", "HIGH_WATERMARK", "LOCAL_BYTES"], [
                (p.partition, p.log_start_offset, p.high_watermark, p.local_bytes) for p in info.partitions
            ]))
            _out(format_table(["CONFIG", "VALUE", "SOURCE"], [
                (name, value, "topic" if name in info.overrides else "default")
                for name, value in info.configs.items()
            ]))
        elif args.action == "delete":
            admin.delete_topic(args.topic)
            print(f"deleted topic {args.topic}", file=sys.stderr)
    return 0


# -- produce -----------------------------------------------------------------------------

def stdin_chunks(stream: BinaryIO) -> Iterator[list[bytes]]:
    """Lines of `stream` in chunks: as many as are there (up to the request limits), so a
    pipe goes out in large requests and a line typed by hand goes out at once."""
    fd = stream.fileno()
    tail = b""
    lines: list[bytes] = []
    size = 0
    while True:
        data = os.read(fd, PRODUCE_BYTES)
        if not data:
            break
        *complete, tail = (tail + data).split(b"\n")
        for line in complete:
            lines.append(line[:-1] if line.endswith(b"\r") else line)
            size += len(line)
            if len(lines) >= PRODUCE_RECORDS or size >= PRODUCE_BYTES:
                yield lines
                lines, size = [], 0
        if lines and not select.select([fd], [], [], 0)[0]:
            yield lines
            lines, size = [], 0
    if tail:
        lines.append(tail)
    if lines:
        yield lines


def _record(line: bytes, separator: bytes | None) -> NewRecord:
    if separator is not None:
        key, sep, value = line.partition(separator)
        if sep:
            return NewRecord(value, key)
    return NewRecord(line)


def produce(args: argparse.Namespace) -> int:
    separator = args.key_separator.encode() if args.key_separator else None
    count = 0
    with Producer(args.server) as producer:
        for lines in stdin_chunks(sys.stdin.buffer):
            producer.send_many(args.topic, [_record(line, separator) for line in lines],
                               partition=args.partition, compression=args.compression)
            count += len(lines)
    print(f"produced {count} record(s) to {args.topic}", file=sys.stderr)
    return 0


# -- consume -----------------------------------------------------------------------------

def _line(message: Message, args: argparse.Namespace) -> bytes:
    if args.format == "json":
        return json.dumps(message_json(message), ensure_ascii=False).encode()
    value = message.value or b""
    if args.key_separator is not None:
        return (message.key or b"") + args.key_separator.encode() + value
    return value


def _stop_on_sigterm() -> None:
    """SIGTERM ends a consume as Ctrl-C does: through `finally`, so the group commits."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def consume(args: argparse.Namespace) -> int:
    partitions = [args.partition] if args.partition is not None else []
    out = sys.stdout.buffer
    count = 0
    _stop_on_sigterm()
    with Consumer(args.topic, args.server, start=args.start, partitions=partitions, group=args.group) as consumer:
        last_commit = time.monotonic()
        try:
            for message in consumer:
                out.write(_line(message, args) + b"\n")
                out.flush()
                count += 1
                if args.max_messages and count >= args.max_messages:
                    break
                if args.group and time.monotonic() - last_commit >= COMMIT_INTERVAL_SECONDS:
                    consumer.commit()
                    last_commit = time.monotonic()
        except KeyboardInterrupt:
            pass
        finally:
            if args.group:
                consumer.commit()
    return 0


# -- tier status -------------------------------------------------------------------------

def _offset(value: int) -> str:
    return "-" if value < 0 else str(value)


def tier_status(args: argparse.Namespace) -> int:
    with Admin(args.server) as admin:
        status = admin.tier_status(args.topic)
    if not status.tiering_enabled:
        print("tiering is not running on this server: the remote columns are empty", file=sys.stderr)
    _out(format_table(
        ["TOPIC", "PARTITION", "LOCAL_START", "LOG_END", "LOCAL_BYTES", "REMOTE_START", "REMOTE_END",
         "REMOTE_BYTES", "COPY_LAG_SEGMENTS", "COPY_LAG_BYTES"],
        [(p.topic, p.partition, p.local_log_start_offset, p.log_end_offset, p.local_bytes,
          _offset(p.remote_log_start_offset), _offset(p.remote_log_end_offset), p.remote_bytes,
          p.copy_lag_segments, p.copy_lag_bytes) for p in status.partitions],
    ))
    return 0


def run_replay(args: argparse.Namespace) -> int:
    partitions = [args.partition] if args.partition is not None else []
    written = replay(args.server, args.topic, args.start, args.end, args.out, partitions)
    print(f"wrote {written} record(s) to {args.out}", file=sys.stderr)
    return 0


# -- users -------------------------------------------------------------------------------

def new_password(args: argparse.Namespace) -> str:
    """From --password-file (its first line), else stdin's first line."""
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                text = f.readline()
        except OSError as exc:
            raise UsersError(f"cannot read {args.password_file}: {exc.strerror}") from None
    else:
        text = sys.stdin.readline()
    password = text.rstrip("\r\n")
    if not password:
        raise UsersError("the password is empty")
    return password


class UsersError(Exception):
    """A user change refused (by the store's checks) or input missing."""


def users(args: argparse.Namespace) -> int:
    """Against the server (gRPC), or with --data-dir against its folder and bucket, for the
    first user before the server ever starts."""
    if args.data_dir is not None:
        return asyncio.run(_users_offline(args))
    if args.object_store:
        raise UsersError("--object-store goes with --data-dir (without them, the server changes its own)")
    with Admin(args.server) as admin:
        if args.action == "add":
            admin.add_user(args.name, new_password(args), mechanism=args.mechanism, iterations=args.iterations)
            print(f"set the {args.mechanism.upper()} credential of user {args.name}", file=sys.stderr)
        elif args.action == "remove":
            admin.remove_user(args.name, args.mechanism)
            print(f"removed user {args.name}" + (f"'s {args.mechanism.upper()} credential" if args.mechanism else ""),
                  file=sys.stderr)
        else:
            _print_users(admin.list_users())
    return 0


def _print_users(listed: dict[str, dict[str, int]]) -> None:
    _out(format_table(["USER", "MECHANISM", "ITERATIONS"], [
        (name, mechanism, iterations) for name, credentials in sorted(listed.items())
        for mechanism, iterations in credentials.items()]))


async def _users_offline(args: argparse.Namespace) -> int:
    """The server's own user store over the data folder (and bucket): the same checks."""
    os.makedirs(args.data_dir, exist_ok=True)
    store = UserStore(args.data_dir)
    # The bucket's copy is the one the server reads, so a change must go there too.
    bucket = open_store(args.object_store or object_store_url(DEFAULT_OBJECT_STORE))
    try:
        store.document.keep_in(bucket)
        await store.load()
        if args.action == "list":
            _print_users({u.name: {m.name: i for m, i in u.mechanisms}
                          for u in store.describe(None) if isinstance(u, UserCredentials)})
            return 0
        if args.action == "add":
            outcome = await store.alter([salted(args.name, mechanism_named(args.mechanism), new_password(args),
                                                args.iterations)], [])
        else:
            credentials = {u.name: u for u in store.describe(None) if isinstance(u, UserCredentials)}.get(args.name)
            names = [args.mechanism] if args.mechanism else \
                [m.name for m, _ in credentials.mechanisms] if credentials else ["SCRAM-SHA-512"]
            outcome = await store.alter([], [Deletion(args.name, type_of(m)) for m in names])
    finally:
        await bucket.close()
    error = outcome[args.name]
    if error is not None:
        raise UsersError(f"{error.code.name.upper()}: {error.message}")
    print(f"{'set' if args.action == 'add' else 'removed'} user {args.name} in {args.data_dir}", file=sys.stderr)
    return 0


COMMANDS = {"users": users, "topics": topics, "produce": produce, "consume": consume, "replay": run_replay,
            "tier-status": tier_status}


def run_client_command(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except TierlogError as exc:
        print(f"tierlog {args.command}: {exc}", file=sys.stderr)
        return 1
    except (ReplayError, UsersError, UnknownMechanismError, DocumentError, ObjectStoreError) as exc:
        print(f"tierlog {args.command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of our output went away (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
