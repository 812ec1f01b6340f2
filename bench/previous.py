"""The figures of the previous committed run: the "before" column of results.md's before/after.

They come from ``bench/results.md`` as committed in 46451f1 ("bench: results and plots of the full
default run": ``python -m bench`` with the default parameters, 2026-11-25, 2 shared cores, 8.3 min)
and from ``bench/memory-1m/results.md`` as committed there (``python -m bench --only memory
--memory-events 1000000 --out bench/memory-1m``, 17.9 min). Both ran on the code before commit
20f128c, which applied four of that run's recommendations to the product (``CHANGES``). Read them
with ``git show 46451f1:bench/results.md`` and ``git show 46451f1:bench/memory-1m/results.md``.

The numbers are copied by hand, not measured by this code: they are constants on purpose, so that
the next run can be compared with them. Any later run of that kind on the same machine shares its
cores with other work, under another load; only large differences between the two columns mean
anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

COMMIT = "46451f1"  # the commit whose bench/results.md holds these figures
CHANGES_COMMIT = "20f128c"  # the product changes between that run and the next

# The product changes between the previous run and this code (commit 20f128c), as results.md
# recommendations 1-4 of the previous run.
CHANGES = (
    "`pgoutput.py`: JSON and JSONB columns decoded with `msgspec.json.decode` instead of "
    "`json.loads` (falling back to `json.loads` for what msgspec refuses)",
    "`pgoutput.py` `Begin`, `Commit`, `Insert`, `Update`, `Delete` and `stream.py` `RawMessage`: "
    "frozen `msgspec.Struct`s instead of frozen dataclasses",
    "`dynamodb.py` `_BlobCache`: one string key per entry and an accounting by `sys.getsizeof`, so "
    "that `blob_cache_bytes` bounds the cache's real memory (it undercounted about 2.2x)",
    "`dynamodb.py` `DynamoDBSink._prefetch`: no `BatchGetItem` key for a channel whose value is "
    "inline in the checkpoint (fewer keys, the same number of requests)",
)

# Parameters of the previous run (the defaults of `python -m bench`), to tell whether this run's
# sizes are comparable.
PARAMS: dict[str, Any] = {
    "quick": False,
    "capture_events": 200_000,
    "lag_seconds": 30.0,
    "memory_events": 100_000,
    "scaleout_events": 40_000,
    "consumers": [1, 2, 4],
}

# 1-minute load average just before each figure (other work on the machine).
LOAD = {"copy": 1.3, "capture": 4.3, "lag": 3.2, "memory": 4.5, "scaleout": 6.2}

# 1. Initial copy vs savers' API.
COPY_RATIO = 10.02
COPY_RATE = 316.0  # replicator, checkpoints/s
COPY_BASELINE_RATE = 32.0  # savers' API, checkpoints/s

# 2. Capture: PostgresSource alone vs pg_recvlogical, and the publisher over the source.
CAPTURE_RATIO = 0.52
CAPTURE_SOURCE_RATE = 51_390.0  # events/s
CAPTURE_RECVLOGICAL_RATE = 98_878.0  # events/s
CAPTURE_PUBLISH_RATE = 16_131.0  # events/s, produced and acknowledged
# The prototypes of bench/proposed.py in that run, on the same WAL: the source with msgspec JSONB
# decoding and tuple messages (since applied to the product, as msgspec decoding and Structs), and
# the publisher with a partition cache and linger_ms=20 on top of that source (not applied).
PROTOTYPE_SOURCE_RATE = 53_025.0  # events/s
PROTOTYPE_PUBLISH_RATE = 20_682.0  # events/s
# The prototype's gain over the plain publisher ranged over about this in development runs
# before that commit (not recorded in a committed results.md).
PROTOTYPE_DEV_RANGE = (0.8, 1.3)

# 3. Lag: (measured checkpoints/s, p50, p99, max in ms) for the paced 250 and 80 checkpoints/s.
LAG = (
    {"paced": 250.0, "rate": 249.0, "p50": 14569.0, "p99": 21592.0, "max": 22220.0},
    {"paced": 80.0, "rate": 79.0, "p50": 177.0, "p99": 2304.0, "max": 2367.0},
)

# 4. Memory over a backlog.
MEMORY_PEAK_MIB = 190.0
MEMORY_EVENTS = 100_031
MEMORY_GROWTH = 0.11  # peak of the 2nd half vs the 1st
# The 1M-event run (bench/memory-1m/results.md in 46451f1): levels off at about 340 MiB after
# some 450k events (peak 341 MiB over 999,975 events), over the 300 MB goal.
MEMORY_1M_PEAK_MIB = 341.0
MEMORY_1M_EVENTS = 999_975
MEMORY_1M_LEVEL_MIB = 340.0
MEMORY_1M_LEVEL_AFTER = 450_000
MEMORY_1M_MINUTES = 17.9
# The blob cache's real footprint against its accounting then (tracemalloc, this app's blobs).
BLOB_CACHE_UNDERCOUNT = 2.2

# 5. Scale-out, DynamoDB sink: records/s by consumer count.
SCALEOUT = {1: 1_808.0, 2: 1_622.0, 4: 1_916.0}

# Profile shares of the previous run (py-spy, % of samples; see "Profiles" in that results.md).
PROFILE_CAPTURE = {
    "PostgresSource._stream": 38.8,  # inclusive, of the publisher thread
    "_jsonb_binary": 4.4,  # inclusive
    "__create_fn__.<locals>.__init__": 3.4,  # self: frozen-dataclass construction
}
PROFILE_DAEMON = {"DynamoDBSink._prefetch": 0.6}  # inclusive
# BatchGetItem keys per one-turn conversation of the app, all misses (counted in a development
# run before 20f128c, not in the committed run).
LOOKUPS_PER_CONVERSATION = 14

MEMORY_1M_RESULTS = Path(__file__).resolve().parent / "memory-1m" / "results.md"
_HEADLINE = re.compile(r"peak (\d+) MiB over ([\d,]+) events")


def memory_1m(path: Path = MEMORY_1M_RESULTS) -> dict[str, Any] | None:
    """The committed 1M-event run: its peak, its size, and whether it is still the one of 46451f1.

    None when there is no such file. ``predates`` is True while the file holds the headline of the
    run of 46451f1 (made before the blob cache fix); a rerun replaces it.
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
