"""What the client-bounds tests read from the broker process (/proc, /metrics) and the raw
frames they send."""

from __future__ import annotations

import os
import re
import struct

from ..server import http_get
from .cluster import KafkaServer

METADATA_V9_HEADER = struct.Struct(">hhih")  # api key, version, correlation id, client id length
CLIENT_ID = b"bounds-test"


def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(server: KafkaServer, sample: str) -> float:
    """The value of one sample of /metrics, as `name` or `name{label="value"}`; 0 if absent."""
    _, text = http_get(f"{server.http_url}/metrics")
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def metadata_v9_frame(names: list[bytes], correlation_id: int) -> bytes:
    """A Metadata v9 request for `names` (no auto-creation), written by hand: kio would take
    seconds to build millions of entities."""
    header = METADATA_V9_HEADER.pack(3, 9, correlation_id, len(CLIENT_ID)) + CLIENT_ID + b"\x00"
    topics = b"".join(_uvarint(len(name) + 1) + name + b"\x00" for name in names)
    body = _uvarint(len(names) + 1) + topics + b"\x00\x00\x00" + b"\x00"  # three booleans, no tags
    return struct.pack(">i", len(header) + len(body)) + header + body
