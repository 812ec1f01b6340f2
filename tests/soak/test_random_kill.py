"""Random-kill soak: the app keeps writing and deleting threads while the daemon is SIGKILLed at
random moments, again and again; afterwards the target must equal the source.

``LGREPL_SOAK_KILLS`` (default 6, what CI runs) sets the number of kills and
``LGREPL_SOAK_SEED`` replays a run (the seed is printed). The kill moments are the random part;
every wait in between is bounded polling of real state.
"""

from __future__ import annotations

import json
import os
import random
import threading

import pytest

from tests.integration.faultkit import (
    LiveWriter,
    Services,
    source_threads,
    verify_all,
    wait_synced,
)
from tests.integration.harness import App, DaemonProcess, cli, load

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = int(os.environ.get("LGREPL_SOAK_KILLS", "6"))
# A kill lands between 0.2 s and 4 s into a daemon's life: during start-up, the consumer group
# join, the initial copy, a backlog after the previous kill, or live streaming.
KILL_AFTER_S = (0.2, 4.0)


def test_random_sigkills_while_the_app_writes(
    services: Services,
    daemons: list[DaemonProcess],
    writers: list[LiveWriter],
    measured: list[str],
) -> None:
    seed = int(os.environ.get("LGREPL_SOAK_SEED") or random.SystemRandom().randrange(1 << 31))
    rng = random.Random(seed)
    app = App(services.dsn)
    for i in range(2):
        app.converse(f"pre-{i}", turns=1)
    app.conn.close()
    config_path = services.config(chunk_rows=20)
    config = load(config_path)
    daemon = DaemonProcess(config_path, services.tmp)
    daemons.append(daemon)
    per_run = 3
    writer = LiveWriter(
        services.dsn, "soak", quota=per_run, pace_s=0.25, delete_every=3, big_every=5, seed=seed
    )
    writers.append(writer)
    writer.start()

    moments = []
    pause = threading.Event()  # never set: its wait() is the random kill moment, not a synchronisation
    daemon.start()
    for _ in range(KILLS):
        writer.allow(writer.quota + per_run)
        moment = rng.uniform(*KILL_AFTER_S)
        pause.wait(moment)
        assert daemon.alive(), f"daemon exited on its own:\n{daemon.output()[-3000:]}"
        assert daemon.kill() == -9
        moments.append(round(moment, 2))
        daemon.start()
    writer.wait_written(writer.quota)
    writer.stop()
    wait_synced(config, daemon, timeout=180)
    report = verify_all(config)
    status = json.loads(cli("status", "--config", str(config_path), "--json").stdout)
    applied = status["targets"]["dynamo"]["events_applied"]
    line = (
        f"soak: kills={KILLS} seed={seed} kill_after_s={moments} conversations={writer.written} "
        f"deletions={writer.deleted} events_applied={applied} (replays included) "
        f"threads={report.threads} checkpoints={report.checkpoints} writes={report.writes} "
        f"mismatches={len(report.differences)}"
    )
    measured.append(line)
    assert report.ok, "\n".join(str(d) for d in report.differences[:30])
    assert report.threads == len(source_threads(config)) > 0
    assert daemon.terminate() == 0
