"""The monthly cost of a workload in three designs, from a price table and the object-store
request and byte ratios that `tierlog bench` measured.

Designs (all keep `retention_days` of data; readers and writers spread over the zones):
- all-local: Kafka without tiering. Every replica on EBS for the whole retention.
- tiered: the hot tier replicated on EBS for `hot_days`, every segment once in S3 Standard
  (which spreads it over zones itself) for the whole retention; replays read S3.
- object store: diskless, all data in S3 only. Writers in each zone flush an object every
  `flush_ms`, readers in each zone read each new object once, and the small objects are
  compacted into segments (with the bench's PUTs per GB); nothing crosses zones.

Cross-zone traffic, RF replicas in distinct zones where there are enough (Kafka's
rack-aware placement): producers reach a leader in another zone (Z-1)/Z of the time,
each leader sends to min(RF-1, Z-1) followers in other zones, and consumers (and replays)
read from a leader in another zone (Z-1)/Z of the time. With RF 3 over three zones that is
the public formula: producers 2/3 W, replication 2 W, consumers 2/3 F W."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..bench.metrics import StoreRatios
from .prices import CostInputError, Prices

GB = 1e9
SECONDS_PER_DAY = 86_400
CATEGORIES = ("storage", "requests", "network", "instances")
DESIGNS = ("all-local RF3", "tiered (tierlog)", "object store only")


@dataclass(frozen=True)
class Workload:
    ingest_mb_per_s: float = 50.0
    message_bytes: int = 1024
    retention_days: float = 365.0
    hot_days: float = 7.0
    fan_out: float = 2.0  # tail readers per byte written
    replay_tb_per_month: float = 10.0  # old data re-read from the start of its retention
    zones: int = 3
    replication_factor: int = 3
    flush_ms: float = 250.0  # the object-store design's write interval, per zone

    def check(self) -> None:
        """Raise CostInputError naming the first value that cannot be modelled."""
        for name, value in vars(self).items():
            if not math.isfinite(value):
                raise CostInputError(f"{name} must be a finite number, got {value}")
        if self.ingest_mb_per_s <= 0:
            raise CostInputError(f"ingest must be above 0 MB/s, got {self.ingest_mb_per_s}")
        if self.message_bytes < 1:
            raise CostInputError(f"message size must be at least 1 byte, got {self.message_bytes}")
        if self.retention_days <= 0:
            raise CostInputError(f"retention must be above 0 days, got {self.retention_days}")
        if not 0 <= self.hot_days <= self.retention_days:
            raise CostInputError(f"hot retention ({self.hot_days} days) must be between 0 and the retention "
                                 f"({self.retention_days} days)")
        if self.fan_out < 0 or self.replay_tb_per_month < 0:
            raise CostInputError("fan-out and replay volume must be 0 or more")
        if self.zones < 1 or self.replication_factor < 1:
            raise CostInputError("zones and replication factor must be 1 or more")
        if self.flush_ms <= 0:
            raise CostInputError(f"flush interval must be above 0 ms, got {self.flush_ms}")


@dataclass(frozen=True)
class Volumes:
    """Per month, in GB, what every design moves."""

    ingested: float
    tail_read: float
    replayed: float
    retained: float  # one copy of the whole retention, as stored (indexes included)
    hot: float  # one copy of the hot retention

    @classmethod
    def of(cls, workload: Workload, ratios: StoreRatios, hours_per_month: float) -> Volumes:
        per_second = workload.ingest_mb_per_s * 1e6 / GB
        stored_per_second = per_second * ratios.upload_per_ingest
        return cls(
            ingested=per_second * hours_per_month * 3600,
            tail_read=per_second * hours_per_month * 3600 * workload.fan_out,
            replayed=workload.replay_tb_per_month * 1000,
            retained=stored_per_second * workload.retention_days * SECONDS_PER_DAY,
            hot=stored_per_second * workload.hot_days * SECONDS_PER_DAY,
        )


def cross_zone_gb(workload: Workload, volumes: Volumes) -> float:
    """GB a replicated cluster sends across zones in a month (all-local and tiered alike)."""
    other_zone = (workload.zones - 1) / workload.zones
    followers_elsewhere = min(workload.replication_factor - 1, workload.zones - 1)
    return (volumes.ingested * other_zone + volumes.ingested * followers_elsewhere
            + (volumes.tail_read + volumes.replayed) * other_zone)


def brokers(workload: Workload, prices: Prices, local_gb: float, replicated: bool) -> int:
    """Instances to carry the bytes in and out at `prices.instance_mb_per_s` each and to hold
    `local_gb` (all replicas) at `prices.instance_max_disk_gb` each, in whole sets of one per
    zone (and at least RF for a replicated cluster)."""
    rf = workload.replication_factor if replicated else 1
    replay_mb_per_s = workload.replay_tb_per_month * 1e6 / (prices.hours_per_month * 3600)
    # Replicated: RF copies written, RF-1 sent by leaders; every design serves tail and replay reads.
    load = workload.ingest_mb_per_s * (rf + (rf - 1) + workload.fan_out) + replay_mb_per_s
    count = max(math.ceil(load / prices.instance_mb_per_s), math.ceil(local_gb / prices.instance_max_disk_gb), rf)
    return math.ceil(count / workload.zones) * workload.zones


def _requests(prices: Prices, put: float, get: float, listing: float, delete: float) -> float:
    return (put * prices.s3_put_per_1000 + get * prices.s3_get_per_1000 + listing * prices.s3_list_per_1000
            + delete * prices.s3_delete_per_1000) / 1000


def monthly_costs(workload: Workload, prices: Prices, ratios: StoreRatios) -> dict[str, dict[str, float]]:
    """Design -> category -> dollars per month."""
    workload.check()
    volumes = Volumes.of(workload, ratios, prices.hours_per_month)
    crossing = cross_zone_gb(workload, volumes) * 2 * prices.cross_az_gb_each_way  # out of one zone, into another
    instance_month = prices.instance_hourly * prices.hours_per_month
    uploaded = volumes.ingested * ratios.upload_per_ingest
    segment_requests = dict(put=uploaded * ratios.put_per_gb_uploaded, listing=uploaded * ratios.list_per_gb_uploaded,
                            delete=uploaded * ratios.delete_per_gb_uploaded)
    replay_gets = volumes.replayed * ratios.get_per_gb_replayed
    flushes = prices.hours_per_month * 3600 * 1000 / workload.flush_ms * workload.zones
    rf = workload.replication_factor
    return {
        DESIGNS[0]: {
            "storage": volumes.retained * rf * prices.ebs_gb_month,
            "requests": 0.0,
            "network": crossing,
            "instances": brokers(workload, prices, volumes.retained * rf, replicated=True) * instance_month,
        },
        DESIGNS[1]: {
            "storage": volumes.hot * rf * prices.ebs_gb_month + volumes.retained * prices.s3_standard_gb_month,
            "requests": _requests(prices, get=replay_gets, **segment_requests),
            "network": crossing,
            "instances": brokers(workload, prices, volumes.hot * rf, replicated=True) * instance_month,
        },
        DESIGNS[2]: {
            "storage": volumes.retained * prices.s3_standard_gb_month,
            # Small objects written per zone and read once by every zone, then compacted into segments.
            "requests": _requests(prices, put=flushes + segment_requests["put"],
                                  get=flushes * workload.zones + flushes + replay_gets,
                                  listing=segment_requests["listing"], delete=segment_requests["delete"] + flushes),
            "network": 0.0,
            "instances": brokers(workload, prices, 0.0, replicated=False) * instance_month,
        },
    }
