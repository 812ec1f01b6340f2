"""Prometheus metrics of a running daemon, in a registry of its own.

Counters and positions are read from the stages' own stats at scrape time (nothing is counted
twice and the hot paths carry no metric calls); latencies are observed once per applied batch.
The lag gauges come from the daemon's periodic status report, the same object ``/status`` and
``replicator status --json`` return. Names follow Prometheus conventions: ``_total`` counters,
``_seconds`` and ``_bytes`` units, base units only. Nothing here carries a secret.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from replicator.lifecycle import StageState

PREFIX = "langgraph_replicator"

# Every metric name this module exports: the alert rules and the dashboard are checked against it.
METRIC_NAMES = (
    f"{PREFIX}_up",
    f"{PREFIX}_ready",
    f"{PREFIX}_caught_up",
    f"{PREFIX}_source_head_lsn",
    f"{PREFIX}_slot_confirmed_lsn",
    f"{PREFIX}_slot_retained_wal_bytes",
    f"{PREFIX}_capture_lag_bytes",
    f"{PREFIX}_snapshot_rows_total",
    f"{PREFIX}_snapshot_rows_estimate",
    f"{PREFIX}_published_events_total",
    f"{PREFIX}_published_records_total",
    f"{PREFIX}_published_bytes_total",
    f"{PREFIX}_applied_events_total",
    f"{PREFIX}_applied_batches_total",
    f"{PREFIX}_apply_lag_events",
    f"{PREFIX}_apply_lag_bytes",
    f"{PREFIX}_apply_lag_seconds",
    f"{PREFIX}_dead_letters_total",
    f"{PREFIX}_paused_threads",
    f"{PREFIX}_log_resets_total",
    f"{PREFIX}_stage_restarts_total",
    f"{PREFIX}_stage_running",
    f"{PREFIX}_apply_batch_duration_seconds",
    f"{PREFIX}_end_to_end_lag_seconds",
    f"{PREFIX}_migration_phase",
    f"{PREFIX}_migration_epoch",
    f"{PREFIX}_migration_percent_on_target",
    f"{PREFIX}_switch_pause_seconds",
    f"{PREFIX}_auto_cutover_armed",
    f"{PREFIX}_auto_cutover_attempts_total",
)


class _StateCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        view = self.snapshot()
        report: dict[str, Any] = view.get("report") or {}
        publisher = view.get("publisher")
        appliers: dict[str, Any] = view.get("appliers") or {}
        stages: dict[str, Any] = view.get("stages") or {}

        def gauge(
            name: str, doc: str, value: float, labels: dict[str, str] | None = None
        ) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels or {}))
            family.add_metric(list((labels or {}).values()), value)
            return family

        yield gauge("up", "1 while the daemon process runs.", 1)
        yield gauge("ready", "1 when connected and no stage is failing.", 1 if view.get("ready") else 0)
        if report:
            source = report["source"]
            slot = source["slot"]
            yield gauge(
                "caught_up", "1 when every target applied what the source had.", int(report["caught_up"])
            )
            yield gauge("source_head_lsn", "Source head position.", float(source["head_position"]))
            yield gauge(
                "slot_confirmed_lsn",
                "Position the source confirmed (Postgres: the slot's confirmed flush position).",
                float(slot.get("confirmed_position", 0)),
            )
            yield gauge(
                "slot_retained_wal_bytes", "WAL the slot keeps on the source.", slot.get("retained_bytes", 0)
            )
            yield gauge(
                "capture_lag_bytes", "Source head minus slot confirmed.", report["lag"]["capture"]["bytes"]
            )
            yield gauge(
                "snapshot_rows_estimate",
                "Rows the initial copy expects.",
                source["snapshot"]["total_estimate"],
            )
            for metric, doc, key in (
                (
                    "apply_lag_events",
                    "Data events produced but not yet applied.",
                    "events",
                ),
                ("apply_lag_bytes", "Source head minus the target's applied position.", "bytes"),
                ("apply_lag_seconds", "Age of the oldest change not yet applied.", "seconds"),
            ):
                family = GaugeMetricFamily(f"{PREFIX}_{metric}", doc, labels=["target"])
                for name, target in report["targets"].items():
                    family.add_metric([name], float(target["lag"][key]))
                yield family
            paused = GaugeMetricFamily(
                f"{PREFIX}_paused_threads", "Threads held after a dead letter.", labels=["target"]
            )
            for name, target in report["targets"].items():
                paused.add_metric([name], len(target["dead_letters"]["paused_threads"]))
            yield paused
        migration = report.get("migration") or {}
        if migration.get("available"):
            from replicator.migration import Phase

            phases = GaugeMetricFamily(
                f"{PREFIX}_migration_phase", "1 for the migration's current phase.", labels=["phase"]
            )
            for phase in Phase:
                phases.add_metric([phase.value], 1 if migration["phase"] == phase.value else 0)
            yield phases
            yield gauge("migration_epoch", "Switches committed so far.", migration["epoch"])
            yield gauge(
                "migration_percent_on_target",
                "Share of threads (by hash) the app reads and writes on the target.",
                migration["percent_on_target"],
            )
        if publisher is not None:
            stats = publisher.stats
            for metric, doc, value in (
                ("published_events_total", "Data events acknowledged by Kafka.", stats.events),
                (
                    "published_records_total",
                    "Kafka records sent (pieces and control records too).",
                    stats.records,
                ),
                ("published_bytes_total", "Bytes of record values sent.", stats.bytes),
            ):
                counter = CounterMetricFamily(f"{PREFIX}_{metric.removesuffix('_total')}", doc)
                counter.add_metric([], value)
                yield counter
            rows = CounterMetricFamily(f"{PREFIX}_snapshot_rows", "Rows copied by the initial snapshot.")
            rows.add_metric([], getattr(publisher.source, "snapshot_rows", 0))
            yield rows
        applied = CounterMetricFamily(
            f"{PREFIX}_applied_events", "Data events durable in a target.", labels=["target"]
        )
        batches = CounterMetricFamily(
            f"{PREFIX}_applied_batches", "Batches durable in a target.", labels=["target"]
        )
        dead = CounterMetricFamily(
            f"{PREFIX}_dead_letters", "Events sent to the dead-letter topic.", labels=["target"]
        )
        resets = CounterMetricFamily(
            f"{PREFIX}_log_resets", "Times the Kafka log was found to have lost records.", labels=["stage"]
        )
        for name, applier in appliers.items():
            applied.add_metric([name], applier.stats.events)
            batches.add_metric([name], applier.stats.batches)
            dead.add_metric([name], applier.stats.dead_letters)
            resets.add_metric([f"applier:{name}"], applier.stats.log_resets)
        if publisher is not None:
            resets.add_metric(["publisher"], publisher.stats.log_resets)
        yield from (applied, batches, dead, resets)
        restarts = CounterMetricFamily(
            f"{PREFIX}_stage_restarts", "Stage restarts after errors.", labels=["stage"]
        )
        running = GaugeMetricFamily(f"{PREFIX}_stage_running", "1 while a stage runs.", labels=["stage"])
        for name, stage in stages.items():
            restarts.add_metric([name], stage.restarts)
            running.add_metric([name], 1 if stage.state is StageState.RUNNING else 0)
        yield from (restarts, running)
        auto = view.get("auto_cutover")
        if auto is not None:
            yield gauge(
                "auto_cutover_armed",
                "1 while [cutover] auto waits for the gate to hold (0: off, done or switching).",
                1 if auto.armed else 0,
            )
            attempts = CounterMetricFamily(
                f"{PREFIX}_auto_cutover_attempts",
                "Unattended cutovers started, by result.",
                labels=["result"],
            )
            for result, count in auto.attempts.items():
                attempts.add_metric([result], count)
            yield attempts


class Metrics:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        disable_created_metrics()  # `_created` series only add noise to every histogram
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_StateCollector(snapshot))
        self.batch_seconds = Histogram(
            f"{PREFIX}_apply_batch_duration_seconds",
            "Time to make one batch durable in a target.",
            ["target"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.end_to_end = Histogram(
            f"{PREFIX}_end_to_end_lag_seconds",
            "Source commit to durable in the target, newest change of each batch.",
            ["target"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )

        self.switch_pause = Histogram(
            f"{PREFIX}_switch_pause_seconds",
            "Write pause of each cutover or rollback the daemon saw (fence to release).",
            ["to"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        for phase in ("cut_over", "rolled_back"):  # exported from the start, count 0
            self.switch_pause.labels(phase)
        self._switches_seen: set[tuple[float, str]] | None = None

    def observe_switches(self, history: list[dict[str, Any]]) -> None:
        """Each switch in the record's history once; those before the daemon started are skipped
        (a restarted daemon must not count them again)."""
        switches = {(float(h["at"]), str(h["to"])): h for h in history if h.get("pause_ms") is not None}
        if self._switches_seen is None:
            self._switches_seen = set(switches)
            return
        for key in sorted(switches.keys() - self._switches_seen):
            self.switch_pause.labels(key[1]).observe(float(switches[key]["pause_ms"]) / 1000)
            self._switches_seen.add(key)

    def batch_observer(self, target: str) -> Callable[[int, float, float], None]:
        import time

        def observe(events: int, seconds: float, newest_commit_ts: float) -> None:
            if events:
                self.batch_seconds.labels(target).observe(seconds)
            if newest_commit_ts:
                self.end_to_end.labels(target).observe(max(0.0, time.time() - newest_commit_ts))

        return observe

    def render(self) -> bytes:
        return generate_latest(self.registry)
