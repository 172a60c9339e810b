"""The monthly cost of a workload in five designs, from a price table and the object-store
request and byte ratios that `tierlog bench` measured.

Designs (all keep `retention_days` of data; clients spread over the zones):
- kafka_all_local: Kafka without tiering. RF replicas on EBS for the whole retention.
- kafka_tiered: Kafka's tiered storage (KIP-405). RF replicas of the hot window on EBS for
  `hot_days`, every segment once in S3 Standard (which spreads it over zones itself) for
  the whole retention, uploads and replays at the bench's requests per GB.
- tierlog: tierlog as built. One copy of the hot window on the disk of the broker that
  leads the partition, every segment once in S3; no replicas, so no replica traffic. Data
  not yet uploaded is in that one copy only: it does not survive the loss of the machine.
- tierlog_bucket_wal: as tierlog, with the write-ahead log in the bucket: every broker PUTs
  one object per `wal_window_ms` (or at the bench's measured rate), the bytes stay in S3
  twice for `wal_fold_minutes` until folded into a segment, the folded objects are deleted,
  and the WAL is read only to restore a lost broker.
- object_store_only: diskless, all data in S3 only. Writers in each zone flush an object
  every `flush_ms`, readers in each zone read each new object once, and the small objects
  are compacted into segments (with the bench's PUTs per GB); nothing crosses zones.

Cross-zone traffic, RF replicas in distinct zones where there are enough (Kafka's
rack-aware placement): producers reach a leader in another zone (Z-1)/Z of the time,
each Kafka leader sends to min(RF-1, Z-1) followers in other zones, and consumers (and
replays) read from a leader in another zone (Z-1)/Z of the time. With RF 3 over three
zones that is the public formula: producers 2/3 W, replication 2 W, consumers 2/3 F W.
The tierlog designs have the same client terms and no replication term."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..bench.metrics import StoreRatios
from .prices import CostInputError, Prices

GB = 1e9
SECONDS_PER_DAY = 86_400
CATEGORIES = ("storage", "requests", "network", "instances")
DESIGNS = ("kafka_all_local", "kafka_tiered", "tierlog", "tierlog_bucket_wal", "object_store_only")

# Line key -> (category, label), in the order the table shows them. Every network line is
# traffic between zones; "object" lines are the object-store design's small objects.
LINES: dict[str, tuple[str, str]] = {
    "local_disk": ("storage", "local disk"),
    "s3_segments": ("storage", "S3 segments"),
    "s3_wal": ("storage", "S3 WAL"),
    "segment_requests": ("requests", "segments"),
    "replay_get": ("requests", "replay GET"),
    "wal_put": ("requests", "WAL PUT"),
    "wal_delete": ("requests", "WAL DELETE"),
    "wal_get": ("requests", "WAL GET"),
    "small_object_put": ("requests", "object PUT"),
    "small_object_get": ("requests", "object GET"),
    "small_object_delete": ("requests", "object DELETE"),
    "cross_zone_producers": ("network", "producers"),
    "cross_zone_replication": ("network", "replication"),
    "cross_zone_consumers": ("network", "consumers"),
    "machines": ("instances", "machines"),
}


def design_names(workload: Workload) -> dict[str, str]:
    """Design key (stable, as in the JSON) -> what the table calls it."""
    rf = workload.replication_factor
    return {
        "kafka_all_local": f"Kafka, all local, RF {rf}",
        "kafka_tiered": f"Kafka, KIP-405 tiered, RF {rf}",
        "tierlog": "tierlog as built",
        "tierlog_bucket_wal": "tierlog with the bucket WAL",
        "object_store_only": "object store only",
    }


@dataclass(frozen=True)
class Workload:
    ingest_mb_per_s: float = 50.0
    message_bytes: int = 1024
    retention_days: float = 365.0
    hot_days: float = 7.0
    fan_out: float = 2.0  # tail readers per byte written
    replay_tb_per_month: float = 10.0  # old data re-read from the start of its retention
    zones: int = 3
    replication_factor: int = 3  # the Kafka designs' copies
    flush_ms: float = 250.0  # the object-store design's write interval, per zone
    wal_window_ms: float = 50.0  # the bucket WAL: one object per broker per window
    wal_fold_minutes: float = 2.0  # the bucket WAL: how long its bytes wait to be folded into a segment

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
        if self.wal_window_ms <= 0:
            raise CostInputError(f"WAL window must be above 0 ms, got {self.wal_window_ms}")
        if self.wal_fold_minutes <= 0:
            raise CostInputError(f"WAL fold time must be above 0 minutes, got {self.wal_fold_minutes}")


@dataclass(frozen=True)
class WalRatios:
    """The bucket WAL's requests per second per broker as a bench run measured them
    (`object_store.ratios.wal_put_per_second`, `wal_delete_per_second`); None where the run
    did not count them, and the model counts them from the window instead."""

    put_per_second: float | None = None
    delete_per_second: float | None = None

    def to_json(self) -> dict[str, float]:
        return {f"wal_{name}": value for name, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class Line:
    """One priced line of a design: how much of what, what it costs a month, and from what."""

    category: str
    quantity: float
    unit: str
    dollars: float
    basis: str

    def to_json(self) -> dict:
        return {"category": self.category, "quantity": self.quantity, "unit": self.unit,
                "dollars": self.dollars, "basis": self.basis}


@dataclass(frozen=True)
class Estimate:
    """Every design's lines, what to call the designs, and what their figures leave unsaid."""

    names: dict[str, str]
    lines: dict[str, dict[str, Line]]
    notes: dict[str, list[str]] = field(default_factory=dict)

    def totals(self) -> dict[str, dict[str, float]]:
        """Design -> category -> dollars per month."""
        return {design: {category: sum(line.dollars for line in lines.values() if line.category == category)
                         for category in CATEGORIES}
                for design, lines in self.lines.items()}


@dataclass(frozen=True)
class Volumes:
    """Per month, in GB, what every design moves."""

    ingested: float
    tail_read: float
    replayed: float
    retained: float  # one copy of the whole retention, as stored (indexes included)
    hot: float  # one copy of the hot retention
    wal_held: float  # what the bucket WAL holds at any time: the bytes not yet folded

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
            wal_held=per_second * workload.wal_fold_minutes * 60,
        )


def cross_zone_gb(workload: Workload, volumes: Volumes, replicated: bool) -> dict[str, float]:
    """GB a cluster sends across zones in a month: producers, replication (Kafka's followers;
    none without replicas) and consumers."""
    other_zone = (workload.zones - 1) / workload.zones
    followers_elsewhere = min(workload.replication_factor - 1, workload.zones - 1) if replicated else 0
    return {"producers": volumes.ingested * other_zone, "replication": volumes.ingested * followers_elsewhere,
            "consumers": (volumes.tail_read + volumes.replayed) * other_zone}


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


def _requests(prices: Prices, put: float = 0.0, get: float = 0.0, listing: float = 0.0,
              delete: float = 0.0) -> float:
    return (put * prices.s3_put_per_1000 + get * prices.s3_get_per_1000 + listing * prices.s3_list_per_1000
            + delete * prices.s3_delete_per_1000) / 1000


def _count(value: float) -> str:
    return f"{value:,.0f}"


def monthly_estimate(workload: Workload, prices: Prices, ratios: StoreRatios,
                     wal: WalRatios | None = None) -> Estimate:
    """Every design's priced lines for a month."""
    workload.check()
    wal = wal or WalRatios()
    month_s = prices.hours_per_month * 3600
    volumes = Volumes.of(workload, ratios, prices.hours_per_month)
    rf = workload.replication_factor
    instance_month = prices.instance_hourly * prices.hours_per_month

    def local_disk(gb: float, copies: int) -> Line:
        return Line("storage", gb * copies, "GB-month", gb * copies * prices.ebs_gb_month,
                    f"{copies} x {_count(gb)} GB on gp3")

    def s3(gb: float, basis: str) -> Line:
        return Line("storage", gb, "GB-month", gb * prices.s3_standard_gb_month, basis)

    def network(replicated: bool) -> dict[str, Line]:
        crossing = cross_zone_gb(workload, volumes, replicated)
        return {f"cross_zone_{part}": Line("network", gb, "GB", gb * 2 * prices.cross_az_gb_each_way,
                                           "out of one zone and into another")
                for part, gb in crossing.items()}

    def machines(count: int, what: str) -> Line:
        return Line("instances", count, "instances", count * instance_month,
                    f"{count} {what} x {prices.instance_type} x {prices.hours_per_month:g} h")

    no_traffic = {key: Line("network", 0.0, "GB", 0.0, "writers and readers stay in their zone")
                  for key in ("cross_zone_producers", "cross_zone_replication", "cross_zone_consumers")}

    # Segments uploaded and replays read back, at the bench's requests per GB.
    uploaded = volumes.ingested * ratios.upload_per_ingest
    seg_put, seg_list, seg_delete = (uploaded * ratios.put_per_gb_uploaded, uploaded * ratios.list_per_gb_uploaded,
                                     uploaded * ratios.delete_per_gb_uploaded)
    segments = Line("requests", seg_put + seg_list + seg_delete, "requests",
                    _requests(prices, put=seg_put, listing=seg_list, delete=seg_delete),
                    f"{_count(uploaded)} GB uploaded x (PUT {ratios.put_per_gb_uploaded:.1f} + LIST "
                    f"{ratios.list_per_gb_uploaded:.1f} + DELETE {ratios.delete_per_gb_uploaded:.1f}) per GB (bench)")
    replay_gets = volumes.replayed * ratios.get_per_gb_replayed
    replay = Line("requests", replay_gets, "requests", _requests(prices, get=replay_gets),
                  f"{_count(volumes.replayed)} GB replayed x {ratios.get_per_gb_replayed:.1f} GET per GB (bench)")
    retained_s3 = s3(volumes.retained, f"{_count(volumes.retained)} GB, the whole retention once")

    tierlog_brokers = brokers(workload, prices, volumes.hot, replicated=False)
    tierlog = {
        "local_disk": local_disk(volumes.hot, 1),
        "s3_segments": retained_s3,
        "segment_requests": segments,
        "replay_get": replay,
        **network(replicated=False),
        "machines": machines(tierlog_brokers, "brokers"),
    }

    # The bucket WAL: one object per window per broker, deleted once folded, read only to restore.
    window_s = workload.wal_window_ms / 1000
    if wal.put_per_second is None:
        wal_puts = tierlog_brokers * month_s / window_s
        put_basis = (f"{tierlog_brokers} brokers x {_count(month_s)} s / {window_s:g} s window = {_count(wal_puts)} "
                     "(formula; a bench's wal_put_per_second replaces it)")
    else:
        wal_puts = tierlog_brokers * wal.put_per_second * month_s
        put_basis = (f"{tierlog_brokers} brokers x {wal.put_per_second:g} PUT/s (bench) x {_count(month_s)} s "
                     f"= {_count(wal_puts)}")
    if wal.delete_per_second is None:
        wal_deletes = wal_puts
        delete_basis = "one per WAL object, once its bytes are folded into a segment"
    else:
        wal_deletes = tierlog_brokers * wal.delete_per_second * month_s
        delete_basis = (f"{tierlog_brokers} brokers x {wal.delete_per_second:g} DELETE/s (bench) x {_count(month_s)} s "
                        f"= {_count(wal_deletes)}")
    with_wal = {
        **tierlog,
        "s3_wal": s3(volumes.wal_held, f"{workload.ingest_mb_per_s:g} MB/s x {workload.wal_fold_minutes:g} min "
                                       "fold: held in the WAL besides the segments until folded"),
        "wal_put": Line("requests", wal_puts, "requests", _requests(prices, put=wal_puts), put_basis),
        "wal_delete": Line("requests", wal_deletes, "requests", _requests(prices, delete=wal_deletes), delete_basis),
        "wal_get": Line("requests", 0.0, "requests", 0.0, "only to restore a lost broker: none in steady state"),
    }

    # Object store only: small objects written per zone and read once by every zone and once
    # by compaction, then deleted; the compacted segments at the bench's ratios.
    flushes = month_s * 1000 / workload.flush_ms * workload.zones
    flush_basis = f"{workload.zones} zones x {_count(month_s)} s / {workload.flush_ms / 1000:g} s flush"
    object_store = {
        "s3_segments": retained_s3,
        "segment_requests": segments,
        "replay_get": replay,
        "small_object_put": Line("requests", flushes, "requests", _requests(prices, put=flushes), flush_basis),
        "small_object_get": Line("requests", flushes * (workload.zones + 1), "requests",
                                 _requests(prices, get=flushes * (workload.zones + 1)),
                                 f"each read by {workload.zones} zones and by compaction"),
        "small_object_delete": Line("requests", flushes, "requests", _requests(prices, delete=flushes),
                                    "each once compacted"),
        **no_traffic,
        "machines": machines(brokers(workload, prices, 0.0, replicated=False), "agents"),
    }

    lines = {
        "kafka_all_local": {
            "local_disk": local_disk(volumes.retained, rf),
            **network(replicated=True),
            "machines": machines(brokers(workload, prices, volumes.retained * rf, replicated=True), "brokers"),
        },
        "kafka_tiered": {
            "local_disk": local_disk(volumes.hot, rf),
            "s3_segments": retained_s3,
            "segment_requests": segments,
            "replay_get": replay,
            **network(replicated=True),
            "machines": machines(brokers(workload, prices, volumes.hot * rf, replicated=True), "brokers"),
        },
        "tierlog": tierlog,
        "tierlog_bucket_wal": with_wal,
        "object_store_only": object_store,
    }
    notes = {
        "kafka_tiered": ["its uploads and replays are priced at tierlog's measured requests per GB"],
        "tierlog": ["one copy of what is not yet uploaded, on one broker's disk: it does not survive the loss "
                    "of that machine"],
        "tierlog_bucket_wal": [f"WAL PUTs a month: {put_basis}; as many DELETEs (free on S3) once folded; "
                               f"{_count(volumes.wal_held)} GB held twice in S3 until folded "
                               f"({workload.wal_fold_minutes:g} min)",
                               "acknowledged writes are in the bucket: a lost machine loses none of them; "
                               "acks wait up to a window and a PUT"],
        "object_store_only": ["produce latency: up to a flush interval and a PUT"],
    }
    return Estimate(names=design_names(workload), lines=lines, notes=notes)


def monthly_costs(workload: Workload, prices: Prices, ratios: StoreRatios,
                  wal: WalRatios | None = None) -> dict[str, dict[str, float]]:
    """Design -> category -> dollars per month."""
    return monthly_estimate(workload, prices, ratios, wal).totals()
