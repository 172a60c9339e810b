"""The cost model's output: a table, a stacked bar chart (PNG) and JSON."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from .model import CATEGORIES, Workload
from .prices import Prices


def _dollars(value: float) -> str:
    return f"${value:,.0f}"


def print_costs(costs: dict[str, dict[str, float]], workload: Workload, prices: Prices, console: Console) -> None:
    table = Table(title=f"monthly cost, {prices.currency} ({prices.source}): {workload.ingest_mb_per_s:g} MB/s in, "
                        f"{workload.retention_days:g} days kept ({workload.hot_days:g} hot), fan-out "
                        f"{workload.fan_out:g}, {workload.replay_tb_per_month:g} TB replayed, "
                        f"{workload.zones} zones, RF {workload.replication_factor}")
    table.add_column("")
    for design in costs:
        table.add_column(design, justify="right")
    for category in CATEGORIES:
        table.add_row(category, *(_dollars(costs[d][category]) for d in costs))
    table.add_row("total", *(_dollars(sum(costs[d].values())) for d in costs), style="bold")
    console.print(table)


def write_chart(costs: dict[str, dict[str, float]], workload: Workload, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    designs = list(costs)
    figure, axes = plt.subplots(figsize=(8, 5))
    bottoms = [0.0] * len(designs)
    for category in CATEGORIES:
        heights = [costs[d][category] / 1000 for d in designs]
        axes.bar(designs, heights, bottom=bottoms, label=category)
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


def write_json(costs: dict[str, dict[str, float]], workload: Workload, prices: Prices, ratios: dict,
               path: str) -> None:
    document = {"workload": workload.__dict__, "prices": prices.__dict__, "ratios": ratios,
                "monthly": {d: {**c, "total": sum(c.values())} for d, c in costs.items()}}
    text = json.dumps(document, indent=2) + "\n"
    if path == "-":
        print(text, end="")
    else:
        with open(path, "w") as f:
            f.write(text)
