"""The figures of the previous committed run: the "before" column of results.md's before/after.

They come from ``bench/results.md`` as committed in 03822f8 ("bench: results of the current code
(full default run) and the 1M-event memory run after the cache fix": ``python -m bench`` with the
default parameters of the time, 2026-11-25, 2 shared cores, 8.2 min) and from
``bench/memory-1m/results.md`` as committed there (``python -m bench --only memory --memory-events
1000000 --out bench/memory-1m``, 13.7 min). Both ran on the code of that commit; ``CHANGES`` lists
the product changes on the measured paths since, ``METHOD_CHANGES`` those of the bench. Read them
with ``git show 03822f8:bench/results.md`` and ``git show 03822f8:bench/memory-1m/results.md``.

The numbers are copied by hand, not measured by this code: they are constants on purpose, so that
the next run can be compared with them. Any later run of that kind on the same machine shares its
cores with other work, under another load; only large differences between the two columns mean
anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

COMMIT = "03822f8"  # the commit whose bench/results.md holds these figures
MACHINE = "2 cores (AMD EPYC)"  # that run's CPU, from its header line
CHANGES_COMMIT = "the commits after 03822f8"  # where the product changes below were made

# The product changes on the measured paths between the previous run and this code.
CHANGES = (
    "`replicator/publisher.py`: Kafka acks are collected without stopping the source: each source unit "
    "(a transaction, a snapshot chunk) keeps its records' futures, and units are confirmed in order "
    "once all their acks are in. Before, the publisher waited for every ack (a flush) every 50 ms "
    "(`flush_interval_s`) and after each snapshot chunk, which stalled decoding for a broker round "
    "trip each time; it now waits only when `max_pending_bytes` of records are unacknowledged, when "
    "the source is idle, and on stop",
    "`connectors/sinks/dynamodb.py`: 16 requests in flight per apply process (was 8), configurable as "
    "`[[targets]] concurrency`; botocore's client-side parameter validation is off (the sink builds "
    "the items; DynamoDB validates them anyway). Measured during development on dynalite at 200 "
    "checkpoints/s in one process: p99 lag 5.7 s with 8, 2.6 s with 16, 6.6 s with 32 (the GIL: more "
    "threads starve the publisher in the same process)",
    "`replicator/applier.py`, for the roles of `replicator run --role capture|apply`: an applier reads "
    "the positions of the partitions it gains before applying them and writes a partition's position "
    "only after Kafka accepted the offset commit; dead letters are kept per partition. Not a speed "
    "change by intent, but on the measured path",
)
# The bench's own changes since that run that change what a figure measures.
METHOD_CHANGES = (
    "`bench/lag.py`: figure 3 runs on moto and on dynalite, each with capture and apply in one process "
    '("all") and split into a `--role capture` and a `--role apply` process ("split"), beside a '
    "floor (the same writers at the same rate writing straight into that DynamoDB through "
    "`DynamoDBSaver`, each `put` / `put_writes` timed); the default load is 200 checkpoints/s (was "
    "250) for 20 s (was 30), at the issue's goal. The previous run had moto and one process only",
)

# Parameters of the previous run (the defaults of `python -m bench` then), to tell whether this
# run's sizes are comparable.
PARAMS: dict[str, Any] = {
    "quick": False,
    "capture_events": 200_000,
    "lag_seconds": 30.0,
    "lag_rate": 250.0,
    "lag_low_rate": 80.0,
    "memory_events": 100_000,
    "scaleout_events": 40_000,
    "consumers": [1, 2, 4],
}

# 1-minute load average just before each figure (other work on the machine).
LOAD = {"copy": 0.7, "capture": 2.9, "lag": 2.1, "memory": 3.6, "scaleout": 4.0}

# 1. Initial copy vs savers' API.
COPY_RATIO = 8.77
COPY_RATE = 263.0  # replicator, checkpoints/s
COPY_BASELINE_RATE = 30.0  # savers' API, checkpoints/s

# 2. Capture: PostgresSource alone vs pg_recvlogical, and the publisher over the source.
CAPTURE_RATIO = 0.91
CAPTURE_SOURCE_RATE = 58_595.0  # events/s
CAPTURE_RECVLOGICAL_RATE = 64_617.0  # events/s
CAPTURE_PUBLISH_RATE = 16_156.0  # events/s, produced and acknowledged
# The prototype of bench/proposed.py in that run, on the same WAL: the publisher with a partition
# cache and linger_ms=20 (not in the product; it subclasses the publisher of its time).
PROTOTYPE_PUBLISH_RATE = 21_525.0  # events/s

# 3. Lag at the paced 250 and 80 checkpoints/s. Both ran on moto, with capture and apply in one
# `replicator run` process (this run's store "moto", roles "all"). rate: measured checkpoints/s;
# p50..max and stages (commit to produced, produced to polled, polled to durable) in ms; cpu in
# cores while writing; lookups: the sink's BatchGetItem keys over the whole run.
LAG: tuple[dict[str, Any], ...] = (
    {
        "paced": 250.0,
        "rate": 250.0,
        "p50": 3887.0,
        "p90": 4937.0,
        "p99": 5842.0,
        "max": 6207.0,
        "drain_s": 2.9,
        "stages_p50": [29.0, 2459.0, 1389.0],
        "stages_p99": [308.0, 4628.0, 2872.0],
        "cpu": {"writers": 0.55, "daemon": 0.49, "moto": 0.49, "postgres": 0.18, "broker": 0.03},
        "conversations": 940,
        "lookups": 5_640,
        "batches": 27,
        "batches_looked_up": 27,
    },
    {
        "paced": 80.0,
        "rate": 79.0,
        "p50": 152.0,
        "p90": 360.0,
        "p99": 2283.0,
        "max": 2347.0,
        "drain_s": 0.3,
        "stages_p50": [12.0, 46.0, 89.0],
        "stages_p99": [46.0, 1698.0, 568.0],
        "cpu": {"moto": 0.27, "daemon": 0.24, "writers": 0.18, "postgres": 0.06, "broker": 0.02},
        "conversations": 300,
        "lookups": 1_800,
        "batches": 110,
        "batches_looked_up": 97,
    },
)

# 4. Memory over a backlog.
MEMORY_PEAK_MIB = 171.0
MEMORY_EVENTS = 100_031
MEMORY_GROWTH = 0.03  # peak of the 2nd half vs the 1st
# The 1M-event run (bench/memory-1m/results.md in 03822f8): peak 242 MiB over 999,975 events,
# 200 / 236 / 236 / 221 MiB at 25 / 50 / 75 / 100% applied, 2nd half +7%, in 13.7 min.
MEMORY_1M_PEAK_MIB = 242.0
MEMORY_1M_EVENTS = 999_975
MEMORY_1M_GROWTH = 0.07
MEMORY_1M_MINUTES = 13.7
MEMORY_1M_LEVEL_MIB = 236.0  # its RSS at 50% and 75% applied (bench/memory.py quotes it)

# 5. Scale-out, DynamoDB sink: records/s by consumer count.
SCALEOUT = {1: 1_701.0, 2: 1_529.0, 4: 1_389.0}

# Profile shares of the previous run (py-spy, % of samples, inclusive; see "Profiles" in that
# results.md). The capture profile is of the publisher thread; the daemon's of figure 4's backlog.
PROFILE_CAPTURE = {
    "PostgresSource._stream": 46.7,
    "KafkaProducer.send": 39.1,
    "Publisher._flush": 3.4,  # waiting for every ack; Publisher._settle since
}
PROFILE_DAEMON = {
    "BaseClient._make_api_call": 64.3,
    "Applier._apply": 14.3,
    "DynamoDBSink._prefetch": 0.5,  # the blob prefetch; connectors/langgraph/batch.py _Planner since
}
# BatchGetItem keys per one-turn conversation of the app under the lag load (5,640 over 940
# conversations at 250 checkpoints/s, 1,800 over 300 at 80).
LOOKUPS_PER_CONVERSATION = 6.0

MEMORY_1M_RESULTS = Path(__file__).resolve().parent / "memory-1m" / "results.md"
_HEADLINE = re.compile(r"peak (\d+) MiB over ([\d,]+) events")


def memory_1m(path: Path = MEMORY_1M_RESULTS) -> dict[str, Any] | None:
    """The committed 1M-event run: its peak, its size, and whether it is still the one of 03822f8.

    None when there is no such file. ``predates`` is True while the file still holds the headline
    of the run of 03822f8 (made on the code before ``CHANGES``); a rerun replaces it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    match = _HEADLINE.search(text)
    if match is None:
        return None
    peak, events = float(match.group(1)), int(match.group(2).replace(",", ""))
    predates = (peak, events) == (MEMORY_1M_PEAK_MIB, MEMORY_1M_EVENTS)
    return {"peak": peak, "events": events, "predates": predates}
