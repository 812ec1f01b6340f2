"""Survive every fault: crashes at every named point, a Postgres restart, an idle source, a lost
slot, a throttled and failing target, a large backlog in bounded memory, and whole-topic replays.

Every test runs the real daemon (a subprocess) against the real Postgres, broker and moto, and
ends by comparing source and target through both savers (``replicator.verify``). Waiting is
bounded polling of real state: persisted positions, ``pg_replication_slots``, the daemon's log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg2
import psycopg2.extras
import pytest

from connectors.registry import make_sink, make_source
from replicator.config import Config
from replicator.embedded import EmbeddedMoto, EmbeddedPostgres, create_dynamodb_table, create_s3_bucket
from replicator.faults import POINTS
from replicator.state import MemoryStateStore
from tests.integration.faultkit import (
    LiveWriter,
    Services,
    assert_same,
    cpu_seconds,
    current_wal_lsn,
    log_events,
    rss_kib,
    saved_state,
    slot_row,
    wait_copy_read,
    wait_synced,
    with_target_endpoint,
)
from tests.integration.faultproxy import Action, CycleSchedule, FaultProxy
from tests.integration.harness import App, DaemonProcess, cli, load, wait_for

pytestmark = pytest.mark.integration


# -- 1. named fault points ------------------------------------------------------------------------

# (stage, LGREPL_FAULT). "snapshot": threads exist before the first start, so the publisher's first
# passes are the initial copy (and the topic starts with it, so the applier's first batch applies
# it). "streaming": "@streaming" counts passes only once the source reads the slot, while the app
# writes live threads. A count > 1 skips control records (snapshot start, the first heartbeats).
FAULT_CASES = [
    # died with the slot created and nothing published: the copy restarts from the first row
    ("snapshot", "publisher.before_produce:2"),
    # a chunk acknowledged by Kafka but not confirmed: that chunk is read and published again
    ("snapshot", "publisher.after_produce"),
    # chunks confirmed, the copy half done: it resumes from the saved keyset cursor
    ("snapshot", "snapshot.between_chunks:2"),
    # the copy applied but not committed: the applier replays it
    ("snapshot", "applier.after_apply"),
    ("streaming", "source.after_read:5"),
    ("streaming", "publisher.before_produce:3@streaming"),
    ("streaming", "publisher.after_send:4@streaming"),
    ("streaming", "publisher.after_produce:2@streaming"),
    ("streaming", "publisher.before_confirm:2@streaming"),
    ("streaming", "applier.after_apply:2@streaming"),
    ("streaming", "applier.after_commit:2@streaming"),
]
# applier.on_rebalance (partitions being revoked) needs a second consumer in the group, which one
# daemon never has: test_sigkill_during_a_consumer_rebalance_converges starts a second daemon.
# applier.in_sink_apply is where test_deadletter raises a bug (``!raise``) into the sink's apply; a
# SIGKILL there is the same as applier.after_apply with nothing written yet.
# The cutover, rollback and routing-saver points are killed in test_cutover_faults.py.
NOT_IN_THIS_MATRIX = {"applier.on_rebalance", "applier.in_sink_apply"} | {
    p for p in POINTS if p.startswith(("cutover.", "rollback.", "routing."))
}


def test_every_fault_point_is_named_and_in_the_matrix() -> None:
    root = Path(__file__).resolve().parents[2]
    used = set()
    for path in [*root.glob("replicator/**/*.py"), *root.glob("connectors/**/*.py")]:
        used |= set(re.findall(r'fault_point\("([^"]+)"\)', path.read_text()))
    assert used == POINTS, f"fault_point() names and faults.POINTS differ: {used ^ POINTS}"
    matrix = {spec.split(":")[0].split("@")[0] for _, spec in FAULT_CASES}
    assert matrix | NOT_IN_THIS_MATRIX == POINTS


def test_unknown_fault_point_is_refused(services: Services, daemons: list[DaemonProcess]) -> None:
    """A misspelt LGREPL_FAULT must not pass a crash test by never firing."""
    App(services.dsn).conn.close()
    daemon = DaemonProcess(services.config(), services.tmp)
    daemons.append(daemon)
    daemon.start(LGREPL_FAULT="publisher.before_prodcue")
    assert daemon.wait(60) == 2
    assert "unknown fault point 'publisher.before_prodcue'" in daemon.output()


@pytest.mark.parametrize(("stage", "fault"), FAULT_CASES, ids=[f"{s}-{f}" for s, f in FAULT_CASES])
def test_sigkill_at_fault_point_then_restart_converges(
    stage: str,
    fault: str,
    services: Services,
    daemons: list[DaemonProcess],
    writers: list[LiveWriter],
) -> None:
    app = App(services.dsn)
    for i in range(2 if stage == "snapshot" else 1):  # before the daemon exists: the initial copy
        app.converse(f"pre-{i}", turns=1, resume=i % 2 == 0)
    app.conn.close()
    config_path = services.config(chunk_rows=10 if stage == "snapshot" else 40)
    config = load(config_path)
    daemon = DaemonProcess(config_path, services.tmp)
    daemons.append(daemon)
    # A streaming fault needs changes in the slot: the app writes once the copy has been read
    # (a slow start would otherwise put every conversation into the copy, and nothing would fire).
    writer = LiveWriter(
        services.dsn, "live", quota=0 if stage == "streaming" else 6, pace_s=0.15, delete_every=3
    )
    writers.append(writer)
    writer.start()

    daemon.start(LGREPL_FAULT=fault)
    if stage == "streaming":
        wait_copy_read(config, daemon, timeout=90)
        writer.allow(6)
    code = daemon.wait(90)
    assert code == -9, f"daemon exited with {code}, not SIGKILL at {fault}:\n{daemon.output()[-3000:]}"
    copy = saved_state(config, "source").get("snapshot")
    if stage == "streaming":
        assert copy == "done"  # the kill came after the initial copy
    elif not fault.startswith("applier."):
        assert copy == "running"  # the kill came during it

    written = writer.written
    daemon.start()  # no fault: recovers from whatever the kill left behind
    writer.wait_written(written + 3)  # the app goes on while the daemon recovers
    writer.stop()
    wait_synced(config, daemon, timeout=120)
    assert_same(config)
    assert daemon.terminate() == 0


def test_sigkill_during_a_consumer_rebalance_converges(
    services: Services, daemons: list[DaemonProcess], writers: list[LiveWriter]
) -> None:
    """A second daemon of the same config joins the group (a rolling deploy, a scaled-up
    Deployment): partitions are revoked from the first, which dies right there, mid-rebalance.
    The newcomer takes the partitions and, once the dead walsender is gone, the slot."""
    App(services.dsn).conn.close()
    config_path = services.config()
    config = load(config_path)
    first = DaemonProcess(config_path, services.tmp)
    second = DaemonProcess(config_path, services.tmp)
    daemons.extend([first, second])
    writer = LiveWriter(services.dsn, "rb", quota=3, pace_s=0.15, delete_every=3)
    writers.append(writer)
    writer.start()
    first.start(LGREPL_FAULT="applier.on_rebalance")
    wait_synced(config, first, timeout=90)
    writer.allow(writer.written + 4)  # the app goes on through the rebalance
    second.start()
    assert first.wait(90) == -9, f"no kill at the rebalance:\n{first.output()[-3000:]}"
    writer.wait_written(writer.quota)
    writer.stop()
    wait_synced(config, second, timeout=120)
    assert second.alive() and second.runs == 1
    assert_same(config)
    assert second.terminate() == 0


# -- 3. Postgres restarts under the daemon ---------------------------------------------------------


@pytest.fixture(scope="module")
def own_pg() -> Iterator[EmbeddedPostgres]:
    """A cluster of this module alone: it gets restarted and reconfigured."""
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture
def own_services(own_pg: EmbeddedPostgres, services: Services) -> Services:
    """The shared services, with a database on this module's own cluster."""
    return dataclasses.replace(services, dsn=own_pg.create_database(f"f_{uuid.uuid4().hex[:12]}"))


def test_postgres_minor_version_restart_while_streaming(
    own_pg: EmbeddedPostgres,
    own_services: Services,
    daemons: list[DaemonProcess],
    writers: list[LiveWriter],
) -> None:
    """A minor-version upgrade is a clean restart: `pg_ctl restart -m fast` (what systemd and
    pg_ctlcluster do). A fast shutdown waits for every walsender to have its client confirm the
    shutdown checkpoint, so this also checks that the daemon does not hold the restart up."""
    services = own_services
    App(services.dsn).conn.close()
    config_path = services.config()
    config = load(config_path)
    daemon = DaemonProcess(config_path, services.tmp)
    daemons.append(daemon)
    writer = LiveWriter(services.dsn, "r", quota=4, pace_s=0.2, delete_every=3)
    writers.append(writer)
    writer.start()
    daemon.start()
    wait_synced(config, daemon, timeout=60)
    before = slot_row(services.dsn, config.source.slot)
    assert before is not None and before["active"]
    writer.allow(writer.written + 30)  # the app writes through the restart

    started = time.monotonic()
    own_pg.restart(mode="fast")
    took = time.monotonic() - started
    assert took < 30, f"fast restart took {took:.0f}s: a walsender held the shutdown"

    def reconnected() -> bool:
        row = slot_row(services.dsn, config.source.slot)
        return row is not None and row["active"] and row["active_pid"] != before["active_pid"]

    wait_for(reconnected, 60, "the daemon streaming from the slot again")
    writer.wait_written(writer.written + 3)  # written after the restart
    writer.stop()
    wait_synced(config, daemon, timeout=120)
    assert daemon.alive() and daemon.runs == 1  # reconnected by itself, never restarted
    assert log_events(daemon.output(), "stage interrupted; retrying")
    assert_same(config)
    assert daemon.terminate() == 0


def test_slot_still_held_by_a_previous_walsender_is_waited_for(
    services: Services, daemons: list[DaemonProcess]
) -> None:
    """After a network cut the server keeps the old walsender (and the slot) until it notices,
    up to wal_sender_timeout: START_REPLICATION fails with "slot is active for PID". That is a
    wait-and-retry, not a reason to stop the daemon."""
    app = App(services.dsn)
    app.converse("before")
    config_path = services.config()
    config = load(config_path)
    daemon = DaemonProcess(config_path, services.tmp)
    daemons.append(daemon)
    daemon.start()
    wait_synced(config, daemon, timeout=60)
    assert daemon.terminate() == 0

    holder = psycopg2.connect(services.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    try:
        holder.cursor().start_replication(
            slot_name=config.source.slot,
            decode=False,
            options={"proto_version": "1", "publication_names": config.source.publication},
        )
        daemon.start()

        def refused() -> bool:
            return any(
                "is active for PID" in str(e.get("error"))
                for e in log_events(daemon.output(), "stage interrupted; retrying")
            )

        wait_for(refused, 60, "START_REPLICATION refused while the slot is held")
        assert daemon.alive()
    finally:
        holder.close()  # the old walsender goes away
    app.converse("after")
    app.conn.close()
    wait_synced(config, daemon, timeout=60)
    assert daemon.runs == 2
    assert_same(config)
    assert daemon.terminate() == 0


# -- 4. idle source, slot lag warning, invalidated slot ---------------------------------------------


def test_idle_slot_advances_and_slot_lag_warns_once_a_minute(
    services: Services, pg: EmbeddedPostgres, daemons: list[DaemonProcess]
) -> None:
    app = App(services.dsn)
    app.converse("only")
    app.conn.close()
    config_path = services.config(max_slot_lag_bytes=1, log_level="debug")
    config = load(config_path)
    daemon = DaemonProcess(config_path, services.tmp)
    daemons.append(daemon)
    daemon.start()
    wait_synced(config, daemon, timeout=60)

    # No app writes from here on. WAL written in another database of the cluster holds nothing
    # for this slot, yet the slot must move past it (heartbeats, keepalives), or Postgres keeps
    # that WAL for ever.
    other = f"noise_{uuid.uuid4().hex[:8]}"
    other_dsn = pg.create_database(other)
    try:
        with psycopg.connect(other_dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE noise AS SELECT generate_series(1, 5000) AS n")
        target = current_wal_lsn(other_dsn)
        wait_for(
            lambda: (
                (slot_row(services.dsn, config.source.slot) or {}).get("confirmed_flush_lsn", 0) >= target
            ),
            30,
            "confirmed_flush_lsn past WAL written in another database",
        )
    finally:
        pg.drop_database(other)

    # max_slot_lag_bytes = 1: the slot always retains more. Measured every second, warned once.
    def measured() -> int:
        return len(log_events(daemon.output(), "slot lag measured"))

    wait_for(lambda: log_events(daemon.output(), "slot retains too much WAL"), 30, "the warning")
    seen = measured()
    wait_for(lambda: measured() >= seen + 4, 30, "four more measurements over the threshold")
    warnings = log_events(daemon.output(), "slot retains too much WAL")
    assert len(warnings) == 1, warnings
    status = json.loads(cli("status", "--config", str(config_path), "--json").stdout)
    assert status["source"]["slot"]["retained_over_threshold"] is True
    assert warnings[0]["level"] == "warning" and warnings[0]["bytes"] > 1 and warnings[0]["threshold"] == 1
    assert daemon.terminate() == 0


def test_invalidated_slot_is_an_error_saying_what_to_do(
    own_pg: EmbeddedPostgres, own_services: Services, daemons: list[DaemonProcess]
) -> None:
    """The slot lost WAL it needed (max_slot_wal_keep_size) while the daemon was down."""
    services = own_services
    app = App(services.dsn)
    app.converse("x")
    config_path = services.config()
    config = load(config_path)
    daemon = DaemonProcess(config_path, services.tmp)
    daemons.append(daemon)
    daemon.start()
    wait_synced(config, daemon, timeout=60)
    assert daemon.terminate() == 0
    with own_pg.connect() as admin:
        admin.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        admin.execute("SELECT pg_reload_conf()")
    try:

        def invalidated() -> bool:
            app.converse(f"y-{uuid.uuid4().hex[:6]}")  # the app goes on, the slot falls behind
            with own_pg.connect() as admin:
                admin.execute("SELECT pg_switch_wal()")
                admin.execute("CHECKPOINT")
            return (slot_row(services.dsn, config.source.slot) or {}).get("wal_status") == "lost"

        wait_for(invalidated, 60, "the slot invalidated")
    finally:
        with own_pg.connect() as admin:
            admin.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
            admin.execute("SELECT pg_reload_conf()")
        app.conn.close()
    result = cli("run", "--config", str(config_path), timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "was invalidated" in output and "replicator reset" in output, output
    assert "Traceback" not in output


# -- 5. a throttled, failing, partially-accepting target -------------------------------------------

# Every other request of the data path fails in one of the ways AWS fails: throttled, 500, 503,
# reset before or after moto applied it, or a batch only partly accepted. Never two in a row, so
# every request gets through within its retries. DescribeTable (the preflight) is left alone.
FAULT_PATTERN = [
    Action.FORWARD,
    Action.THROTTLE,
    Action.FORWARD,
    Action.UNPROCESSED,
    Action.FORWARD,
    Action.HTTP500,
    Action.FORWARD,
    Action.RESET,
    Action.FORWARD,
    Action.UNPROCESSED,
    Action.FORWARD,
    Action.HTTP503,
    Action.FORWARD,
    Action.RESET_AFTER,
]
DATA_PATH = {"BatchWriteItem", "BatchGetItem", "Query", "GetItem", "S3:PUT", "S3:GET", "S3:POST"}


def test_throttled_and_failing_target_loses_nothing(
    services: Services,
    moto: Any,
    daemons: list[DaemonProcess],
    writers: list[LiveWriter],
    measured: list[str],
) -> None:
    app = App(services.dsn)
    app.converse("pre-big", attachment_bytes=400_000)  # payloads over 350 KiB go to S3
    app.converse("pre-small", resume=False)
    app.conn.close()
    with FaultProxy(moto.endpoint_url, CycleSchedule(FAULT_PATTERN, DATA_PATH)) as proxy:
        config_path = services.config(endpoint=proxy.url)  # S3 through the proxy too
        config = load(config_path)
        daemon = DaemonProcess(config_path, services.tmp)
        daemons.append(daemon)
        writer = LiveWriter(services.dsn, "t", quota=8, pace_s=0.2, delete_every=3, big_every=4)
        writers.append(writer)
        daemon.start()
        wait_for(lambda: slot_row(services.dsn, config.source.slot) is not None, 60, "the slot")
        writer.start()  # while the daemon copies and streams
        writer.wait_written(8)
        writer.stop()
        wait_synced(config, daemon, timeout=180)
        assert daemon.alive() and daemon.runs == 1, "the daemon exited under target faults"
    assert_same(with_target_endpoint(config, moto.endpoint_url))  # read back past the proxy
    measured.append(f"faultproxy: {dict(proxy.counts)}, unprocessed items {proxy.unprocessed_items}")
    for action in Action:
        assert proxy.counts[action] > 0, f"no {action} injected: {dict(proxy.counts)}"
    assert proxy.unprocessed_items > 0
    assert proxy.by_operation[("BatchWriteItem", Action.UNPROCESSED)] > 0
    assert any(op.startswith("S3:") and action != Action.FORWARD for op, action in proxy.by_operation)
    assert log_events(daemon.output(), "retrying DynamoDB/S3 request")  # partial batches re-sent
    assert daemon.terminate() == 0


# -- 6. a large backlog in bounded memory ----------------------------------------------------------

# 100,000 events: 50 times what one poll takes (max_poll_records), so anything held per event
# would show; the bench's memory figure drains 1,000,000 (bench/memory.py). 200,000 here cost
# CI four minutes on one worker for the same peak.
BACKLOG_EVENTS = 100_000
# Peak RSS (VmHWM) of the daemon process while it drains the backlog, printed in the "measured"
# section of every run: 193-207 MiB on a 2-core machine with one Kafka record per event; 221-245
# MiB once a thread's run of changes travelled as one record; 197 MiB since the daemon hands
# freed memory back to the OS (replicator/allocator.py) and the no-blob marks are bounded. The
# bound leaves about 50 MiB of headroom, less than a daemon keeping as little as 0.55 KiB per
# event of the backlog would add.
RSS_BOUND_KIB = 250 * 1024
TARGET_LATENCY_S = 0.002  # per DynamoDB/S3 request: a target slower than the source and Kafka


def bulk_copy_threads(dsn: str, template: str, copies: int, per_transaction: int = 2000) -> int:
    """``copies`` threads whose rows are the template thread's rows (real shapes a graph wrote),
    inserted with INSERT ... SELECT: seconds for what a graph would take hours to write."""
    inserted = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("checkpoint_blobs", "checkpoints", "checkpoint_writes"):
            columns = [
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                    "AND table_name = %s ORDER BY ordinal_position",
                    (table,),
                ).fetchall()
            ]
            rest = ", ".join(c for c in columns if c != "thread_id")
            for first in range(0, copies, per_transaction):
                last = min(copies, first + per_transaction)
                cur = conn.execute(
                    f"INSERT INTO {table} (thread_id, {rest}) "
                    f"SELECT 'bulk-' || g, {rest} FROM {table}, generate_series(%s::int, %s::int) AS g "
                    "WHERE thread_id = %s",
                    (first, last - 1, template),
                )
                inserted += cur.rowcount
    return inserted


def template_rows(dsn: str, thread_id: str) -> int:
    total = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("checkpoint_blobs", "checkpoints", "checkpoint_writes"):
            row = conn.execute(f"SELECT count(*) FROM {table} WHERE thread_id = %s", (thread_id,)).fetchone()
            total += int(row[0]) if row else 0
    return total


@pytest.fixture
def backlog_moto() -> Iterator[EmbeddedMoto]:
    """A target server of the backlog test alone: 400k items make every later moto Query slow
    (moto scans the whole table), so they go away with it."""
    with EmbeddedMoto() as server:
        yield server


@pytest.mark.slow
def test_large_backlog_into_a_slow_target_in_bounded_memory(
    services: Services, backlog_moto: EmbeddedMoto, daemons: list[DaemonProcess], measured: list[str]
) -> None:
    moto = backlog_moto
    create_dynamodb_table(moto.endpoint_url, services.table)
    create_s3_bucket(moto.endpoint_url, services.bucket)
    services = dataclasses.replace(services, moto_url=moto.endpoint_url)
    app = App(services.dsn)
    app.converse("tpl", turns=1, resume=False)  # subgraph, pending interrupt writes, unicode
    app.conn.close()
    per_thread = template_rows(services.dsn, "tpl")
    copies = -(-BACKLOG_EVENTS // per_thread)
    with FaultProxy(moto.endpoint_url, latency_s=TARGET_LATENCY_S) as proxy:
        config_path = services.config(endpoint=proxy.url)
        config = load(config_path)
        daemon = DaemonProcess(config_path, services.tmp)
        daemons.append(daemon)
        daemon.start()
        wait_synced(config, daemon, timeout=60)
        assert daemon.terminate() == 0
        # The backlog builds up while the daemon is down, as after an outage or a first start.
        inserted = bulk_copy_threads(services.dsn, "tpl", copies)
        assert inserted >= BACKLOG_EVENTS

        samples: list[int] = []
        stop = threading.Event()
        started = time.monotonic()
        daemon.start()
        assert daemon.proc is not None
        pid = daemon.proc.pid

        def sample() -> None:
            while not stop.is_set() and daemon.alive():
                with contextlib.suppress(OSError, AssertionError):
                    samples.append(rss_kib(pid))
                stop.wait(0.25)  # the sampling period

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        moto_cpu = cpu_seconds(moto.pid) if moto.pid else 0.0
        try:
            wait_synced(config, daemon, timeout=400)
            peak = rss_kib(pid, "VmHWM")
            daemon_cpu = cpu_seconds(pid)
            moto_cpu = (cpu_seconds(moto.pid) if moto.pid else 0.0) - moto_cpu
        finally:
            stop.set()
            sampler.join()
        took = time.monotonic() - started
        assert daemon.terminate() == 0
    measured.append(
        f"backlog: {inserted} events ({copies} threads x {per_thread} rows) applied in {took:.0f}s "
        f"through {proxy.requests} target requests; RSS max sampled {max(samples) // 1024} MiB, "
        f"peak (VmHWM) {peak // 1024} MiB, bound {RSS_BOUND_KIB // 1024} MiB; CPU seconds: daemon "
        f"{daemon_cpu:.0f}, moto {moto_cpu:.0f}"
    )
    assert peak < RSS_BOUND_KIB, f"daemon peak RSS {peak // 1024} MiB over {RSS_BOUND_KIB // 1024} MiB"
    checked = spot_check_checkpoints(with_target_endpoint(config, moto.endpoint_url), samples=60)
    assert checked == 60


def spot_check_checkpoints(config: Config, samples: int) -> int:
    """A random sample of checkpoints read by id through both savers: checkpoint (channel values
    assembled from blobs), metadata and parent equal. By id, DynamoDBSaver reads with GetItem;
    ``verify`` would also Query the pending writes, and moto's Query scans the whole table
    (400k items here: seconds per request)."""
    with psycopg.connect(config.source.dsn.get_secret_value()) as conn:
        rows = conn.execute(
            "SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints ORDER BY random() LIMIT %s",
            (samples,),
        ).fetchall()
    source = make_source(config.source, MemoryStateStore())
    target: Any = make_sink(config.targets[0]).saver()
    try:
        for thread_id, ns, cid in rows:
            wanted = source.saver().get_tuple(
                {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}
            )
            got = target.repo.get_checkpoint(thread_id=thread_id, checkpoint_ns=ns, checkpoint_id=cid)
            assert wanted is not None and got is not None, (thread_id, ns, cid)
            expected = {"updated_channels": None, **wanted.checkpoint}
            assert {"updated_channels": None, **got["checkpoint"]} == expected, (thread_id, ns, cid)
            assert got["metadata"] == wanted.metadata, (thread_id, ns, cid)
            parent = wanted.parent_config["configurable"]["checkpoint_id"] if wanted.parent_config else None
            assert (got["parent_checkpoint_id"] or None) == parent, (thread_id, ns, cid)
    finally:
        source.close()
    return len(rows)
