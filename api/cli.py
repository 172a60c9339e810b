"""The `tierlog` command line."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from .listen import DEFAULT_KAFKA_LISTEN, ListenError, parse_host_port

DEFAULT_SERVER = "127.0.0.1:9093"
DEFAULT_OBJECT_STORE = "file://./tierlog-objects"  # serve's, and so offline `users`'
_OBJECT_STORE = re.compile(r"^(file://.+|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]([/?].*)?)$")


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line on stderr (no usage dump), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Given(argparse.Action):
    """Stores the value and notes `<dest>_given`: a default must not clash with a property."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def listen_address(text: str) -> str:
    try:
        parse_host_port(text)
    except ListenError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def object_store_url(text: str) -> str:
    """The URL checked; a relative folder (file://./objects, the default) made absolute."""
    if not _OBJECT_STORE.match(text):
        raise argparse.ArgumentTypeError(f"expected file:///path or s3://bucket[/prefix], got {text!r}")
    folder = text.removeprefix("file://")
    if text.startswith("file://") and not folder.startswith("/"):
        return f"file://{os.path.abspath(folder)}"
    return text


def position(text: str) -> str | int | datetime:
    """beginning | latest | OFFSET | @TIMESTAMP (ms since the epoch, or ISO 8601; UTC unless it says)."""
    if text in ("beginning", "earliest", "latest", "end"):
        return text
    if text.isdigit():
        return int(text)
    if text.startswith("@"):
        stamp = text[1:]
        try:
            when = (datetime.fromtimestamp(int(stamp) / 1000, UTC) if stamp.isdigit()
                    else datetime.fromisoformat(stamp))
        except (ValueError, OverflowError, OSError):
            raise argparse.ArgumentTypeError(f"{text!r}: expected @MILLISECONDS or @ISO-8601 time") from None
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    raise argparse.ArgumentTypeError(f"expected beginning, latest, an offset or @TIMESTAMP, got {text!r}")


def non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, got {text!r}")
    return int(text)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of 1 or more, got {text!r}")
    return int(text)


def name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _client_parser(commands: argparse._SubParsersAction, name: str, help: str,
                   password_flag: str = "--password-file") -> argparse.ArgumentParser:
    """`password_flag`: `users add` takes --password-file for the new user's password."""
    parser = commands.add_parser(name, help=help, description=help)
    parser.add_argument("--server", default=DEFAULT_SERVER, type=listen_address, metavar="HOST:PORT",
                        help=f"tierlog's gRPC address (default {DEFAULT_SERVER})")
    # TLS (grpc.listener.security.protocol=SSL); the environment variables are the client library's.
    parser.add_argument("--ca-file", help="CA bundle (PEM) to check the server's certificate against; "
                                          "sets TIERLOG_CA_FILE (default: the system's CAs once TLS is on)")
    parser.add_argument("--cert-file", help="client certificate (PEM) for mTLS; sets TIERLOG_CERT_FILE")
    parser.add_argument("--key-file", help="the client certificate's key (PEM); sets TIERLOG_KEY_FILE")
    # Call credentials (grpc.authentication); the environment variables are the client library's.
    parser.add_argument("--username", help="authenticate as this user; sets TIERLOG_USERNAME")
    parser.add_argument(password_flag, dest="auth_password_file", metavar="FILE",
                        help="a file whose first line is --username's password; sets TIERLOG_PASSWORD")
    return parser


def _add_users_parser(commands: argparse._SubParsersAction) -> None:
    """`tierlog users`: through the server, or with --data-dir (and --object-store) straight in
    the broker's folder and bucket, before it starts."""
    from broker.security.scram import DEFAULT_ITERATIONS

    users = commands.add_parser("users", help="add, remove and list the users SASL and gRPC authenticate")
    actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = _client_parser(actions, "add", "set a user's SCRAM credential (a new user, or a new password)",
                         password_flag="--auth-password-file")
    add.add_argument("name")
    add.add_argument("--mechanism", default="SCRAM-SHA-512", help="SCRAM-SHA-512 (default) or SCRAM-SHA-256; "
                                                                  "PLAIN logs in with either")
    add.add_argument("--iterations", type=positive, default=DEFAULT_ITERATIONS,
                     help=f"PBKDF2 iterations, 4096 to 16384 (default {DEFAULT_ITERATIONS})")
    add.add_argument("--password-file", help="the first line is the password (default: stdin's first line)")
    remove = _client_parser(actions, "remove", "remove a user, or one of its credentials",
                            password_flag="--auth-password-file")
    remove.add_argument("name")
    remove.add_argument("--mechanism", help="only this credential (default: all of the user's)")
    _client_parser(actions, "list", "users and their mechanisms", password_flag="--auth-password-file")
    for parser in actions.choices.values():
        parser.add_argument("--data-dir", help="change the broker's folder itself, not through a server "
                                               "(the server must not be running)")
        parser.add_argument("--object-store", type=object_store_url,
                            help="with --data-dir: the broker's bucket, where the users are kept too; give the "
                                 f"server's (default, as serve's: {DEFAULT_OBJECT_STORE}), whose copy the server "
                                 "reads at start")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tierlog", description="A tiered-storage event log.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the broker")
    serve.add_argument("--data-dir", default="./tierlog-data", help="local tier folder (default ./tierlog-data)")
    serve.add_argument("--object-store", default=DEFAULT_OBJECT_STORE, type=object_store_url,
                       help=f"cold tier URL: file:///path or s3://bucket/prefix (default {DEFAULT_OBJECT_STORE})")
    serve.add_argument("--kafka-listen", default=DEFAULT_KAFKA_LISTEN, type=listen_address, action=_Given,
                       help="one PLAINTEXT Kafka listener HOST:PORT (the listeners property names several)")
    serve.add_argument("--grpc-listen", default="127.0.0.1:9093", type=listen_address,
                       help="gRPC listener HOST:PORT")
    serve.add_argument("--http-listen", default="127.0.0.1:9644", type=listen_address,
                       help="HTTP listener (metrics, health) HOST:PORT")
    serve.set_defaults(kafka_listen_given=False)
    serve.add_argument("--allow-insecure", action="store_true",
                       help="let a listener without TLS and authentication bind a non-loopback address")
    serve.add_argument("--config", metavar="FILE", help="a properties file of broker settings (name=value lines)")
    serve.add_argument("--conf", action="append", default=[], metavar="NAME=VALUE",
                       help="a broker property, e.g. log.segment.bytes=1048576 (repeatable)")

    topics = commands.add_parser("topics", help="create, list, describe and delete topics")
    actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = _client_parser(actions, "create", "create a topic")
    create.add_argument("topic")
    create.add_argument("--partitions", type=positive, help="partitions (default: the broker's num.partitions)")
    create.add_argument("--config", action="append", default=[], type=name_value, metavar="NAME=VALUE",
                        help="a topic config, e.g. retention.ms=86400000 (repeatable)")
    listing = _client_parser(actions, "list", "list topic names")
    listing.add_argument("--internal", action="store_true", help="include the broker's own topics")
    describe = _client_parser(actions, "describe", "partitions, offsets and configs of a topic")
    describe.add_argument("topic")
    delete = _client_parser(actions, "delete", "delete a topic and its data")
    delete.add_argument("topic")

    produce = _client_parser(commands, "produce", "send stdin's lines as records")
    produce.add_argument("topic")
    produce.add_argument("--key-separator", metavar="SEP",
                         help="split each line into KEY SEP VALUE (a line without SEP has no key)")
    produce.add_argument("--partition", type=non_negative, metavar="N", help="write to this partition (default: by key)")
    produce.add_argument("--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"), default="none")

    consume = _client_parser(commands, "consume", "print records, one per line, as they arrive")
    consume.add_argument("topic")
    consume.add_argument("--from", dest="start", type=position, default="latest", metavar="WHERE",
                         help="beginning, latest (default), OFFSET or @TIMESTAMP (ms or ISO 8601)")
    consume.add_argument("--partition", type=non_negative, metavar="N", help="only this partition (default: all)")
    consume.add_argument("--group", help="consumer group: start where it committed, and commit as we go")
    consume.add_argument("--max-messages", type=positive, metavar="N", help="stop after N records")
    consume.add_argument("--key-separator", metavar="SEP", help="print KEY SEP VALUE")
    consume.add_argument("--format", choices=("text", "json"), default="text",
                         help="text: the value per line (default); json: one JSON object per record")

    replay = _client_parser(commands, "replay", "write a range of a topic to a JSON lines or Parquet file")
    replay.add_argument("topic")
    replay.add_argument("--from", dest="start", type=position, default="beginning", metavar="WHERE",
                        help="beginning (default), OFFSET or @TIMESTAMP")
    replay.add_argument("--to", dest="end", type=position, default="latest", metavar="WHERE",
                        help="latest (default: the end when replay starts), OFFSET or @TIMESTAMP (exclusive)")
    replay.add_argument("--out", required=True, metavar="FILE", help="FILE.jsonl or FILE.parquet")
    replay.add_argument("--partition", type=non_negative, metavar="N", help="only this partition (default: all)")

    _add_users_parser(commands)

    status = _client_parser(commands, "tier-status", "offsets and bytes per tier, per partition")
    status.add_argument("topic", nargs="?", help="one topic (default: all)")

    from .bench.cli import add_bench_parser
    from .cost.cli import add_cost_parser

    add_bench_parser(commands)
    add_cost_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from .serve import run_serve

        return run_serve(args)
    if args.command in ("bench", "cost"):
        return args.run(args)
    from .client import ClientTls
    from .commands import run_client_command

    tls = {field: getattr(args, field, None) for field in ClientTls.ENVIRONMENT}
    if (tls["cert_file"] is None) != (tls["key_file"] is None):
        build_parser().error("--cert-file and --key-file go together")
    os.environ.update({ClientTls.ENVIRONMENT[field]: path for field, path in tls.items() if path})
    if getattr(args, "username", None):
        os.environ["TIERLOG_USERNAME"] = args.username
    if getattr(args, "auth_password_file", None):
        try:
            with open(args.auth_password_file, encoding="utf-8") as f:
                os.environ["TIERLOG_PASSWORD"] = f.readline().rstrip("\r\n")
        except OSError as exc:
            build_parser().error(f"cannot read {args.auth_password_file}: {exc.strerror}")
    return run_client_command(args)


if __name__ == "__main__":
    sys.exit(main())
