"""The sections of results.md after the figures: profiles, before/after, what limits, method.

The "before" of before/after is the previous committed run (``bench/previous.py``).
"""

from __future__ import annotations

import os
from typing import Any

from bench import previous, profile
from bench.report import Result, cores, fmt_rate, machine, md_table

DAEMON_STAGES = [
    "Publisher.run",
    "PostgresSource.stream",
    "Publisher._add",
    "Publisher._send",
    "codec.py:encode_value",
    "Applier._apply",
    "LayeredSink.apply",
    "_Planner._prefetch",
    "DynamoDBSink._execute",
    "DynamoDBSink._write_chunk",
    "BaseClient._make_api_call",
    "HTTPConnectionPool.urlopen",
    "Reassembler.feed",
    "Daemon._monitor",
]
CAPTURE_STAGES = [
    "PostgresSource._stream",
    "PgOutputDecoder.decode",
    "PgOutputDecoder.row",
    "_jsonb_binary",
    "row_to_event",
    "ReplicationConnection.read",
    "Publisher._add",
    "Publisher._send",
    "KafkaProducer.send",
    "NetworkSelector.wakeup",
    "RecordAccumulator.append",
    "codec.py:encode_value",
    "codec.py:batch_record",
    "Publisher._settle",
]
ROLES = {"all": "capture and apply in one process", "split": "capture and apply in two processes"}
STAGE_NAMES = ("commit to produced", "waiting in Kafka", "the batch's apply")
# Parameters of figures the findings do not read (6-9): a difference in them changes no row here.
OTHER_FIGURES = {
    "switches",
    "switch_rate",
    "switch_writers",
    "target_threads",
    "sqlite_copies",
    "copy_command_threads",
    "copy_round_trip_ms",
}


def _get(results: list[Result], key: str) -> Result | None:
    return next((r for r in results if r.key == key), None)


def _cores() -> int:
    return os.cpu_count() or 1


def sink_threads() -> int:
    """Requests in flight per apply process of a DynamoDB target by default (``concurrency``)."""
    from connectors.sinks.dynamodb_config import DynamoDBTargetConfig

    return int(DynamoDBTargetConfig.model_fields["concurrency"].default)


def sections(results: list[Result], params: dict[str, Any] | None = None) -> list[str]:
    out = [_profiles(results), _before_after(results, params), _limits(results), _method(results)]
    return [s for s in out if s]


# ------------------------------------------------------------------------------------------ profiles


def _profiles(results: list[Result]) -> str:
    parts = ["## Profiles: where the time goes", ""]
    memory = _get(results, "memory")
    prof: Any = memory.data.get("profile") if memory else None
    if prof is not None:
        parts += [
            "### The daemon working off the backlog of figure 4",
            "",
            "py-spy (`--nonblocking`, 50 Hz) on the `replicator run` process for the whole backlog: the",
            f"publisher, the applier, its {sink_threads()} sink threads and kafka-python's IO threads. A "
            "thread blocked",
            "in a system call is idle and not sampled; one that the OS shows running (also while it takes",
            "the GIL back after a socket read) is. Raw stacks: `bench/profiles/daemon.pyspy.txt` (not",
            "committed).",
            "",
            profile.table(prof, top=15, inclusive=DAEMON_STAGES),
            "",
            _daemon_reading(prof),
            "",
        ]
    capture = _get(results, "capture")
    prof = capture.data.get("profile") if capture else None
    if prof is not None:
        parts += [
            "### The capture path: source + publisher on the WAL of figure 2",
            "",
            "py-spy (100 Hz) on a child process running `Publisher` over `PostgresSource` on its own slot;",
            "only samples inside `Publisher.run` count (start-up and imports excluded).",
            "",
            profile.table(prof, top=15, inclusive=CAPTURE_STAGES),
            "",
            _capture_reading(prof),
            "",
        ]
    return "\n".join(parts) if len(parts) > 2 else ""


def _self(prof: Any, *names: str) -> float:
    return prof.share(sum(c for n, c in prof.self_time.items() if n.endswith(names)))


def _self_in(prof: Any, *prefixes: str) -> float:
    return prof.share(sum(c for n, c in prof.self_time.items() if n.startswith(prefixes)))


def _incl(prof: Any, name: str) -> float:
    return prof.share(max((c for n, c in prof.inclusive.items() if n.endswith(name)), default=0))


def _product_self(prof: Any) -> float:
    return _self_in(prof, "replicator/", "sinks/", "postgres/", "sources/", "connectors/", "langgraph/")


def _usable(prof: Any) -> bool:
    return prof is not None and not getattr(prof, "error", None) and bool(getattr(prof, "samples", 0))


def _daemon_reading(prof: Any) -> str:
    if not _usable(prof):
        return ""
    before = previous.PROFILE_DAEMON
    api = _incl(prof, "BaseClient._make_api_call")
    connect = _self(
        prof,
        "connection.py:create_connection",
        "socket.py:socket._real_close",
        "socket.py:getaddrinfo",
        "socket.py:socket.__init__",
    )
    own = _product_self(prof)
    verdict = (
        ": applying is the target's round trips, not our planning." if own * 3 < api else " of the samples."
    )
    return (
        f"Reading: {api:.0f}% of the daemon's active samples are inside botocore calls to the target "
        f"({before['BaseClient._make_api_call']:.0f}% in the run of {previous.COMMIT}); {connect:.0f}% of "
        "all samples go to opening and closing a TCP connection per request (moto answers every request "
        "with `Connection: close`; DynamoDB keeps connections), and `uuid4` shows "
        f"{_self(prof, 'uuid.py:uuid4'):.0f}%: botocore's per-request invocation id, a 2 µs call, so these "
        "samples are most likely threads waiting to take the GIL back after `os.urandom`. Request signing "
        f"(`SigV4Auth.payload` {_self(prof, 'auth.py:SigV4Auth.payload'):.0f}%) and serialisation come "
        "next; botocore's client-side parameter validation (`botocore/validate.py`), turned off by the "
        f"sink since commit 814d5b0, has {_self_in(prof, 'botocore/validate.py'):.1f}% self time. The "
        f"applier (`Applier._apply`, inclusive) is {_incl(prof, 'Applier._apply'):.0f}% "
        f"({before['Applier._apply']:.0f}% before), the blob prefetch (`_Planner._prefetch`) "
        f"{_incl(prof, '_Planner._prefetch'):.1f}% ({before['_Planner._prefetch']:.1f}% before). The "
        "replicator's own code (self time in `replicator/` and "
        f"`connectors/`) is {own:.0f}%" + verdict
    )


def _capture_reading(prof: Any) -> str:
    if not _usable(prof):
        return ""
    before = previous.PROFILE_CAPTURE
    encoding = _incl(prof, "codec.py:encode_value") + _incl(prof, "codec.py:batch_record")
    return (
        f"Reading: the source (`PostgresSource._stream`) is {_incl(prof, 'PostgresSource._stream'):.0f}% of "
        f"the publisher thread ({before['PostgresSource._stream']:.0f}% in the run of {previous.COMMIT}), "
        f"of which pgoutput decoding {_incl(prof, 'PgOutputDecoder.decode'):.0f}% (`tuple_data` alone "
        f"{_self(prof, 'pgoutput.py:_Reader.tuple_data'):.0f}%, JSONB {_incl(prof, '_jsonb_binary'):.1f}%); "
        f"kafka-python's `send` is {_incl(prof, 'KafkaProducer.send'):.0f}% "
        f"({before['KafkaProducer.send']:.0f}% before, when every event was a record of its own: record "
        f"accumulator, pure-Python murmur2 {_self(prof, 'default.py:murmur2'):.0f}% now, sender "
        f"wake-ups). Queueing each event in its thread's batch (`Publisher._add`) is "
        f"{_incl(prof, 'Publisher._add'):.0f}%; confirming acknowledged units (`Publisher._settle`, which "
        "sends every open batch first and waits for acks only at the bound, when the source is idle and "
        f"on stop) is {_incl(prof, 'Publisher._settle'):.1f}% ({before['Publisher._settle']:.1f}% before; "
        "py-spy leaves out threads the OS shows blocked: these shares are mostly the work, not the wait). "
        f"Our encoding (`codec.encode_value` per event and `codec.batch_record` per record, msgspec) is "
        f"{encoding:.0f}% (`codec.encode` {before['codec.py:encode']:.0f}% before)."
    )


# ------------------------------------------------------------------------------------- before / after


def _ratio(ratio: float, rate: float, base: float, unit: str) -> str:
    """A figure's cell: the ratio, then the two rates it divides."""
    return f"{ratio:.2f}x ({fmt_rate(rate)} vs {fmt_rate(base)} {unit})"


def _x(after: float, before: float) -> str:
    return f"{after / before:.2f}x" if before else ""


def _lag_cell(run: dict[str, Any]) -> str:
    floor = f" (floor p99 {run['floor_p99']:.0f} ms)" if "floor_p99" in run else ""
    return (
        f"p50 {run['p50']:.0f} / p99 {run['p99']:.0f} / max {run['max']:.0f} ms at "
        f"{run['rate']:.0f} checkpoints/s{floor}"
    )


def _load(results: list[Result], key: str) -> str:
    """The last column: the 1-minute load average before the figure then and now, and this run's
    CPU busy share after its wait for a quiet machine (runs since that wait record it)."""
    r = _get(results, key)
    then = previous.LOAD.get(key)
    before = f"{then:.1f}" if then is not None else "?"
    now = f"{r.data['load_before']:.1f}" if r is not None and "load_before" in r.data else "?"
    busy = f" (CPU busy {r.data['busy_before']:.0%})" if r is not None and "busy_before" in r.data else ""
    return f"{before} / {now}{busy}"


def _size_differences(params: dict[str, Any] | None) -> list[str]:
    if not params:
        return []
    return [
        f"`{k}={params[k]}` (before: `{v}`)"
        for k, v in previous.PARAMS.items()
        if k in params and k not in OTHER_FIGURES and params[k] != v
    ]


def _rows(runs: list[dict[str, Any]], store: str, roles: str) -> list[dict[str, Any]]:
    """This run's lag rows of one store and process layout, the highest paced rate first."""
    return sorted(
        (r for r in runs if r.get("store") == store and r.get("roles") == roles), key=lambda r: -r["paced"]
    )


def _row(runs: list[dict[str, Any]], store: str, roles: str, paced: float) -> dict[str, Any] | None:
    return next((r for r in _rows(runs, store, roles) if r["paced"] == paced), None)


def _layout(r: dict[str, Any]) -> tuple[Any, Any]:
    return r.get("store"), r.get("roles")


def lag_pairs(runs: list[dict[str, Any]]) -> list[tuple[dict[str, Any] | None, dict[str, Any]]]:
    """Each of this run's lag rows, in their order, with the previous run's row of the same store,
    process layout and paced rate; failing that, with a row of the same store and layout left
    over, at the paced rate of the same rank (highest with highest); else with None."""
    left = list(previous.LAG)
    found: dict[int, dict[str, Any]] = {}
    for i, now in enumerate(runs):
        match = next((b for b in left if _layout(b) == _layout(now) and b["paced"] == now["paced"]), None)
        if match is not None:
            left.remove(match)
            found[i] = match
    for layout in dict.fromkeys(_layout(r) for r in runs):
        rest = [i for i, r in enumerate(runs) if i not in found and _layout(r) == layout]
        rest.sort(key=lambda i: -runs[i]["paced"])
        spare = sorted((b for b in left if _layout(b) == layout), key=lambda b: -b["paced"])
        for i, before in zip(rest, spare, strict=False):
            left.remove(before)
            found[i] = before
    return [(found.get(i), now) for i, now in enumerate(runs)]


def _not_run(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The previous run's lag rows that no row of this run pairs with."""
    paired = [id(b) for b, _ in lag_pairs(runs) if b is not None]
    return [b for b in previous.LAG if id(b) not in paired]


def _paced(before: dict[str, Any] | None, now: dict[str, Any]) -> str:
    if before is not None and now["paced"] != before["paced"]:
        return f"paced {before['paced']:.0f} -> {now['paced']:.0f} checkpoints/s"
    return f"paced {now['paced']:.0f} checkpoints/s"


def _lag_name(r: dict[str, Any]) -> str:
    return f"{r.get('store', '?')} ({r.get('roles', '?')}) at {r['paced']:.0f} checkpoints/s paced"


def _items(ddb: dict[int, dict[str, Any]]) -> dict[int, float]:
    """DynamoDB items written per second by consumer count, where this run counted them."""
    return {n: r["rate"] * r["items_per_event"] for n, r in ddb.items() if "items_per_event" in r}


def _before_after(results: list[Result], params: dict[str, Any] | None = None) -> str:
    rows: list[list[str]] = []
    copy = _get(results, "copy")
    if copy is not None:
        d = copy.data
        rows.append(
            [
                "1. Initial copy / savers' API",
                _ratio(previous.COPY_RATIO, previous.COPY_RATE, previous.COPY_BASELINE_RATE, "checkpoints/s"),
                _ratio(d["ratio"], d["rate"], d["base_rate"], "checkpoints/s"),
                _x(d["ratio"], previous.COPY_RATIO),
                _load(results, "copy"),
            ]
        )
    capture = _get(results, "capture")
    if capture is not None:
        rates = capture.data["rates"]
        rows += [
            [
                "2. Capture: `PostgresSource` alone / pg_recvlogical",
                _ratio(
                    previous.CAPTURE_RATIO,
                    previous.CAPTURE_SOURCE_RATE,
                    previous.CAPTURE_RECVLOGICAL_RATE,
                    "events/s",
                ),
                _ratio(capture.data["ratio"], rates["source"], rates["pg_recvlogical"], "events/s"),
                _x(capture.data["ratio"], previous.CAPTURE_RATIO),
                _load(results, "capture"),
            ],
            [
                "2. Capture: `Publisher` over the source, acknowledged",
                f"{fmt_rate(previous.CAPTURE_PUBLISH_RATE)} events/s",
                f"{fmt_rate(rates['publish'])} events/s",
                _x(rates["publish"], previous.CAPTURE_PUBLISH_RATE),
                _load(results, "capture"),
            ],
        ]
    lag = _get(results, "lag")
    runs: list[dict[str, Any]] = lag.data["runs"] if lag is not None else []
    pairs = lag_pairs(runs)
    for before, now in pairs:
        roles = now.get("roles", "?")
        rows.append(
            [
                f"3. Lag on {now.get('store', '?')}, {ROLES.get(roles, roles)}, {_paced(before, now)}",
                _lag_cell(before) if before is not None else "no such row",
                _lag_cell(now),
                f"p99 {_x(now['p99'], before['p99'])}" if before is not None else "",
                _load(results, "lag"),
            ]
        )
    memory = _get(results, "memory")
    if memory is not None:
        d = memory.data
        rows.append(
            [
                "4. Memory: daemon peak RSS over a backlog",
                f"{previous.MEMORY_PEAK_MIB:.0f} MiB over {previous.MEMORY_EVENTS:,} events "
                f"(2nd half {previous.MEMORY_GROWTH:+.0%})",
                f"{d['peak']:.0f} MiB over {d['backlog']:,} events (2nd half {d['growth']:+.0%})",
                _x(d["peak"], previous.MEMORY_PEAK_MIB),
                _load(results, "memory"),
            ]
        )
        before_1m = (
            f"run of {previous.MEMORY_1M_COMMIT}: peak {previous.MEMORY_1M_PEAK_MIB:.0f} MiB over "
            f"{previous.MEMORY_1M_EVENTS:,} events (2nd half {previous.MEMORY_1M_GROWTH:+.0%})"
        )
        prior = d.get("memory_1m")
        if d.get("full"):
            after_1m, change = f"this run: {d['peak']:.0f} MiB", _x(d["peak"], previous.MEMORY_1M_PEAK_MIB)
        elif prior is not None and not prior["predates"]:
            after_1m = f"rerun in memory-1m/: peak {prior['peak']:.0f} MiB over {prior['events']:,} events"
            change = _x(prior["peak"], previous.MEMORY_1M_PEAK_MIB)
        else:
            after_1m = f"not rerun: bench/memory-1m/ still holds the run of {previous.MEMORY_1M_COMMIT}"
            change = ""
        rows.append(["4. Memory over 1M events (bench/memory-1m/)", before_1m, after_1m, change, ""])
    scale = _get(results, "scaleout")
    scale_note = ""
    if scale is not None:
        ddb = scale.data["results"].get("dynamodb", {})
        ns = sorted(set(previous.SCALEOUT) | set(ddb))
        rows.append(
            [
                f"5. Scale-out, DynamoDB sink: events/s with {' / '.join(str(n) for n in ns)} consumers",
                " / ".join(fmt_rate(previous.SCALEOUT[n]) if n in previous.SCALEOUT else "-" for n in ns),
                " / ".join(fmt_rate(ddb[n]["rate"]) if n in ddb else "-" for n in ns),
                " / ".join(
                    _x(ddb[n]["rate"], previous.SCALEOUT[n]) if n in ddb and n in previous.SCALEOUT else "-"
                    for n in ns
                ),
                _load(results, "scaleout"),
            ]
        )
        items = _items(ddb)
        if items:
            before_items = previous.SCALEOUT_ITEMS
            ns = sorted(set(before_items) | set(items))
            rows.append(
                [
                    f"5. Scale-out, DynamoDB sink: items written/s with {' / '.join(str(n) for n in ns)} "
                    "consumers",
                    " / ".join(fmt_rate(before_items[n]) if n in before_items else "-" for n in ns),
                    " / ".join(fmt_rate(items[n]) if n in items else "-" for n in ns),
                    " / ".join(
                        _x(items[n], before_items[n]) if n in items and n in before_items else "-" for n in ns
                    ),
                    _load(results, "scaleout"),
                ]
            )
            scale_note = (
                f"Figure 5 counts change events per second; the run of {previous.COMMIT} counted Kafka "
                "records, one event each then, so the rates compare the same unit. A record now holds a "
                "thread's consecutive changes (change 1 above)."
            )
    if not rows:
        return ""
    table = md_table(
        [
            "figure",
            f"before ({previous.COMMIT})",
            "after (this run)",
            "after / before",
            "load before / after",
        ],
        rows,
        right=5,
    )
    changes = "\n".join(f"{i}. {c}." for i, c in enumerate(previous.CHANGES, 1))
    method = "\n".join(f"- {c}." for c in previous.METHOD_CHANGES)
    differ = _size_differences(params)
    sizes = (
        "\n\n**This run's parameters differ from the previous run's** ("
        + ", ".join(differ)
        + "): those rows measure other workloads, and the comparison says even less."
        if differ
        else ""
    )
    busy = (
        ", and in parentheses this run's share of the CPU busy just before the figure, after its wait "
        "for a quiet machine"
        if any("busy_before" in r.data for r in results)
        else ""
    )
    parts = [
        "## Before / after: the previous committed run and this one",
        "",
        f'"Before" is the run whose `bench/results.md` was committed in {previous.COMMIT} '
        f"(`{previous.COMMAND}` with the defaults of the time, on the code of that commit; its figures "
        f'are the constants of `bench/previous.py`); "after" is this run. They are **two different '
        "runs** on a machine shared with other work, under different loads (last column: the 1-minute "
        f"load average before the figure, then and now{busy}), and the copy and scale-out figures and "
        "the lag rows on moto are bounded by moto, which shares the cores with that work: only large "
        "changes mean anything, and a change of a few tens of percent can come from the load alone."
        + sizes
        + _hardware(),
        "",
        f"Product changes on the measured paths since that run ({previous.CHANGES_COMMIT}):",
        "",
        changes,
        "",
        "Other commits since then touched these paths without meaning to change what they measure: "
        f"{previous.OTHER_CHANGES}. The method changed too:",
        "",
        method,
        "",
        table,
        "",
    ]
    if lag is not None:
        parts += [_lag_note(pairs, _not_run(runs)), ""]
    if scale_note:
        parts += [scale_note, ""]
    if capture is not None:
        parts.append(_prototype(capture))
    return "\n".join(parts)


def _lag_note(
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any]]], missing: list[dict[str, Any]]
) -> str:
    text = (
        "Each lag row pairs this run's row with the previous run's row of the same store, process layout "
        '("all": capture and apply in one `replicator run` process; "split": a `--role capture` and a '
        "`--role apply` process) and paced rate."
    )
    moved = [(b, n) for b, n in pairs if b is not None and n["paced"] != b["paced"]]
    if moved:
        text += (
            " "
            + "; ".join(
                f"On {n.get('store', '?')} ({n.get('roles', '?')}) the paced rate changed from "
                f"{b['paced']:.0f} to {n['paced']:.0f} checkpoints/s"
                for b, n in moved
            )
            + ", so "
            + ("that row compares" if len(moved) == 1 else "those rows compare")
            + " two different loads."
        )
    alone = [n for b, n in pairs if b is None]
    if alone:
        text += " No before for this run's rows " + "; ".join(_lag_name(n) for n in alone) + "."
    if missing:
        text += " Not run in this run: " + "; ".join(_lag_name(b) for b in missing) + "."
    return text


def _hardware() -> str:
    """The two runs' CPUs: the same model and core count, or the difference, which no row separates
    from the code's."""
    now = machine()
    if now.startswith(previous.MACHINE):
        return (
            f"\n\nBoth runs ran on the same kind of machine, {previous.MACHINE}: the rates of the two "
            "runs compare the code and the load, not the hardware."
        )
    return (
        f"\n\n**The two runs ran on different hardware**: before on {previous.MACHINE}, after on {now}. "
        "Baselines measured in the same run moved too (pg_recvlogical, the savers' "
        "API), so each ratio against its own run's baseline is the comparison to read, and the rates "
        "across the two runs compare the machines as much as the code."
    )


def _prototype(capture: Result) -> str:
    rates = capture.data["rates"]
    if not rates.get("publish+") or not rates.get("publish"):
        return ""
    base = rates["pg_recvlogical"]
    gain = rates["publish+"] / rates["publish"]
    before_gain = previous.PROTOTYPE_PUBLISH_RATE / previous.CAPTURE_PUBLISH_RATE
    before_rates = f"{fmt_rate(previous.PROTOTYPE_PUBLISH_RATE)} vs {fmt_rate(previous.CAPTURE_PUBLISH_RATE)}"
    prof: Any = capture.data.get("profile")
    send = (
        f" (`KafkaProducer.send` is {_incl(prof, 'KafkaProducer.send'):.0f}% of the publisher thread in "
        "the capture profile)"
        if _usable(prof)
        else ""
    )
    table = md_table(
        ["capture path", "product", "prototype", "change"],
        [
            [
                "`Publisher` + partition cache, `linger_ms=20` (`bench/proposed.py`)",
                f"{fmt_rate(rates['publish'])}/s ({rates['publish'] / base:.2f} of pg_recvlogical)",
                f"{fmt_rate(rates['publish+'])}/s ({rates['publish+'] / base:.2f})",
                f"{gain:.2f}x",
            ]
        ],
    )
    return f"""### Not applied: the publisher prototype (same run, same WAL)

The bench does not change the product; this row runs a prototype of a publisher change that is
not in the product (`bench/proposed.py`) in a child process, next to the unchanged publisher, on a
slot created at the same LSN.

{table}

This run measured {gain:.2f}x; the run of {previous.COMMIT} measured {before_gain:.2f}x ({before_rates}
events/s). The prototype subclasses the product's `Publisher`, so each run's prototype carries that
run's publisher: this one sends a thread's consecutive changes as one record (change 1 above), the
previous one sent one record per event. A partition cache and a longer linger change how
kafka-python batches, not its per-record work in Python{send}, nor its sender thread competing with
the publisher thread for the GIL. Fewer records (change 1) is what cuts that work; what is left of it
would go only with a Kafka client in C (librdkafka, as confluent-kafka), which the product does not use.
"""


# ------------------------------------------------------------------------------------- limits


def _limits(results: list[Result]) -> str:
    copy = _get(results, "copy")
    lag = _get(results, "lag")
    scale = _get(results, "scaleout")
    memory = _get(results, "memory")
    capture = _get(results, "capture")
    n = _cores()
    lines = ["## What limits each figure on this machine, and what to change in the product", ""]
    if copy is not None:
        cpu = copy.data.get("replicator", {}).get("cpu", {})
        moto, daemon = cpu.get("moto", 0.0), cpu.get("daemon", 0.0)
        saturated = (
            "neither saturates a core; moto's latency under its own GIL is the limit"
            if max(moto, daemon) < 0.9
            else "one of them is close to a whole core"
        )
        lines += [
            f"- **Initial copy ({copy.data['ratio']:.1f}x).** Both paths spend their time in moto, a single "
            "Python process answering one HTTP request per connection (`Connection: close`). The baseline "
            "makes one request per item (`PutItem` for each checkpoint, payload chunk and write); the "
            f"replicator one `BatchWriteItem` per 25 items, with up to {sink_threads()} requests in flight. "
            f"During the copy moto used {moto:.2f} cores and the daemon {daemon:.2f}: {saturated}. Against "
            "DynamoDB, whose latency does not grow with parallel requests, the ratio would be larger (not "
            "measured here).",
        ]
    lag_runs: list[dict[str, Any]] = lag.data["runs"] if lag is not None else []
    if lag is not None and lag_runs:
        lines += [_lag_limits(lag, lag_runs, n)]
    if scale is not None:
        res = scale.data["results"]
        ddb, plan = res.get("dynamodb", {}), res.get("planning only", {})
        if ddb and plan:
            one = min(ddb)
            gains = ", ".join(
                f"{ddb[k]['rate'] / ddb[one]['rate']:.2f}x with {k}" for k in sorted(ddb) if k != one
            )
            headroom = plan[min(plan)]["rate"] / ddb[one]["rate"]
            plan_rates = [v["rate"] for v in plan.values()]
            plan_cpu = max(v["cpu"].get("appliers", 0.0) for v in plan.values())
            lines += [
                f"- **Scale-out ({gains} consumers, against 1).** Without writes (the planning-only rows: "
                f"consume, decode, reassemble and plan every item) one applier process is {headroom:.0f}x "
                "faster than with them, so the writes to the target are the limit, not the appliers. moto is "
                f"one Python process (a thread per connection, one GIL) on {n} shared cores: more applier "
                "processes mean more concurrent requests to it, not more capacity. Against DynamoDB, which "
                "scales with partitions, more consumers would be expected to add throughput up to the "
                "appliers' own limit (not measurable here). The planning-only rates swing between runs (from "
                f"{fmt_rate(min(plan_rates))} to {fmt_rate(max(plan_rates))} events/s in this one) and use "
                f"at most {plan_cpu:.2f} cores: not CPU-bound either; what bounds them (per-batch fetch, "
                "offset commit, position save) was not isolated.",
            ]
    if memory is not None:
        d = memory.data
        lines += [
            f"- **Memory (peak {d['peak']:.0f} MiB over {d['backlog']:,} events).** {_memory_text(memory)}"
        ]
    lines += [
        "",
        f"Applied since the previous run ({previous.CHANGES_COMMIT}), and what this run shows of them:",
        "",
        *_applied(capture, memory, scale, lag_runs),
        "",
        "Still recommended (not applied; numbered on from recommendations 1-4 of the run of 46451f1; "
        f"5 and 6 of the run of {previous.COMMIT} are applied above):",
        "",
        *_recommended(lag_runs),
    ]
    return "\n".join(lines)


def _stages(r: dict[str, Any]) -> str:
    return " / ".join(f"{v:.0f}" for v in r["stages_p50"]) + " ms"


def _lag_run_text(r: dict[str, Any]) -> str:
    return (
        f"{ROLES.get(r['roles'], r['roles'])}: p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms at "
        f"{r['rate']:.0f} checkpoints/s, stage medians {_stages(r)}, cores {cores(r['cpu'])}"
    )


def _stores(runs: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["store"] for r in runs))


def _high(runs: list[dict[str, Any]]) -> float:
    return max((r["paced"] for r in runs), default=0.0)


def split_pairs(runs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Per store, this run's one-process and split rows at the highest paced rate."""
    pairs = []
    for store in _stores(runs):
        one, two = _row(runs, store, "all", _high(runs)), _row(runs, store, "split", _high(runs))
        if one is not None and two is not None:
            pairs.append((one, two))
    return pairs


def _lag_limits(lag: Result, runs: list[dict[str, Any]], n: int) -> str:
    high = _high(runs)
    items = []
    for store in _stores(runs):
        rows = [r for r in runs if r["store"] == store and r["paced"] == high]
        if rows:
            items.append(
                f"  - {store} (floor: p50 {rows[0]['floor_p50']:.0f} ms, p99 {rows[0]['floor_p99']:.0f} ms "
                "per saver call straight into it under the same load): "
                + "; ".join(_lag_run_text(r) for r in rows)
                + "."
            )
    low = [r for r in runs if r["paced"] != high]
    if low:
        items.append(
            "  - At the lighter load: "
            + "; ".join(
                f"{r['store']}, {r['roles']}: p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms at "
                f"{r['rate']:.0f} checkpoints/s (floor p99 {r['floor_p99']:.0f} ms)"
                for r in low
            )
            + "."
        )
    load = []
    for store in _stores(runs):
        r = _row(runs, store, "all", high) or next(x for x in runs if x["store"] == store)
        cpu = r["cpu"]
        others = cpu.get("writers", 0.0) + cpu.get("postgres", 0.0) + cpu.get(store, 0.0)
        total = sum(cpu.values())
        share = "most" if others > total / 2 else "less than half"
        load.append(
            f"on {store} ({r['roles']}) writers {cpu.get('writers', 0.0):.2f}, Postgres "
            f"{cpu.get('postgres', 0.0):.2f} and {store} {cpu.get(store, 0.0):.2f} cores, {share} of the "
            f"{total:.2f} cores the measured processes used (the replicator {cpu.get('daemon', 0.0):.2f})"
        )
    split_text = []
    for one, two in split_pairs(runs):
        shorter = [
            f"{STAGE_NAMES[i]} {one['stages_p50'][i]:.0f} -> {two['stages_p50'][i]:.0f} ms" for i in (0, 1)
        ]
        verdict = (
            "shortened both"
            if all(two["stages_p50"][i] < one["stages_p50"][i] for i in (0, 1))
            else "did not shorten both"
        )
        split_text.append(
            f"on {one['store']}, splitting {verdict} ({', '.join(shorter)} at the median; p99 lag "
            f"{one['p99']:.0f} -> {two['p99']:.0f} ms)"
        )
    split = " In this run, " + "; ".join(split_text) + "." if split_text else ""
    met = "n/a" if lag.met is None else ("met" if lag.met else "not met")
    looked_up = any(r.get("batches_looked_up") for r in runs)
    head = (
        f"- **Lag (goal {lag.goal}: {met}).** At {high:.0f} checkpoints/s paced, per store, each process "
        "layout with its stage medians (commit to produced / waiting in Kafka / the batch's apply) and "
        "the cores used while writing:"
    )
    reading = (
        f"  On {n} shared cores the app's writers, Postgres and the store use much of the CPU while "
        "writing: "
        + "; ".join(load)
        + f". In one process the daemon runs the publisher, the applier and {sink_threads()} sink "
        "threads under one GIL, so decoding and producing wait behind the sink's threads, and so does the "
        "applier's own planning; splitting the roles into two processes (`replicator run --role capture` "
        "and `--role apply`) gives each its own GIL, which is meant to shorten commit to produced and the "
        "wait in Kafka."
        + split
        + " What remains per batch is the sequential round trips of one batch: "
        + ("the blob prefetch (`BatchGetItem`), then " if looked_up else "")
        + "the payload items, then the meta items, each phase waiting for the previous one, then the "
        "Kafka offset commit and the position save before the next poll."
        + (
            ""
            if looked_up
            else " (No batch of this run looked blobs up first: the source marks the channels that have "
            "no blob, change 2 above.)"
        )
    )
    return "\n".join([head, "", *items, "", reading])


def _memory_text(memory: Result) -> str:
    d = memory.data
    text = (
        "The daemon's RSS grows while the backlog is applied until the blob cache is full. The cache "
        "(`blob_cache_mb` per target, 32 MiB by default; 64 MiB before this run) fills with every blob "
        "and every known-absent blob of the threads seen, and counts its entries, keys and index as "
        "`sys.getsizeof` measures them, so the budget bounds the cache's own objects; the allocator's "
        "pages around them come on top, and the daemon hands freed pages back to the OS every 5 s "
        "(`replicator/allocator.py`). The second half of this run peaked "
        f"{d['growth']:+.0%} against the first; the run of {previous.COMMIT} peaked at "
        f"{previous.MEMORY_PEAK_MIB:.0f} MiB over {previous.MEMORY_EVENTS:,} events "
        f"({previous.MEMORY_GROWTH:+.0%})."
    )
    if d.get("full"):
        return text + " This run has the issue's size (1M events)."
    prior = d.get("memory_1m")
    if prior is None:
        return text + " No 1M-event run is in bench/memory-1m/."
    if prior["predates"]:
        return text + (
            f" The 1M-event run in bench/memory-1m/ is still the one of {previous.MEMORY_1M_COMMIT}: peak "
            f"{prior['peak']:.0f} MiB over {prior['events']:,} events, second half "
            f"{previous.MEMORY_1M_GROWTH:+.0%}, under the 300 MB goal. It ran before the changes already "
            f"in the run of {previous.COMMIT} ({sink_threads()} requests in flight instead of 8, acks "
            "collected per source unit) and before those listed above; whether they change the "
            "footprint at that size needs a rerun of it."
        )
    return text + (
        f" The 1M-event run in bench/memory-1m/ (rerun after {previous.MEMORY_1M_COMMIT}): peak "
        f"{prior['peak']:.0f} MiB over {prior['events']:,} events (the run of {previous.MEMORY_1M_COMMIT}: "
        f"{previous.MEMORY_1M_PEAK_MIB:.0f} MiB)."
    )


def _low_rate() -> float:
    """The previous run's lighter paced rate (80 checkpoints/s): where a batch's round trips are
    not hidden behind a queue."""
    return float(previous.PARAMS.get("lag_low_rate") or min(b["paced"] for b in previous.LAG))


def _applied(
    capture: Result | None, memory: Result | None, scale: Result | None, lag_runs: list[dict[str, Any]]
) -> list[str]:
    same = [(b, n) for b, n in lag_pairs(lag_runs) if b is not None and b["paced"] == n["paced"]]
    high = _high(lag_runs)

    records = []  # change 1: a thread's consecutive changes in one record (recommendation 5)
    if capture is not None:
        rates = capture.data["rates"]
        records.append(
            f"Figure 2's publisher row: {fmt_rate(rates['publish'])} events/s, "
            f"{rates['publish'] / rates['source']:.0%} of the source alone, against "
            f"{fmt_rate(previous.CAPTURE_PUBLISH_RATE)} "
            f"({previous.CAPTURE_PUBLISH_RATE / previous.CAPTURE_SOURCE_RATE:.0%}) in the run of "
            f"{previous.COMMIT} ({_x(rates['publish'], previous.CAPTURE_PUBLISH_RATE)})."
        )
        cap_prof: Any = capture.data.get("profile")
        if _usable(cap_prof):
            records.append(
                "In the capture profile `KafkaProducer.send` is "
                f"{_incl(cap_prof, 'KafkaProducer.send'):.0f}% of the publisher thread "
                f"({previous.PROFILE_CAPTURE['KafkaProducer.send']:.0f}% before)."
            )
    top = [(b, n) for b, n in same if n["paced"] == high]
    if top:
        records.append(
            f"Under figure 3's load at {high:.0f} checkpoints/s paced, commit to produced (the source and "
            "the publisher, now with up to `record_linger_s` in a thread's batch) at the median / p99, "
            "before -> after: "
            + "; ".join(
                f"{n['store']} ({n['roles']}) {b['stages_p50'][0]:.0f} / {b['stages_p99'][0]:.0f} -> "
                f"{n['stages_p50'][0]:.0f} / {n['stages_p99'][0]:.0f} ms"
                for b, n in top
            )
            + "."
        )

    marks = []  # change 2: channels with no blob marked by the source (recommendation 6)
    looked = [r for r in lag_runs if r.get("conversations")]
    against = (
        f", against {previous.LOOKUPS_PER_CONVERSATION:.1f} per conversation in every row of the run of "
        f"{previous.COMMIT}."
    )
    if looked and not any(r.get("lookups") for r in looked):
        marks.append(
            f"Under figure 3's load the sink looked up no blob state in any of this run's {len(looked)} "
            f"rows ({sum(r['conversations'] for r in looked):,} conversations, "
            f"{sum(r.get('batches', 0) for r in looked):,} batches with data)" + against
        )
    elif looked:
        marks.append(
            "Under figure 3's load the sink looked up "
            + "; ".join(
                f"{r['lookups'] / r['conversations']:.1f} blob states per conversation on {r['store']} "
                f"({r['roles']}, {r['paced']:.0f}/s paced: {r['lookups']:,} over {r['conversations']:,} "
                f"conversations, in {r['batches_looked_up']:,} of {r['batches']:,} batches)"
                for r in looked
            )
            + against
        )
    low = [(b, n) for b, n in same if n["paced"] == _low_rate()]
    if low:
        marks.append(
            f"At {_low_rate():.0f} checkpoints/s paced, where a batch's round trips are not hidden behind a "
            "queue, p99 lag before -> after (the batch's apply at the median; each run's floor p99): "
            + "; ".join(
                f"{n['store']} ({n['roles']}) {b['p99']:.0f} -> {n['p99']:.0f} ms "
                f"({b['stages_p50'][2]:.0f} -> {n['stages_p50'][2]:.0f} ms; floor "
                f"{b.get('floor_p99', float('nan')):.0f} -> {n.get('floor_p99', float('nan')):.0f} ms)"
                for b, n in low
            )
            + "."
        )
    dprof: Any = memory.data.get("profile") if memory else None
    if _usable(dprof):
        marks.append(
            f"In the daemon profile the blob prefetch (`_Planner._prefetch`) is "
            f"{_incl(dprof, '_Planner._prefetch'):.1f}% "
            f"({previous.PROFILE_DAEMON['_Planner._prefetch']:.1f}% before)."
        )

    polls = []  # change 3: polls sized in events
    if memory is not None:
        d = memory.data
        polls.append(
            f"Figure 4's peak RSS: {d['peak']:.0f} MiB over {d['backlog']:,} events (2nd half "
            f"{d['growth']:+.0%}), against {previous.MEMORY_PEAK_MIB:.0f} MiB "
            f"({previous.MEMORY_GROWTH:+.0%}) in the run of {previous.COMMIT}."
        )
    if scale is not None:
        ddb = scale.data["results"].get("dynamodb", {})
        items = _items(ddb)
        common = [k for k in sorted(items) if k in previous.SCALEOUT_ITEMS]
        if common:
            polls.append(
                "Figure 5's DynamoDB rows in items written per second (a record may now hold several "
                "events): "
                + ", ".join(
                    f"{fmt_rate(items[k])} with {k} (was {fmt_rate(previous.SCALEOUT_ITEMS[k])})"
                    for k in common
                )
                + "."
            )
        else:
            common = [k for k in sorted(ddb) if k in previous.SCALEOUT]
            if common:
                polls.append(
                    "Figure 5's DynamoDB rows: "
                    + ", ".join(
                        f"{fmt_rate(ddb[k]['rate'])} events/s with {k} (was {fmt_rate(previous.SCALEOUT[k])})"
                        for k in common
                    )
                    + "."
                )

    def item(change: str, shown: list[str]) -> str:
        return f"- {change}." + (" " + " ".join(shown) if shown else " (Not measured in this run.)")

    records_change, marks_change, polls_change, *memory_changes = previous.CHANGES
    return [
        item(records_change, records),
        item(marks_change, marks),
        item(polls_change, polls),
        *(f"- {change}." for change in memory_changes),
        f"- Already in the product at the run of {previous.COMMIT}, so in both columns: recommendations "
        "1-4 of the run of 46451f1 (msgspec JSON/JSONB decoding, `msgspec.Struct` pgoutput messages, the "
        "blob cache's accounting by `sys.getsizeof`, no lookup of inline channels; commit 20f128c); Kafka "
        "acks collected without stopping the source, 16 requests in flight per apply process and no "
        "botocore parameter validation (814d5b0); the split roles' positions and dead letters kept per "
        "partition (c3f198e).",
    ]


def _recommended(lag_runs: list[dict[str, Any]]) -> list[str]:
    split = [
        f"on {one['store']} at {two['rate']:.0f} checkpoints/s, split p50 {two['p50']:.0f} / p99 "
        f"{two['p99']:.0f} ms against {one['p50']:.0f} / {one['p99']:.0f} ms in one process (commit to "
        f"produced {two['stages_p50'][0]:.0f} against {one['stages_p50'][0]:.0f} ms at the median)"
        for one, two in split_pairs(lag_runs)
    ]
    split_text = " In this run: " + "; ".join(split) + "." if split else ""
    return [
        "7. Run capture and apply as separate processes where lag matters: `replicator run --role "
        "capture` (one, it owns the slot) and `replicator run --role apply` (one or more per target), "
        "as the files in deploy/ already do. Each gets its own GIL: the publisher no longer waits "
        "behind the sink's threads, nor the applier behind decoding." + split_text,
        "8. Pipeline the applier: poll and plan the next batch while the current one's writes are in "
        "flight, keeping per-thread order (a thread's next batch waits for its previous one). Today each "
        "batch waits for its writes, the Kafka offset commit and the position save before the next poll, "
        "so a batch's round trips add up to the lag of every event queued behind it.",
    ]


# ------------------------------------------------------------------------------------- method


def _method(results: list[Result]) -> str:
    return """## Method and deviations

- Data: template threads come from the real LangGraph app (`replicator.embedded.demo_app`) through
  `PostgresSaver`; bulk data are SQL copies of their rows under new thread ids (`bench/data.py`),
  in the transaction shape each figure states. Figure 3 uses the real app only, for its load and
  for its floor (the same app writing through `DynamoDBSaver`).
- DynamoDB: moto (one Python process) in figures 1 to 5; figure 3 also runs on dynalite, a second
  DynamoDB implementation (Node, on LevelDB), installed by `npm ci --prefix tests/services` (S3
  stays on moto). If dynalite is not installed, figure 3 falls back to moto only.
- The savers' API baseline copies an evenly spread sample of the threads and is extrapolated by
  checkpoint count (all threads have the same shape); `--baseline-threads N` runs more of it. Its
  table holds only that sample, while the replicator fills a table with every thread; moto's writes
  slow down a little as a table grows (about 15-20% between 300 and 2,000 threads in development
  runs), which favours the baseline.
- Consumer groups use `session_timeout_ms=6000`: the embedded broker's group join takes about half
  of it (a deviation from Kafka, see ENVIRONMENT.md); joins are inside the copy time and outside
  the scale-out rates.
- moto's Query sorts and scans the whole table on every call (`for item in self.all_items()`, which
  sorts every item), so `replicator verify` takes seconds per thread on the copy's table; the bench
  does not run it (the integration tests verify correctness through both savers). dynalite keeps a
  table ordered by key, as DynamoDB does.
- Absolute times depend on everything sharing the machine's cores; no figure asserts one.
"""
