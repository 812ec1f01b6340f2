"""The figures of the previous committed run: the "before" column of results.md's before/after.

They come from ``bench/results.md`` as committed in f1c7dde ("bench: results regenerated (figures
1-5 with the lag figure on moto and dynalite, both process layouts and floors; ...)": ``python -m
bench --only copy capture lag memory scaleout`` with the default parameters of the time,
2026-12-01, 2 shared cores (Intel Xeon), 17.5 min), on the code of that commit. The same commit
holds ``bench/copy-command/results.md`` (figure 8) and ``bench/sqlite-capture/results.md``
(figure 9), not compared here. Read them with ``git show f1c7dde:bench/results.md``.

The 1M-event memory run was not rerun then: ``bench/memory-1m/results.md`` is still the one
committed in 03822f8 (``python -m bench --only memory --memory-events 1000000 --out
bench/memory-1m``, 2026-11-25, 2 cores (AMD EPYC), 13.7 min; ``git show
03822f8:bench/memory-1m/results.md``), hence the ``MEMORY_1M_*`` constants and their commit.

``CHANGES`` lists the product changes on the measured paths since f1c7dde, ``METHOD_CHANGES``
those of the bench. The numbers are copied by hand, not measured by this code: they are constants
on purpose, so that the next run can be compared with them. Any later run of that kind on the
same machine shares its cores with other work, under another load; only large differences
between the two columns mean anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

COMMIT = "f1c7dde"  # the commit whose bench/results.md holds these figures
COMMAND = "python -m bench --only copy capture lag memory scaleout"  # how that run was made
MACHINE = "2 cores (Intel(R) Xeon(R) Processor)"  # that run's CPU, from its header line
CHANGES_COMMIT = "the commits after f1c7dde"  # where the product changes below were made

# The product changes on the measured paths between the previous run and this code.
CHANGES = (
    "`replicator/publisher.py` + `replicator/codec.py`: a thread's consecutive changes travel as one "
    "Kafka record (format `lgr-v: 2`, a msgpack array of events; up to 128 KiB, read within "
    "`record_linger_s` = 10 ms; sent at the latest at every settle, before a control event, at a unit "
    "with a resume token, and when the source is idle), because kafka-python's cost is per record (in "
    "the capture profile of the run of f1c7dde `KafkaProducer.send` was 42.8% of the publisher "
    "thread). A unit is confirmed only after every record holding one of its events is acknowledged "
    "(the record is counted in the earliest unit it holds events of); recommendation 5 of the run of "
    "f1c7dde. Measured during development with the capture figure's WAL (60,000 events): publisher "
    "path 7,140 -> 12,220-17,600 events/s (`record_linger_s` 10 ms), 20,100 with 50 ms",
    "`connectors/sources/postgres/no_blob.py` + `connectors/langgraph/batch.py`: the Postgres source "
    "marks, in a streamed checkpoint whose parent it read in an earlier transaction, the channels with "
    "a version newer than the parent's and no blob row read (consumed triggers, `__start__`), and "
    "keeps the mark while the version stays; the planner does not look those up and caches them as "
    "absent (recommendation 6 of the run of f1c7dde). Measured during development on dynalite at 80 "
    "checkpoints/s, one process: blob lookups per conversation 6.0 -> 0.0; p99 239-264 ms with marks "
    "vs 283-287 ms without (floor p99 176-234 ms in the same runs), the batch's apply median 87-94 vs "
    "106 ms",
    "`replicator/applier.py`: records are polled so that a batch holds about `batch_events` events "
    "(the ratio of events per record seen in the last batches), since a record may now hold many "
    "events. Not a speed change by intent; it keeps the daemon's memory bounded (the backlog test's "
    "peak RSS: 282 MiB without it, 234-245 MiB with it, 207 MiB before batching)",
    "`replicator/allocator.py`, `connectors/sources/postgres/no_blob.py`, `replicator/offset_log.py`, "
    "the blob cache, `replicator/applier.py` (commits 5ca1c63 and b473a0e, after the other figures "
    "of this run: figure 4 was rerun on 5ca1c63, bench/memory-1m/ on b473a0e): the daemon fixes "
    "glibc's mapping threshold at 64 KiB and "
    "hands free pages back every 5 s; the no-blob marks keep at most 16 MiB (4,096 chains; a "
    "marked checkpoint kept encoded); the heartbeat and batched-record offsets are integer arrays; "
    "the blob cache is 32 MiB by default (`blob_cache_mb`, was 64); the applier sizes its polls by "
    "the records that hold data only (a partition's tail of heartbeats had let the next poll take "
    "every buffered data record: the spike at the end of the 1M run, 243 MiB on 5ca1c63, gone on "
    "b473a0e). Measured during development, "
    "figure 4 at 300k events, peak RSS: 251-253 MiB before; 241 without marks; 244 with the "
    "threshold alone, 253 with the trim alone, 219 with both; 222 with a 16 MiB cache",
)
# Commits since the previous run that touched the measured paths without meaning to change them.
OTHER_CHANGES = (
    "the Postgres source's json/jsonb columns are decoded by one helper shared with the SQLite source "
    "(6233d03: the same msgspec decoder with the same `json.loads` fallback), and the publisher's "
    "open unit is built plainly (9c858ec)"
)
# The bench's own changes since that run that change what a figure measures.
METHOD_CHANGES = (
    "`bench/__main__.py`, `bench/env.py` (`wait_quiet`): before each figure the bench now waits (up to "
    "3 minutes) until the machine is quiet, under 20% of its CPU busy over 2 s, and reports that busy "
    "share and the wait; the previous run reported the 1-minute load average only (still recorded, "
    "last column below)",
    "`bench/lag.py`: the floor's `DynamoDBSaver` is built as the DynamoDB target builds it "
    "(`DynamoDBSink.saver()`: the sink's botocore config, adaptive retries, keep-alive, no client-side "
    "parameter validation) instead of with botocore's defaults (3d6b647)",
)

# Parameters of the previous run (its "Parameters:" line), to tell whether this run's sizes are
# comparable.
PARAMS: dict[str, Any] = {
    "quick": False,
    "no_profile": False,
    "threads": 2000,
    "real_threads": 200,
    "turns": 2,
    "baseline_threads": 40,
    "capture_events": 200_000,
    "tx_rows": 3,
    "lag_seconds": 20.0,
    "lag_rate": 200.0,
    "lag_writers": 4,
    "lag_low_rate": 80.0,
    "lag_roles": ["all", "split"],
    "lag_appliers": 1,
    "lag_stores": ["moto", "dynalite"],
    "memory_events": 100_000,
    "scaleout_events": 40_000,
    "partitions": 8,
    "consumers": [1, 2, 4],
    "switches": 20,
    "switch_rate": 8.0,
    "switch_writers": 2,
    "target_threads": 60,
    "sqlite_copies": 60,
    "copy_command_threads": 60,
}

# 1-minute load average just before each figure (other work on the machine).
LOAD = {"copy": 0.9, "capture": 2.9, "lag": 2.0, "memory": 4.0, "scaleout": 3.2}

# 1. Initial copy vs savers' API.
COPY_RATIO = 7.52
COPY_RATE = 174.0  # replicator, checkpoints/s
COPY_BASELINE_RATE = 23.0  # savers' API, checkpoints/s

# 2. Capture: PostgresSource alone vs pg_recvlogical, and the publisher over the source.
CAPTURE_RATIO = 0.67
CAPTURE_SOURCE_RATE = 37_286.0  # events/s
CAPTURE_RECVLOGICAL_RATE = 55_912.0  # events/s
CAPTURE_PUBLISH_RATE = 6_729.0  # events/s, produced and acknowledged (one record per event then)
# The prototype of bench/proposed.py in that run, on the same WAL: the publisher with a partition
# cache and linger_ms=20 (not in the product; it subclasses the publisher of its time).
PROTOTYPE_PUBLISH_RATE = 6_326.0  # events/s

# 3. Lag, per store ("moto", "dynalite"), process layout ("all": capture and apply in one
# `replicator run`; "split": `--role capture` + one `--role apply`) and paced rate (200 and 80
# checkpoints/s), as bench/lag.py's summary rows. rate: measured checkpoints/s; events: events/s;
# p50..max, floors and stages (commit to produced, produced to polled, polled to durable) in ms;
# drain_s: caught up after the load; cpu in cores while writing ("daemon": both processes when
# split); lookups: the sink's BatchGetItem keys over the whole run; batches: batches with data.
LAG: tuple[dict[str, Any], ...] = (
    {
        "store": "moto",
        "roles": "all",
        "paced": 200.0,
        "rate": 200.0,
        "events": 1_024.0,
        "p50": 12732.0,
        "p90": 15502.0,
        "p99": 19091.0,
        "max": 19335.0,
        "floor_p50": 224.0,
        "floor_p99": 1022.0,
        "drain_s": 13.2,
        "stages_p50": [2027.0, 8384.0, 2199.0],
        "stages_p99": [2813.0, 14182.0, 3991.0],
        "cpu": {"writers": 0.72, "moto": 0.44, "daemon": 0.44, "postgres": 0.22, "broker": 0.02},
        "conversations": 500,
        "lookups": 3_000,
        "batches": 15,
        "batches_looked_up": 14,
    },
    {
        "store": "moto",
        "roles": "all",
        "paced": 80.0,
        "rate": 79.0,
        "events": 405.0,
        "p50": 321.0,
        "p90": 485.0,
        "p99": 541.0,
        "max": 564.0,
        "floor_p50": 229.0,
        "floor_p99": 1071.0,
        "drain_s": 0.2,
        "stages_p50": [28.0, 105.0, 196.0],
        "stages_p99": [82.0, 218.0, 341.0],
        "cpu": {"moto": 0.37, "daemon": 0.37, "writers": 0.27, "postgres": 0.09, "broker": 0.03},
        "conversations": 200,
        "lookups": 1_200,
        "batches": 68,
        "batches_looked_up": 61,
    },
    {
        "store": "moto",
        "roles": "split",
        "paced": 200.0,
        "rate": 199.0,
        "events": 1_020.0,
        "p50": 11974.0,
        "p90": 16033.0,
        "p99": 18987.0,
        "max": 19428.0,
        "floor_p50": 224.0,
        "floor_p99": 1022.0,
        "drain_s": 11.9,
        "stages_p50": [271.0, 8423.0, 1996.0],
        "stages_p99": [1581.0, 16573.0, 6581.0],
        "cpu": {"writers": 0.70, "daemon": 0.50, "moto": 0.48, "postgres": 0.21, "broker": 0.04},
        "conversations": 499,
        "lookups": 2_994,
        "batches": 15,
        "batches_looked_up": 15,
    },
    {
        "store": "moto",
        "roles": "split",
        "paced": 80.0,
        "rate": 79.0,
        "events": 405.0,
        "p50": 322.0,
        "p90": 451.0,
        "p99": 497.0,
        "max": 524.0,
        "floor_p50": 229.0,
        "floor_p99": 1071.0,
        "drain_s": 0.5,
        "stages_p50": [22.0, 136.0, 174.0],
        "stages_p99": [67.0, 225.0, 276.0],
        "cpu": {"daemon": 0.38, "moto": 0.38, "writers": 0.27, "postgres": 0.09, "broker": 0.04},
        "conversations": 200,
        "lookups": 1_200,
        "batches": 77,
        "batches_looked_up": 71,
    },
    {
        "store": "dynalite",
        "roles": "all",
        "paced": 200.0,
        "rate": 200.0,
        "events": 1_023.0,
        "p50": 11280.0,
        "p90": 13878.0,
        "p99": 15904.0,
        "max": 16209.0,
        "floor_p50": 41.0,
        "floor_p99": 207.0,
        "drain_s": 11.5,
        "stages_p50": [1932.0, 6919.0, 2420.0],
        "stages_p99": [3791.0, 11016.0, 3958.0],
        "cpu": {
            "writers": 0.78,
            "daemon": 0.47,
            "dynalite": 0.24,
            "postgres": 0.23,
            "broker": 0.03,
            "moto": 0.01,
        },
        "conversations": 500,
        "lookups": 3_000,
        "batches": 15,
        "batches_looked_up": 15,
    },
    {
        "store": "dynalite",
        "roles": "all",
        "paced": 80.0,
        "rate": 79.0,
        "events": 405.0,
        "p50": 295.0,
        "p90": 409.0,
        "p99": 563.0,
        "max": 598.0,
        "floor_p50": 45.0,
        "floor_p99": 249.0,
        "drain_s": 0.1,
        "stages_p50": [35.0, 110.0, 145.0],
        "stages_p99": [97.0, 223.0, 341.0],
        "cpu": {
            "daemon": 0.43,
            "writers": 0.32,
            "dynalite": 0.17,
            "postgres": 0.10,
            "broker": 0.04,
            "moto": 0.03,
        },
        "conversations": 200,
        "lookups": 1_200,
        "batches": 64,
        "batches_looked_up": 62,
    },
    {
        "store": "dynalite",
        "roles": "split",
        "paced": 200.0,
        "rate": 197.0,
        "events": 1_011.0,
        "p50": 8075.0,
        "p90": 11032.0,
        "p99": 12620.0,
        "max": 12819.0,
        "floor_p50": 41.0,
        "floor_p99": 207.0,
        "drain_s": 6.4,
        "stages_p50": [105.0, 5954.0, 1360.0],
        "stages_p99": [1312.0, 10707.0, 3957.0],
        "cpu": {
            "writers": 0.74,
            "daemon": 0.57,
            "postgres": 0.23,
            "dynalite": 0.22,
            "broker": 0.05,
            "moto": 0.02,
        },
        "conversations": 497,
        "lookups": 2_982,
        "batches": 15,
        "batches_looked_up": 15,
    },
    {
        "store": "dynalite",
        "roles": "split",
        "paced": 80.0,
        "rate": 79.0,
        "events": 405.0,
        "p50": 235.0,
        "p90": 320.0,
        "p99": 421.0,
        "max": 451.0,
        "floor_p50": 45.0,
        "floor_p99": 249.0,
        "drain_s": 0.3,
        "stages_p50": [25.0, 91.0, 121.0],
        "stages_p99": [61.0, 232.0, 198.0],
        "cpu": {
            "daemon": 0.39,
            "writers": 0.29,
            "dynalite": 0.14,
            "postgres": 0.10,
            "broker": 0.04,
            "moto": 0.03,
        },
        "conversations": 200,
        "lookups": 1_200,
        "batches": 66,
        "batches_looked_up": 61,
    },
)

# 4. Memory over a backlog.
MEMORY_PEAK_MIB = 182.0
MEMORY_EVENTS = 100_031
MEMORY_GROWTH = 0.02  # peak of the 2nd half vs the 1st
# The 1M-event run (bench/memory-1m/results.md, committed in 03822f8 and not rerun since): peak 242
# MiB over 999,975 events, 200 / 236 / 236 / 221 MiB at 25 / 50 / 75 / 100% applied, 2nd half +7%,
# in 13.7 min.
MEMORY_1M_COMMIT = "03822f8"
MEMORY_1M_PEAK_MIB = 242.0
MEMORY_1M_EVENTS = 999_975
MEMORY_1M_GROWTH = 0.07
MEMORY_1M_MINUTES = 13.7
MEMORY_1M_LEVEL_MIB = 236.0  # its RSS at 50% and 75% applied (bench/memory.py quotes it)

# 5. Scale-out, DynamoDB sink: records/s by consumer count (one event per record then: 39,999
# events in 40,015 records with the control records), and the DynamoDB items written per second
# (records/s times 2.3 items per record, as that run's section gives them).
SCALEOUT = {1: 827.0, 2: 1_158.0, 4: 911.0}
SCALEOUT_ITEMS = {1: 1_900.0, 2: 2_660.0, 4: 2_093.0}
SCALEOUT_ITEMS_PER_RECORD = 2.3

# Profile shares of the previous run (py-spy, % of samples, inclusive; see "Profiles" in that
# results.md). The capture profile is of the publisher thread; the daemon's of figure 4's backlog.
PROFILE_CAPTURE = {
    "PostgresSource._stream": 45.2,
    "Publisher._send": 44.6,
    "KafkaProducer.send": 42.8,
    "RecordAccumulator.append": 20.6,
    "codec.py:encode": 5.1,  # one encode per event into its own record(s)
    "Publisher._settle": 1.4,  # Publisher._flush (waiting for every ack) was gone by then
}
PROFILE_DAEMON = {
    "BaseClient._make_api_call": 59.5,
    "Applier._apply": 9.6,
    "_Planner._prefetch": 0.3,  # the blob prefetch
}
# BatchGetItem keys per one-turn conversation of the app under the lag load: 6.0 in every row
# (3,000 over 500 conversations at 200 checkpoints/s, 1,200 over 200 at 80, on both stores).
LOOKUPS_PER_CONVERSATION = 6.0

MEMORY_1M_RESULTS = Path(__file__).resolve().parent / "memory-1m" / "results.md"
_HEADLINE = re.compile(r"peak (\d+) MiB over ([\d,]+) events")


def memory_1m(path: Path = MEMORY_1M_RESULTS) -> dict[str, Any] | None:
    """The committed 1M-event run: its peak, its size, and whether it is still the one of 03822f8.

    None when there is no such file. ``predates`` is True while the file still holds the headline
    of the run of 03822f8 (``MEMORY_1M_COMMIT``, made on the code before the changes measured in
    the run of f1c7dde and before ``CHANGES``); a rerun replaces it.
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
