"""The price table: a TOML file users can edit; the default ships with the package."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

DEFAULT_PRICES = "aws-us-east-1.toml"


class CostInputError(Exception):
    """A price table, bench result or workload the cost model cannot use."""


@dataclass(frozen=True)
class Prices:
    source: str
    region: str
    currency: str
    hours_per_month: float
    s3_standard_gb_month: float
    s3_put_per_1000: float
    s3_list_per_1000: float
    s3_get_per_1000: float
    s3_delete_per_1000: float
    ebs_gb_month: float
    cross_az_gb_each_way: float
    instance_type: str
    instance_hourly: float
    instance_mb_per_s: float
    instance_max_disk_gb: float


# (table, key) -> Prices field, for the numbers every table must give.
_NUMBERS = {
    ("s3", "standard_gb_month"): "s3_standard_gb_month",
    ("s3", "put_per_1000"): "s3_put_per_1000",
    ("s3", "list_per_1000"): "s3_list_per_1000",
    ("s3", "get_per_1000"): "s3_get_per_1000",
    ("s3", "delete_per_1000"): "s3_delete_per_1000",
    ("ebs", "gp3_gb_month"): "ebs_gb_month",
    ("network", "cross_az_gb_each_way"): "cross_az_gb_each_way",
    ("instance", "hourly"): "instance_hourly",
    ("instance", "mb_per_s"): "instance_mb_per_s",
    ("instance", "max_disk_gb"): "instance_max_disk_gb",
    ("", "hours_per_month"): "hours_per_month",
}


def _number(table: dict[str, Any], source: str, section: str, key: str) -> float:
    where = f"[{section}] {key}" if section else key
    if key not in table:
        raise CostInputError(f"{source}: missing {where}")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise CostInputError(f"{source}: {where} must be a number of 0 or more, got {value!r}")
    return float(value)


def parse_prices(text: str, source: str) -> Prices:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CostInputError(f"{source}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for (section, key), name in _NUMBERS.items():
        table = data if not section else data.get(section)
        if not isinstance(table, dict):
            raise CostInputError(f"{source}: missing table [{section}]")
        values[name] = _number(table, source, section, key)
    for (section, key), name in _NUMBERS.items():
        if name in ("hours_per_month", "instance_mb_per_s", "instance_max_disk_gb") and values[name] == 0:
            raise CostInputError(f"{source}: {f'[{section}] ' if section else ''}{key} must be above 0")
    instance_type = data["instance"].get("type", "instance")
    return Prices(source=source, region=str(data.get("region", "")), currency=str(data.get("currency", "USD")),
                  instance_type=str(instance_type), **values)


def load_prices(path: str | None) -> Prices:
    """The table at `path`, or the shipped default."""
    if path is None:
        text = resources.files("api.cost").joinpath(DEFAULT_PRICES).read_text()
        return parse_prices(text, DEFAULT_PRICES)
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise CostInputError(f"{path}: {exc.strerror}") from None
    return parse_prices(text, path)
