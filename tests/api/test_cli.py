"""The `tierlog` command run as a user runs it: a subprocess, stdin lines, stdout, stderr, exit status."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from api.cli import build_parser
from api.client import Admin, NewRecord, Producer
from hotlog.partitioner import partition_for_key
from testkit.ports import free_port

from .server import TierlogServer, tierlog_command

TIMEOUT = 30


def tierlog(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*tierlog_command(), *args], input=input, capture_output=True, timeout=TIMEOUT)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


@pytest.fixture(scope="module")
def server(tierlog_server: TierlogServer) -> str:
    return tierlog_server.grpc_address


def test_topics_create_list_describe_delete(server: str) -> None:
    created = tierlog("topics", "create", "cli-topic", "--partitions", "3", "--config", "retention.ms=60000",
                      "--server", server)
    assert created.returncode == 0, created.stderr
    assert "created topic cli-topic with 3 partition(s)" in created.stderr
    again = tierlog("topics", "create", "cli-topic", "--server", server)
    assert again.returncode == 1
    assert one_line(again.stderr) == "tierlog topics: ALREADY_EXISTS: topic 'cli-topic' already exists"
    assert "cli-topic" in tierlog("topics", "list", "--server", server).stdout.splitlines()
    described = tierlog("topics", "describe", "cli-topic", "--server", server).stdout.splitlines()
    assert described[0].startswith("topic cli-topic  id ") and described[0].endswith("partitions 3")
    assert described[1].split() == ["PARTITION", "LOG_START", "HIGH_WATERMARK", "LOCAL_BYTES"]
    assert [line.split() for line in described[2:5]] == [[str(p), "0", "0", "0"] for p in range(3)]
    assert ["retention.ms", "60000", "topic"] in [line.split() for line in described]
    assert ["segment.bytes", "1073741824", "default"] in [line.split() for line in described]
    assert tierlog("topics", "delete", "cli-topic", "--server", server).returncode == 0
    assert "cli-topic" not in tierlog("topics", "list", "--server", server).stdout.splitlines()
    missing = tierlog("topics", "describe", "cli-topic", "--server", server)
    assert missing.returncode == 1 and "NOT_FOUND" in one_line(missing.stderr)


def test_produce_stdin_lines_with_keys_then_consume_them(server: str) -> None:
    assert tierlog("topics", "create", "lines", "--partitions", "4", "--server", server).returncode == 0
    lines = [f"user-{i % 3}\tclick {i}" for i in range(30)] + ["no key here"]
    produced = tierlog("produce", "lines", "--key-separator", "\t", "--server", server,
                       input=("\n".join(lines) + "\n").encode())
    assert produced.returncode == 0, produced.stderr
    assert one_line(produced.stderr) == "produced 31 record(s) to lines"
    consumed = tierlog("consume", "lines", "--from", "beginning", "--max-messages", "31", "--format", "json",
                       "--server", server)
    assert consumed.returncode == 0, consumed.stderr
    records = [json.loads(line) for line in consumed.stdout.splitlines()]
    keyed = [r for r in records if r["key"] is not None]
    assert sorted(r["value"] for r in keyed) == sorted(f"click {i}" for i in range(30))
    assert all(r["partition"] == partition_for_key(r["key"].encode(), 4) for r in keyed)
    assert [r["value"] for r in records if r["key"] is None] == ["no key here"]
    first_partition = partition_for_key(b"user-0", 4)
    text = tierlog("consume", "lines", "--from", "beginning", "--partition", str(first_partition),
                   "--max-messages", "2", "--key-separator", "=", "--server", server)
    assert text.stdout.splitlines()[0] == "user-0=click 0"


def test_produce_to_one_partition_and_consume_from_offsets_and_times(server: str) -> None:
    with Admin(server) as admin, Producer(server) as producer:
        admin.create_topic("timed", partitions=2)
        producer.send_many("timed", [NewRecord(b"at %d" % t, timestamp_ms=t) for t in (1000, 2000, 3000)],
                           partition=1)
    for start, expected in [("1", ["at 2000", "at 3000"]), ("@2000", ["at 2000", "at 3000"]),
                            ("@1970-01-01T00:00:02.500+00:00", ["at 3000"]), ("beginning", ["at 1000", "at 2000"])]:
        result = tierlog("consume", "timed", "--partition", "1", "--from", start, "--max-messages", str(len(expected)),
                         "--server", server)
        assert (result.returncode, result.stdout.splitlines()) == (0, expected), (start, result.stderr)
    piped = tierlog("produce", "timed", "--partition", "0", "--compression", "gzip", "--server", server,
                    input=b"x\ny\n")
    assert piped.returncode == 0, piped.stderr
    assert tierlog("consume", "timed", "--partition", "0", "--from", "beginning", "--max-messages", "2",
                   "--server", server).stdout == "x\ny\n"


def test_consume_with_a_group_continues_where_it_stopped(server: str) -> None:
    assert tierlog("topics", "create", "grouped", "--server", server).returncode == 0
    tierlog("produce", "grouped", "--server", server, input=b"1\n2\n3\n4\n5\n")

    def take(n: int) -> list[str]:
        result = tierlog("consume", "grouped", "--group", "readers", "--from", "beginning",
                         "--max-messages", str(n), "--server", server)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    assert take(2) == ["1", "2"]
    assert take(2) == ["3", "4"]
    assert take(1) == ["5"]


def test_consume_from_latest_waits_for_new_records(server: str) -> None:
    assert tierlog("topics", "create", "waiting", "--server", server).returncode == 0
    consumer = subprocess.Popen([*tierlog_command(), "consume", "waiting", "--max-messages", "1", "--server", server],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT
    with Producer(server) as producer:
        # Until the consumer has subscribed, records land before its start; keep sending.
        while consumer.poll() is None and time.monotonic() < deadline:
            producer.send("waiting", b"news")
            time.sleep(0.1)
    out, err = consumer.communicate(timeout=5)
    assert (consumer.returncode, out, err) == (0, b"news\n", b"")


def test_consume_into_a_closed_pipe_exits_quietly(server: str) -> None:
    assert tierlog("topics", "create", "piped", "--server", server).returncode == 0
    # More than a pipe holds (64 KiB), so the consumer is still writing when `head` leaves.
    tierlog("produce", "piped", "--server", server, input=b"".join(b"line %d\n" % i for i in range(30_000)))
    shell = subprocess.run(f"{tierlog_command()[0]} consume piped --from beginning --server {server} | head -n 1",
                           shell=True, capture_output=True, timeout=TIMEOUT)
    assert shell.stdout == b"line 0\n"
    assert b"Traceback" not in shell.stderr and b"BrokenPipe" not in shell.stderr


def _replay_topic(server: str) -> list[NewRecord]:
    records = [NewRecord(b"value %d" % i, key=b"k%d" % (i % 2), timestamp_ms=10_000 + i,
                         headers=(("n", b"%d" % i),)) for i in range(300)]
    records.append(NewRecord(b"\xff\xfe binary", key=None, timestamp_ms=20_000))
    with Admin(server) as admin, Producer(server) as producer:
        admin.create_topic("replayed", partitions=2)
        producer.send_many("replayed", records[:150], partition=0)
        producer.send_many("replayed", records[150:], partition=1)
    return records


def test_replay_to_json_lines_and_parquet(server: str, tmp_path: Path) -> None:
    _replay_topic(server)
    jsonl = tmp_path / "all.jsonl"
    result = tierlog("replay", "replayed", "--from", "beginning", "--to", "latest", "--out", str(jsonl),
                     "--server", server)
    assert result.returncode == 0, result.stderr
    assert "wrote 301 record(s)" in result.stderr.splitlines()[-1]
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == 301
    assert rows[0] == {"partition": 0, "offset": 0, "timestamp": 10_000, "key": "k0", "value": "value 0",
                       "headers": [{"key": "n", "value": "0"}]}
    assert rows[-1] == {"partition": 1, "offset": 150, "timestamp": 20_000, "key": None,
                        "value_base64": "//4gYmluYXJ5", "headers": []}

    parquet = tmp_path / "middle.parquet"
    result = tierlog("replay", "replayed", "--from", "100", "--to", "@10120", "--out", str(parquet),
                     "--server", server)
    assert result.returncode == 0, result.stderr
    table = pq.read_table(parquet)
    assert table.column_names == ["partition", "offset", "timestamp", "key", "value", "headers"]
    got = table.to_pydict()
    # Partition 0 holds timestamps 10000..10149: offsets 100..119 are before 10120.
    assert list(zip(got["partition"], got["offset"])) == [(0, o) for o in range(100, 120)]
    assert got["value"] == [b"value %d" % o for o in range(100, 120)]
    assert got["headers"][0] == [{"key": "n", "value": b"100"}]
    assert int(got["timestamp"][0].timestamp() * 1000) == 10_100
    assert not list(tmp_path.glob("*.partial"))


def test_replay_refuses_what_it_cannot_write_and_leaves_no_file(server: str, tmp_path: Path) -> None:
    wrong_type = tierlog("replay", "replayed", "--out", str(tmp_path / "out.csv"), "--server", server)
    assert wrong_type.returncode == 1 and ".jsonl" in one_line(wrong_type.stderr)
    unknown = tierlog("replay", "no-such-topic", "--out", str(tmp_path / "out.jsonl"), "--server", server)
    assert unknown.returncode == 1 and "NOT_FOUND" in one_line(unknown.stderr)
    assert list(tmp_path.iterdir()) == []


def test_tier_status_prints_a_table(server: str) -> None:
    tierlog("topics", "create", "tiered", "--partitions", "2", "--config", "segment.bytes=1024", "--server", server)
    produced = tierlog("produce", "tiered", "--partition", "1", "--server", server,
                       input=b"".join(b"line %03d of the tiered topic\n" % i for i in range(100)))
    assert produced.returncode == 0, produced.stderr  # in batches that fit 1 KB segments
    deadline = time.monotonic() + 15
    while True:  # until tiering (a pass every 200 ms) has copied the rolled segments
        result = tierlog("tier-status", "tiered", "--server", server)
        assert result.returncode == 0, result.stderr
        lines = [line.split() for line in result.stdout.splitlines()]
        if lines[2][5] != "-" and lines[2][8] == "0":
            break
        assert time.monotonic() < deadline, result.stdout
        time.sleep(0.2)
    assert lines[0] == ["TOPIC", "PARTITION", "LOCAL_START", "LOG_END", "LOCAL_BYTES", "REMOTE_START", "REMOTE_END",
                        "REMOTE_BYTES", "COPY_LAG_SEGMENTS", "COPY_LAG_BYTES"]
    assert lines[1] == ["tiered", "0", "0", "0", "0", "-", "-", "0", "0", "0"]
    assert lines[2][:4] == ["tiered", "1", "0", "100"] and lines[2][5] == "0"
    assert 0 < int(lines[2][6]) < 100 and 0 < int(lines[2][7]) < int(lines[2][4])
    assert result.stderr == ""


@pytest.mark.parametrize("args, code, words", [
    (["consume", "absent", "--from", "beginning"], 1, "tierlog consume: NOT_FOUND: unknown topic 'absent'"),
    (["consume", "absent", "--from", "soon"], 2, "argument --from: expected beginning, latest, an offset or @TIMESTAMP"),
    (["consume", "absent", "--from", "@yesterday"], 2, "expected @MILLISECONDS or @ISO-8601 time"),
    (["consume", "absent", "--max-messages", "0"], 2, "expected a number of 1 or more"),
    (["topics", "create", "x", "--config", "retention.ms"], 2, "expected NAME=VALUE"),
    (["produce", "absent", "--server", "localhost"], 2, "expected HOST:PORT"),
    (["topics", "frobnicate"], 2, "invalid choice: 'frobnicate'"),
])
def test_client_command_errors_are_one_line_on_stderr(server: str, args: list[str], code: int, words: str) -> None:
    if "--server" not in args:
        args = [*args, "--server", server]
    result = tierlog(*args, input=b"")
    assert result.returncode == code
    assert words in one_line(result.stderr)
    assert result.stdout == ""


def test_a_server_that_is_not_there(tmp_path: Path) -> None:
    result = tierlog("topics", "list", "--server", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "cannot reach tierlog at 127.0.0.1:" in one_line(result.stderr)


@pytest.mark.parametrize("flags, words", [
    (["--kafka-listen", "nohost"], "argument --kafka-listen: expected HOST:PORT, got 'nohost'"),
    (["--grpc-listen", "127.0.0.1:99999"], "the port must be a number from 0 to 65535"),
    (["--http-listen", "::1:9644"], "write an IPv6 address in brackets"),
    (["--object-store", "ftp://bucket"], "expected file:///path or s3://bucket[/prefix]"),
    (["--conf", "log.segment.bytes=big"], "segment.bytes: expected an integer, got 'big'"),
    (["--conf", "no.such.property=1"], "unknown broker property 'no.such.property'"),
    (["--config", "/nonexistent/broker.properties"], "No such file or directory"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_serve_with_a_bad_flag_says_so_in_one_line_and_touches_nothing(tmp_path: Path, flags: list[str],
                                                                        words: str) -> None:
    data = tmp_path / "data"
    result = tierlog("serve", "--data-dir", str(data), "--grpc-listen", f"127.0.0.1:{free_port()}",
                     "--http-listen", f"127.0.0.1:{free_port()}", *flags)
    assert result.returncode != 0
    assert words in one_line(result.stderr)
    assert not data.exists()


def test_serve_on_a_busy_port_says_so_and_touches_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        for flag in ("--grpc-listen", "--http-listen"):
            others = {"--grpc-listen": f"127.0.0.1:{free_port()}", "--http-listen": f"127.0.0.1:{free_port()}"}
            others[flag] = f"127.0.0.1:{port}"
            result = tierlog("serve", "--data-dir", str(data), *[x for kv in others.items() for x in kv])
            assert result.returncode == 1
            kind = "gRPC" if flag == "--grpc-listen" else "HTTP"
            assert one_line(result.stderr) == f"tierlog serve: {kind} cannot listen on 127.0.0.1:{port}: Address already in use"
    assert not data.exists()
    file_instead = tmp_path / "a-file"
    file_instead.write_text("")
    result = tierlog("serve", "--data-dir", str(file_instead))
    assert result.returncode == 2 and "is not a folder" in one_line(result.stderr)


def test_serve_with_a_damaged_acls_document_says_so_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "acls.json").write_text("{damaged")
    result = tierlog("serve", "--data-dir", str(data), "--kafka-listen", f"127.0.0.1:{free_port()}",
                     "--grpc-listen", f"127.0.0.1:{free_port()}", "--http-listen", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert one_line(result.stderr).startswith(f"tierlog serve: {data / 'acls.json'} is damaged:")


def test_serve_defaults_and_object_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    defaults = build_parser().parse_args(["serve"])
    assert (defaults.data_dir, defaults.object_store) == ("./tierlog-data", f"file://{tmp_path}/tierlog-objects")
    assert (defaults.kafka_listen, defaults.grpc_listen, defaults.http_listen) == (
        "127.0.0.1:9092", "127.0.0.1:9093", "127.0.0.1:9644")
    for url in ("s3://my-bucket", "s3://my-bucket/tier/prefix", "s3://my-bucket?endpoint_url=http://127.0.0.1:9000",
                "file:///var/lib/tierlog-objects"):
        assert build_parser().parse_args(["serve", "--object-store", url]).object_store == url
