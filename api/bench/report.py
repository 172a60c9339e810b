"""The bench's results: per-phase figures as JSON for scripts, and a table for people."""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy
from rich.console import Console
from rich.table import Table

from .metrics import GB, REQUEST_CLASSES, Counters
from .workloads import Meter

MB = 1e6


def percentiles_ms(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50": None, "p99": None, "p99.9": None}
    p50, p99, p999 = numpy.percentile(numpy.asarray(latencies) * 1000.0, [50, 99, 99.9])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "p99.9": round(float(p999), 3)}


def flow(meter: Meter, seconds: float, latency_name: str) -> dict[str, Any]:
    """Throughput and latency of one side (produce or consume) over one phase."""
    return {
        "bytes": meter.bytes, "messages": meter.messages, "errors": meter.errors,
        "mb_per_s": round(meter.bytes / MB / seconds, 3) if seconds > 0 else 0.0,
        "msgs_per_s": round(meter.messages / seconds, 1) if seconds > 0 else 0.0,
        latency_name: percentiles_ms(meter.latencies),
    }


def per_gb(counters: Counters, gigabytes: float, byte_field: str) -> dict[str, float] | None:
    """Requests by billed class, and bytes moved, per GB of `gigabytes`."""
    if gigabytes <= 0:
        return None
    row = {name: round(counters.requests.get(name, 0.0) / gigabytes, 3) for name in REQUEST_CLASSES}
    row[byte_field] = round(getattr(counters, byte_field) / GB / gigabytes, 4)
    return row


def write_json(result: dict[str, Any], path: str) -> None:
    text = json.dumps(result, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        with open(path, "w") as f:
            f.write(text)


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"tierlog bench: {result['config']['topic']} on {result['server']['object_store']}")
    for column in ("phase", "side", "MB/s", "msgs/s", "p50 ms", "p99 ms", "p99.9 ms", "note"):
        table.add_column(column, justify="left" if column in ("phase", "side", "note") else "right")
    for name, phase in result["phases"].items():
        for side in ("produce", "tail", "replay"):
            row = phase.get(side)
            if row is None:
                continue
            latency = row.get("latency_ms") or row.get("e2e_latency_ms") or {}
            note = ""
            if side == "replay":
                note = f"{row['remote_fraction'] * 100:.0f}% remote" + ("" if row["complete"] else ", cut")
            table.add_row(name.replace("replay_", ""), side, _cell(row["mb_per_s"]), _cell(row["msgs_per_s"], 0),
                          _cell(latency.get("p50")), _cell(latency.get("p99")), _cell(latency.get("p99.9")), note)
    console.print(table)
    store = result["object_store"]
    requests = Table(title="object store requests and bytes")
    for column in ("per", *REQUEST_CLASSES, "bytes"):
        requests.add_column(column, justify="left" if column == "per" else "right")
    for key, label, byte_field in (("per_gb_ingested", "GB ingested, whole run", "upload_bytes"),
                                   ("per_gb_replayed_cold", "GB replayed cold", "remote_get_bytes"),
                                   ("per_gb_replayed_warm", "GB replayed warm", "remote_get_bytes")):
        row = store.get(key)
        if row is not None:
            requests.add_row(label, *(_cell(row[name]) for name in REQUEST_CLASSES), f"{row[byte_field]:.3f} GB")
    console.print(requests)
    if store.get("ratios_error"):
        console.print(f"[yellow]cost ratios not available: {store['ratios_error']}[/yellow]")
