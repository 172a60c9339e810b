"""Where the cost model's request and byte ratios come from: a `tierlog bench --json`
result, or the counters of a running server's /metrics (all it did since it started)."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from importlib import resources

from ..bench.metrics import Counters, MetricsError, StoreRatios, scrape, store_ratios
from .model import WalRatios
from .prices import CostInputError

# A measured run shipped as the default, so `tierlog cost` answers with no arguments; its
# command is in docs/cost.md ("Worked example").
MEASURED_BENCH = "measured-s3-model.json"


def measured_from_bench(path: str | None) -> tuple[StoreRatios, WalRatios]:
    """The store ratios of a bench result at `path` (or of the shipped measured run) and the
    bucket WAL's request rates where the run counted them (`wal_put_per_second` and
    `wal_delete_per_second`, per broker, beside the other ratios; absent or null: not counted)."""
    try:
        if path is None:
            path = MEASURED_BENCH
            result = json.loads(resources.files("api.cost").joinpath(MEASURED_BENCH).read_text())
        else:
            with open(path) as f:
                result = json.load(f)
    except OSError as exc:
        raise CostInputError(f"{path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise CostInputError(f"{path}: not JSON ({exc})") from None
    store = result.get("object_store") if isinstance(result, dict) else None
    if not isinstance(store, dict):
        raise CostInputError(f"{path}: not a `tierlog bench --json` result (no object_store section)")
    ratios = store.get("ratios")
    if not isinstance(ratios, dict):
        why = store.get("ratios_error", "no ratios")
        raise CostInputError(f"{path}: the bench run measured no cost ratios: {why}")
    values = {}
    for field in fields(StoreRatios):
        value = ratios.get(field.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise CostInputError(f"{path}: object_store.ratios.{field.name} must be a number of 0 or more, "
                                 f"got {value!r}")
        values[field.name] = float(value)
    wal: dict[str, float] = {}
    for name in ("put_per_second", "delete_per_second"):
        value = ratios.get(f"wal_{name}")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
            raise CostInputError(f"{path}: object_store.ratios.wal_{name} must be a number of 0 or more, "
                                 f"got {value!r}")
        wal[name] = float(value)
    return StoreRatios(**values), WalRatios(**wal)


def ratios_from_metrics(url: str) -> StoreRatios:
    try:
        counters = scrape(url)
    except MetricsError as exc:
        raise CostInputError(f"{url}: {exc}") from None
    return ratios_of_server(counters, url)


def ratios_of_server(counters: Counters, url: str) -> StoreRatios:
    """Ratios from one scrape of a server's counters (all it did since it started)."""
    try:
        ratios = store_ratios(counters, counters)
    except MetricsError as exc:
        raise CostInputError(f"{url}: {exc}") from None
    # Uploads count since the process started, the remote tier's size is all of it: they
    # compare only for a server that tiered everything it holds (indexes add a few percent).
    if not 1.0 <= ratios.upload_per_ingest <= 1.5:
        raise CostInputError(
            f"{url}: {ratios.upload_per_ingest:.3f} bytes uploaded per byte in the remote tier: the server "
            "restarted with data already tiered, or retention deleted some; use a `tierlog bench --json` result")
    return ratios
