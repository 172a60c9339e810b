"""The cost model's output: a table, a stacked bar chart (PNG) and JSON."""

from __future__ import annotations

import json
import textwrap

from rich.console import Console
from rich.table import Table

from .model import CATEGORIES, LINES, Estimate, Workload
from .prices import Prices


def _dollars(value: float) -> str:
    # Cents where whole dollars would show a small cost as nothing.
    return f"${value:,.2f}" if 0 < value < 10 else f"${value:,.0f}"


def print_costs(estimate: Estimate, workload: Workload, prices: Prices, console: Console) -> None:
    table = Table(title=f"monthly cost, {prices.currency} ({prices.source}): {workload.ingest_mb_per_s:g} MB/s in, "
                        f"{workload.retention_days:g} days kept ({workload.hot_days:g} hot), fan-out "
                        f"{workload.fan_out:g}, {workload.replay_tb_per_month:g} TB replayed, "
                        f"{workload.zones} zones, RF {workload.replication_factor} (Kafka), "
                        f"WAL window {workload.wal_window_ms:g} ms, fold {workload.wal_fold_minutes:g} min")
    designs = list(estimate.lines)
    totals = estimate.totals()
    table.add_column("", no_wrap=True)
    for design in designs:
        table.add_column(estimate.names[design], justify="right")
    for category in CATEGORIES:
        table.add_row(category, *(_dollars(totals[d][category]) for d in designs), style="bold")
        for key, (line_category, label) in LINES.items():
            if line_category != category or not any(key in estimate.lines[d] for d in designs):
                continue
            cells = []
            for design in designs:
                line = estimate.lines[design].get(key)
                if line is None:
                    cells.append("-")
                elif line.unit == "instances":
                    cells.append(f"{line.quantity:,.0f}")
                else:
                    cells.append(_dollars(line.dollars))
            table.add_row(f"  {label}", *cells, style="dim")
    table.add_row("total", *(_dollars(sum(totals[d].values())) for d in designs), style="bold")
    console.print(table)
    for design in designs:
        for note in estimate.notes.get(design, []):
            console.print(f"{estimate.names[design]}: {note}", highlight=False)


def write_chart(estimate: Estimate, workload: Workload, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    totals = estimate.totals()
    designs = list(totals)
    labels = [textwrap.fill(estimate.names[d], 16) for d in designs]
    figure, axes = plt.subplots(figsize=(10, 5.5))
    bottoms = [0.0] * len(designs)
    for category in CATEGORIES:
        heights = [totals[d][category] / 1000 for d in designs]
        axes.bar(labels, heights, bottom=bottoms, label=category)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    for x, total in enumerate(bottoms):
        axes.annotate(f"${total:,.0f}k", (x, total), ha="center", va="bottom")
    axes.set_ylabel("thousand dollars per month")
    axes.set_title(f"{workload.ingest_mb_per_s:g} MB/s, {workload.retention_days:g} days kept, "
                   f"fan-out {workload.fan_out:g}, {workload.zones} zones")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_json(estimate: Estimate, workload: Workload, prices: Prices, ratios: dict, path: str) -> None:
    totals = estimate.totals()
    document = {"workload": workload.__dict__, "prices": prices.__dict__, "ratios": ratios,
                "designs": estimate.names,
                "monthly": {d: {**c, "total": sum(c.values())} for d, c in totals.items()},
                "lines": {d: {key: lines[key].to_json() for key in LINES if key in lines}
                          for d, lines in estimate.lines.items()},
                "notes": estimate.notes}
    text = json.dumps(document, indent=2) + "\n"
    if path == "-":
        print(text, end="")
    else:
        with open(path, "w") as f:
            f.write(text)
