"""Roles: one capture process and several apply processes sharing each target's consumer group.

The first part drives ``Applier`` instances of one group in this process, over one state store,
with a fake consumer standing in for the group coordinator's decisions (who owns which partition,
whether a commit is accepted): what must hold when partitions move between processes. No service.

The second part runs the real thing: ``replicator run --role capture`` and three
``replicator run --role apply`` processes of one config against real Postgres, the broker and
moto, with the app writing; one applier is killed -9 and a fourth added mid-run; the target ends
equal to the source through both savers, and ``replicator status --json`` listed the live members.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError
from kafka.structs import ConsumerGroupMetadata, MemberState
from rich.console import Console

from connectors.langgraph.blobs import BlobCache
from replicator import codec
from replicator.applier import Applier, _Rebalance, group_members, member_state_name
from replicator.cli.status import members_table
from replicator.config import KafkaConfig
from replicator.embedded import free_port
from replicator.errors import ErrorKind, ReplicatorError
from replicator.events import DataChange, SourceMeta, ThreadDeletion, thread_of
from replicator.state import MemoryStateStore, StateStore, applier_positions, open_state_store
from tests.integration.faultkit import LiveWriter, Services, assert_same, wait_synced
from tests.integration.harness import App, DaemonProcess, cli, load, wait_for

pytestmark = pytest.mark.integration

TOPIC = "roles"


# -- several appliers of one group, in this process ------------------------------------------------


@dataclass
class FakeConsumer:
    """The group coordinator's answers: this member's generation, and whether it accepts a commit."""

    generation: int = 1
    accept_commits: bool = True
    commits: list[dict[Any, Any]] = field(default_factory=list)

    def group_metadata(self) -> ConsumerGroupMetadata:
        return ConsumerGroupMetadata("g", self.generation, f"member-{id(self)}", None, MemberState.STABLE)

    def commit(self, offsets: dict[Any, Any]) -> None:
        if not self.accept_commits:
            raise CommitFailedError("the group rebalanced")
        self.commits.append(offsets)

    def assignment(self) -> set[TopicPartition]:
        return set()

    def committed(self, tp: TopicPartition) -> int | None:
        return None


class FakeFuture:
    exception = None

    def failed(self) -> bool:
        return False


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    def send(self, topic: str, key: bytes | None = None, **_: Any) -> FakeFuture:
        self.sent.append((topic, key))
        return FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        pass


class FakeSink:
    """Records what it applied; refuses for good every event of the threads in ``refuse``."""

    name = "dynamo"

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.refuse = refuse or set()
        self.applied: list[DataChange] = []
        self.cache = BlobCache(1 << 20)

    def apply(self, events: list[DataChange]) -> None:
        bad = [e for e in events if thread_of(e) in self.refuse]
        if bad:
            raise ReplicatorError(ErrorKind.MALFORMED_EVENT, f"refused thread {thread_of(bad[0])}")
        self.applied.extend(events)


def member(state: StateStore, sink: FakeSink, generation: int = 1) -> Applier:
    config = KafkaConfig(bootstrap_servers="k:9092", topic=TOPIC)
    applier = Applier(sink, config, state)  # type: ignore[arg-type]
    applier.consumer = FakeConsumer(generation)
    applier._dlq_producer = FakeProducer()
    return applier


def assign(applier: Applier, *partitions: int, generation: int | None = None) -> None:
    """A rebalance as kafka-python delivers it: revoke everything, assign, then the next poll."""
    listener = _Rebalance(applier)
    listener.on_partitions_revoked({TopicPartition(TOPIC, p) for p in applier.owned})
    if generation is not None:
        applier.consumer.generation = generation
    listener.on_partitions_assigned({TopicPartition(TOPIC, p) for p in partitions})
    applier._take_assignment()


@dataclass
class Rec:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    offset: int


def batch(partition: int, *events: tuple[int, str, int]) -> dict[TopicPartition, list[Rec]]:
    """Records of (offset, thread, source position) on one partition."""
    records = []
    for offset, thread, position in events:
        (record,) = codec.encode(
            ThreadDeletion(thread_id=thread, source=SourceMeta(position=position)), 1_000_000
        )
        records.append(Rec(record.key, record.value, list(record.headers), offset))
    return {TopicPartition(TOPIC, partition): records}


def applied_threads(sink: FakeSink) -> list[str | None]:
    return [thread_of(e) for e in sink.applied]


def test_a_paused_thread_stays_held_when_its_partition_moves_to_another_member() -> None:
    """A dead letter pauses its thread on the member that sent it; the member that takes the
    partition over must hold that thread's later events too (order), and a dead letter of its
    own must not erase the first member's paused thread from the state."""
    state = MemoryStateStore()
    first = member(state, FakeSink(refuse={"poison"}))
    second = member(state, FakeSink(refuse={"other-poison"}))  # started before the dead letter
    assign(first, 0)
    assign(second, 1)
    first._apply(batch(0, (0, "poison", 100), (1, "fine", 110)))
    assert applied_threads(first.sink) == ["fine"]

    assign(first, generation=2)  # partition 0 moves to the second member
    assign(second, 0, 1, generation=2)
    second._apply(batch(0, (2, "poison", 200), (3, "fine", 210)))
    assert applied_threads(second.sink) == ["fine"], "a paused thread was applied out of order"
    second._apply(batch(1, (0, "other-poison", 220)))

    dead = state.get("deadletters:dynamo") or {}
    assert dead["paused_threads"] == ["other-poison", "poison"]
    assert dead["count"] == 3  # the poison, its held successor, the other poison
    assert {(t, k) for t, k in second._dlq_producer.sent} == {
        (f"{TOPIC}.dlq", b"poison"),
        (f"{TOPIC}.dlq", b"other-poison"),
    }
    # A third member joining later knows both paused threads from the state store.
    third = member(state, FakeSink())
    assign(third, 0, 1, generation=3)
    assert {"poison", "other-poison"} <= third.paused


def test_a_member_replaced_after_its_commit_keeps_the_new_owners_position() -> None:
    """A stalled member whose commit went through before it was replaced saves its positions
    after the new owner applied further: the store keeps the higher one, nobody stops."""
    state = MemoryStateStore()
    stalled = member(state, FakeSink())
    owner = member(state, FakeSink(), generation=2)
    assign(stalled, 0)
    stalled._apply(batch(0, (0, "t", 500)))
    assign(owner, 0, generation=2)
    owner._apply(batch(0, (1, "t", 900)))
    # The stalled member resumes: its commit was accepted (it still was the owner then), and
    # its position write arrives after the new owner's.
    stalled._apply(batch(0, (1, "t", 600)))
    saved = state.get("applier:dynamo:0") or {}
    assert (saved["position"], saved["member"], saved["generation"]) == (899, owner.member, 2)
    assert stalled.stats.partitions[0].position == 899

    # A commit the coordinator refuses (the member lost the partition): no position at all.
    stalled.consumer.accept_commits = False
    stalled._apply(batch(0, (2, "t", 2000)))
    assert (state.get("applier:dynamo:0") or {})["position"] == 899

    # Still a bug: the same member's position going back, or another topic's pipeline.
    owner.stats.partitions[0].position = 100
    with pytest.raises(ReplicatorError) as own:
        owner._apply(batch(0, (2, "t", 300)))
    assert own.value.kind is ErrorKind.INTERNAL
    state.put("applier:dynamo:0", {**(state.get("applier:dynamo:0") or {}), "topic": "other-topic"})
    stalled.consumer.accept_commits = True
    stalled.stats.partitions[0].position = 100
    with pytest.raises(ReplicatorError) as other:
        stalled._apply(batch(0, (3, "t", 400)))
    assert other.value.kind is ErrorKind.INTERNAL


def test_a_partition_taken_over_starts_from_the_store_read_before_applying() -> None:
    state = MemoryStateStore()
    first = member(state, FakeSink())
    second = member(state, FakeSink())
    assign(first, 0, 1)
    first._apply(batch(0, (0, "t", 500)))
    first.sink.cache.put(("t", "", "ch", "1"), ("msgpack", b"x"))
    assign(first, 1, generation=2)  # partition 0 goes away: what first remembers of it is stale
    assert len(first.sink.cache) == 0 and set(first.stats.partitions) <= {1}
    assign(second, 0, generation=2)
    second._apply(batch(0, (1, "t", 900)))
    assign(second, generation=3)
    assign(first, 0, 1, generation=3)  # and back
    assert first.stats.partitions[0].position == 899
    assert first.stats.partitions[0].offset == 2

    class Unreachable(MemoryStateStore):
        def all(self) -> dict[str, dict[str, Any]]:
            raise ReplicatorError(ErrorKind.SOURCE_UNREACHABLE, "state database error")

        def prefixed(self, prefix: str) -> dict[str, dict[str, Any]]:
            return self.all()

    broken = member(MemoryStateStore(), FakeSink())
    broken.state = Unreachable()
    with pytest.raises(ReplicatorError):  # the stage restarts; nothing applied with a stale view
        assign(broken, 0)


def test_members_are_the_fresh_documents_of_live_appliers() -> None:
    state = MemoryStateStore()
    applier = member(state, FakeSink())
    assign(applier, 2, 3)
    state.put(member_state_name("dynamo", applier.member), applier.member_doc())
    gone = {**applier.member_doc(), "updated_at": time.time() - 3600}
    state.put(member_state_name("dynamo", "dead-host:1:abc"), gone)
    (found,) = group_members(state, "dynamo")
    assert found["member"] == applier.member and found["partitions"] == [2, 3]
    assert found["host"] and found["pid"] == os.getpid() and found["state"] == "stable"
    assert group_members(state, "other-target") == []


def test_roles_are_checked_before_anything_starts(tmp_path: Path) -> None:
    from replicator.cli.run import ROLES as CLI_ROLES
    from replicator.config import parse_config
    from replicator.daemon import ROLES, Daemon

    assert CLI_ROLES == ROLES
    config = parse_config(
        {
            "source": {"kind": "memory"},
            "state": {"kind": "sqlite", "path": str(tmp_path / "state.db")},
            "kafka": {"bootstrap_servers": "127.0.0.1:9"},
            "targets": [{"name": "a", "kind": "sqlite", "path": str(tmp_path / "a.db")}],
        }
    )
    with pytest.raises(ReplicatorError, match="nothing to capture"):
        Daemon(config, role="capture")
    with pytest.raises(ReplicatorError, match="goes with --role apply"):
        Daemon(config, role="all", only_targets=("a",))
    with pytest.raises(ReplicatorError, match="no target named 'b'"):
        Daemon(config, role="apply", only_targets=("b",))
    daemon = Daemon(config, role="apply", only_targets=("a",))
    assert [t.name for t in daemon.targets()] == ["a"]
    assert daemon.readiness() == (False, "not yet in the consumer group of: a")
    assert "targets" not in daemon.status_report()  # `replicator status` reads the store instead


# -- the real processes ----------------------------------------------------------------------------


@dataclass
class RoleProcess(DaemonProcess):
    """``replicator run --role ...`` as its own process, with its own log and HTTP port."""

    role: str = "all"
    port: int = 0

    def start(self, **env: str) -> None:
        self.runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = self.log_dir / f"daemon-{self.runs}.log"
        self._stderr = self.stderr_path.open("wb")
        command = ["run", "--config", str(self.config_path), "--role", self.role]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "replicator.cli", *command, "--listen", f"127.0.0.1:{self.port}"],
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env, **env},
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200


def status_json(config_path: Path) -> dict[str, Any]:
    result = cli("status", "--config", str(config_path), "--json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def members_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    return list(report["targets"]["dynamo"]["members"])


def splits_the_topic(members: list[dict[str, Any]], pids: set[int], partitions: int) -> bool:
    """Exactly these processes are listed, and they own every partition, each once."""
    owned = [p for m in members for p in m["partitions"]]
    return {m["pid"] for m in members} == pids and sorted(owned) == list(range(partitions))


def wait_members(
    capture: RoleProcess, config_path: Path, appliers: list[RoleProcess], partitions: int, timeout: float
) -> dict[str, Any]:
    """Until the capture process's report lists exactly ``appliers`` sharing every partition,
    then the same from ``replicator status --json`` (the state store, no daemon asked): that
    report."""
    pids = {a.proc.pid for a in appliers if a.proc is not None}
    deadline = time.monotonic() + timeout
    while True:
        for process in [capture, *appliers]:
            assert process.alive(), f"{process.role} exited:\n{process.output()[-3000:]}"
        code, body = capture.get("/status")
        if (
            code == 200
            and "targets" in body
            and splits_the_topic(members_of(json.loads(body)), pids, partitions)
        ):
            report = status_json(config_path)
            if splits_the_topic(members_of(report), pids, partitions):
                return report
        assert time.monotonic() < deadline, f"members never became {sorted(pids)}: {body[:2000]}"
        time.sleep(0.2)


PARTITIONS = 6


@pytest.fixture
def role_services(services: Services) -> Iterator[Services]:
    App(services.dsn).conn.close()  # the app's PostgresSaver tables exist before capture starts
    yield services


def test_one_capture_and_three_apply_processes_survive_a_kill_and_a_newcomer(
    role_services: Services,
    daemons: list[DaemonProcess],
    writers: list[LiveWriter],
    tmp_path: Path,
    measured: list[str],
) -> None:
    started = time.monotonic()
    services = role_services
    config_path = services.config(partitions=PARTITIONS)
    config = load(config_path)

    def process(role: str, name: str) -> RoleProcess:
        started_process = RoleProcess(config_path, tmp_path / name, role=role, port=free_port())
        daemons.append(started_process)
        started_process.start()
        return started_process

    writer = LiveWriter(services.dsn, "roles", quota=3, pace_s=0.2, delete_every=4)
    writers.append(writer)
    writer.start()
    capture = process("capture", "capture")
    appliers = [process("apply", f"apply-{i}") for i in range(3)]

    # Three members share the six partitions; each process is ready in its own sense.
    first = members_of(wait_members(capture, config_path, appliers, PARTITIONS, timeout=60))
    assert all(len(m["partitions"]) == 2 and m["state"] == "stable" for m in first), first
    wait_for(lambda: all(p.ready() for p in [capture, *appliers]), 30, "every process ready")
    code, body = appliers[0].get("/status")
    own = json.loads(body)
    assert code == 200 and own["role"] == "apply" and "targets" not in own
    assert sorted(own["appliers"]["dynamo"]["partitions"]) in [sorted(m["partitions"]) for m in first]
    joined_s = time.monotonic() - started

    # The app goes on; one applier dies with its batch in flight, a fourth one joins.
    writer.allow(writer.written + 4)
    writer.wait_written(writer.written + 1)
    victim = appliers.pop(0)
    assert victim.kill() == -9
    appliers.append(process("apply", "apply-3"))
    listed = wait_members(capture, config_path, appliers, PARTITIONS, timeout=60)
    second = members_of(listed)
    assert victim.proc is not None and victim.proc.pid not in {m["pid"] for m in second}
    table = Console(record=True, width=200)
    table.print(members_table(listed))  # what `replicator status` prints under its table
    text = table.export_text()
    assert all(f" {m['pid']} " in text and m["member_id"] in text for m in second), text
    writer.wait_written(writer.quota)
    writer.stop()

    wait_synced(config, capture, timeout=90)
    applied_s = time.monotonic() - started
    report = assert_same(config)

    # Each partition's position is written by its current owner (heartbeats keep every
    # partition moving), and the members leave the group with a goodbye on SIGTERM.
    owner_of = {p: m["member"] for m in second for p in m["partitions"]}

    def written_by_owners() -> bool:
        state = open_state_store(config, create=False)
        try:
            saved = applier_positions(state, "dynamo")
        finally:
            state.close()
        return all(saved.get(p, {}).get("member") == owner_of[p] for p in range(PARTITIONS))

    verified_s = time.monotonic() - started
    wait_for(written_by_owners, 30, "every partition's position saved by its owner")
    for running in [*appliers, capture]:  # SIGTERM to all at once, then wait for each
        assert running.proc is not None
        running.proc.send_signal(signal.SIGTERM)
    for running in [*appliers, capture]:
        assert running.wait() == 0, running.output()[-3000:]
    state = open_state_store(config, create=False)
    try:
        assert group_members(state, "dynamo") == []
    finally:
        state.close()
    seconds = time.monotonic() - started
    measured.append(
        f"roles: 1 capture + 3 apply processes, {PARTITIONS} partitions, kill -9 one + add one: "
        f"{report.threads} threads equal; members listed after {joined_s:.1f} s, "
        f"caught up after {applied_s:.1f} s, verified after {verified_s:.1f} s, test {seconds:.1f} s"
    )
