"""``python -m bench``: every figure in one run, written to ``bench/results.md`` and PNGs.

Starts its own Postgres, broker and moto (``replicator.embedded``), runs the figures one after
the other on those services (each in its own database, topic and DynamoDB table), and removes
everything afterwards. Sizes are parameters; ``--quick`` shrinks them all for a smoke run.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from bench import capture, copy, copy_command, cutover, lag, memory, scaleout, sqlite_capture, targets
from bench.env import log, services, wait_quiet
from bench.report import OUT, Result, write

PICKLE = "results.pickle"  # this run's measurements (not committed: see .gitignore)
FIGURES = (
    "copy",
    "capture",
    "lag",
    "memory",
    "scaleout",
    "cutover",
    "targets",
    "copy-command",
    "sqlite-capture",
)


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes everywhere (a smoke run of ~3 min)")
    ap.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES), help="figures to run")
    ap.add_argument(
        "--out", type=Path, default=OUT, help="where results.md and the PNGs go (default: bench/)"
    )
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    ap.add_argument(
        "--render-only",
        action="store_true",
        help="write OUT/results.md again from the measurements OUT/results.pickle saved (no services)",
    )
    g = ap.add_argument_group("1. initial copy")
    g.add_argument("--threads", type=int, default=2000, help="threads in the copied data set")
    g.add_argument("--real-threads", type=int, default=200, help="of which written by the real app")
    g.add_argument("--turns", type=int, default=2, help="turns per real thread (the last left interrupted)")
    g.add_argument("--baseline-threads", type=int, default=40, help="threads the savers' API baseline copies")
    g = ap.add_argument_group("2. capture")
    g.add_argument("--capture-events", type=int, default=200_000, help="row changes in the captured WAL")
    g.add_argument("--tx-rows", type=int, default=3, help="rows per transaction in that WAL")
    g = ap.add_argument_group("3. lag")
    g.add_argument("--lag-seconds", type=float, default=20.0, help="duration of the app load")
    g.add_argument("--lag-rate", type=float, default=200.0, help="checkpoints/s, all writers together")
    g.add_argument("--lag-writers", type=int, default=4, help="writer processes")
    g.add_argument("--lag-low-rate", type=float, default=80.0, help="a second, lighter load (0: skip)")
    g.add_argument(
        "--lag-roles", nargs="+", choices=["all", "split"], default=["all", "split"], help="processes"
    )
    g.add_argument("--lag-appliers", type=int, default=1, help="apply processes with --lag-roles split")
    g.add_argument(
        "--lag-stores",
        nargs="+",
        choices=["moto", "dynalite"],
        default=["moto", "dynalite"],
        help="DynamoDBs",
    )
    g = ap.add_argument_group("4. memory")
    g.add_argument("--memory-events", type=int, default=100_000, help="backlog size (the issue asks 1M)")
    g = ap.add_argument_group("5. scale-out")
    g.add_argument("--scaleout-events", type=int, default=40_000, help="events in the pre-filled topic")
    g.add_argument("--partitions", type=int, default=8, help="partitions of that topic")
    g.add_argument("--consumers", type=int, nargs="+", default=[1, 2, 4], help="consumer counts")
    g = ap.add_argument_group("6. write pause at cutover")
    g.add_argument("--switches", type=int, default=20, help="cutovers (each followed by a rollback)")
    g.add_argument("--switch-rate", type=float, default=8.0, help="checkpoints/s the apps write meanwhile")
    g.add_argument("--switch-writers", type=int, default=2, help="app processes writing meanwhile")
    g = ap.add_argument_group("7. apply rate per target kind")
    g.add_argument(
        "--target-threads", type=int, default=60, help="real conversations applied to every target"
    )
    g = ap.add_argument_group("9. SQLite source vs reading its changelog")
    g.add_argument("--sqlite-copies", type=int, default=60, help="SQL copies of the real conversations")
    g = ap.add_argument_group("8. replicator copy against a migration script")
    g.add_argument("--copy-command-threads", type=int, default=60, help="real conversations copied")
    g.add_argument(
        "--copy-round-trip-ms",
        type=float,
        nargs="*",
        default=[2.0],
        help="milliseconds added to every DynamoDB request in extra runs (none: no such run)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.threads, args.real_threads, args.baseline_threads = 300, 50, 10
        args.capture_events = 30_000
        args.lag_seconds, args.lag_low_rate = 15.0, 0.0
        args.memory_events = 20_000
        args.scaleout_events = 8_000
        args.switches = 5
        args.target_threads = 15
        args.copy_command_threads = 15
        args.sqlite_copies = 10
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    # SIGTERM (a CI timeout, `timeout`) must still stop the services: unwind like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from replicator import logs

    logs.configure("console", "warning")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the broker's refused connections at exit
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render_only:
        return _render(args.out)
    profile = not args.no_profile
    started = time.monotonic()
    results: list[Result] = []
    with services() as s:
        log(f"services up: postgres {s.pg.port}, broker {s.broker.port}, moto {s.moto.port}")
        for name in FIGURES:
            if name not in args.only:
                continue
            load = os.getloadavg()[0]
            busy, waited = wait_quiet()
            log(f"--- {name} (CPU busy before: {busy:.0%}, after waiting {waited:.0f} s; load {load:.2f})")
            if name == "copy":
                cp = copy.Params(
                    threads=args.threads,
                    real_threads=min(args.real_threads, args.threads),
                    turns=args.turns,
                    baseline_threads=args.baseline_threads,
                )
                results.append(copy.run(s, cp, args.out))
            elif name == "capture":
                cap = capture.Params(events=args.capture_events, tx_rows=args.tx_rows, profile=profile)
                results.append(capture.run(s, cap, args.out))
            elif name == "lag":
                rates = [args.lag_rate] + ([args.lag_low_rate] if args.lag_low_rate else [])
                lp = lag.Params(
                    seconds=args.lag_seconds,
                    writers=args.lag_writers,
                    rate=args.lag_rate,
                    stores=tuple(args.lag_stores),
                    roles=tuple(args.lag_roles),
                    appliers=args.lag_appliers,
                )
                results.append(lag.run_rates(s, lp, rates, args.out))
            elif name == "memory":
                results.append(
                    memory.run(s, memory.Params(events=args.memory_events, profile=profile), args.out)
                )
            elif name == "scaleout":
                so = scaleout.Params(
                    events=args.scaleout_events, partitions=args.partitions, consumers=tuple(args.consumers)
                )
                results.append(scaleout.run(s, so, args.out))
            elif name == "cutover":
                co = cutover.Params(
                    switches=args.switches, writers=args.switch_writers, rate=args.switch_rate
                )
                results.append(cutover.run(s, co, args.out))
            elif name == "targets":
                results.append(targets.run(s, targets.Params(threads=args.target_threads), args.out))
            elif name == "copy-command":
                cc = copy_command.Params(
                    threads=args.copy_command_threads, round_trip_ms=tuple(args.copy_round_trip_ms)
                )
                results.append(copy_command.run(s, cc, args.out))
            elif name == "sqlite-capture":
                sc = sqlite_capture.Params(copies=args.sqlite_copies)
                results.append(sqlite_capture.run(s, sc, args.out))
            results[-1].data["load_before"] = load
            results[-1].data["busy_before"] = busy
            results[-1].data["quiet_wait_s"] = waited
            log(f"{name}: {results[-1].measured} ({results[-1].seconds:.0f} s)")
    total = time.monotonic() - started
    command = "python -m bench" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    params = {k: v for k, v in vars(args).items() if k not in ("out", "only", "render_only")}
    saved = {"results": results, "command": command, "params": params, "total": total}
    (args.out / PICKLE).write_bytes(pickle.dumps(saved))  # measurements first: the text can be redone
    return _render(args.out)


def _render(out: Path) -> int:
    saved = pickle.loads((out / PICKLE).read_bytes())
    results, params = saved["results"], saved["params"]
    path = write(
        results,
        command=saved["command"],
        params=params,
        total_seconds=saved["total"],
        extra_sections=extras(results, params),
        outdir=out,
    )
    log(f"wrote {path} (measured in {saved['total'] / 60:.1f} min)")
    return 0


def extras(results: list[Result], params: dict[str, Any]) -> list[str]:
    from bench import findings

    if not any(r.key in {"copy", "capture", "lag", "memory", "scaleout"} for r in results):
        return []  # the findings read figures 1-5; a run of other figures stands alone
    return findings.sections(results, params)


if __name__ == "__main__":
    sys.exit(main())
