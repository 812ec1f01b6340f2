import time, threading
from pathlib import Path
import pytest
from tests.integration.harness import DaemonProcess, load, wait_caught_up, write_config
from tests.integration.test_pipeline import App, compare

@pytest.mark.parametrize("session", [6000, 2000])
def test_t(tmp_path, pg_dsn, broker, kafka_topic, moto, dynamo_table, s3_bucket, session):
    p = write_config(tmp_path / "r.toml", dsn=pg_dsn, bootstrap=broker.bootstrap_servers, topic=kafka_topic,
                     endpoint=moto.endpoint_url, table=dynamo_table, bucket=s3_bucket)
    p.write_text(p.read_text().replace("session_timeout_ms = 6000", f"session_timeout_ms = {session}"))
    app = App(pg_dsn)
    for i in range(3):
        app.converse(f"a{i}", turns=2)
    cfg = load(p)
    d = DaemonProcess(p, tmp_path)
    t0 = time.monotonic(); d.start(); wait_caught_up(cfg, d); t1 = time.monotonic()
    print("first caught up", t1 - t0)
    d.kill(); app.converse("b", turns=1)
    t0 = time.monotonic(); d.start(); wait_caught_up(cfg, d); t1 = time.monotonic()
    print("after kill caught up", t1 - t0)
    d.terminate(); app.converse("c", turns=1)
    t0 = time.monotonic(); d.start(); wait_caught_up(cfg, d); t1 = time.monotonic()
    print("after term caught up", t1 - t0)
    t0 = time.monotonic(); r = compare(cfg); print("verify", time.monotonic() - t0, r.ok, r.threads)
    d.stop()
