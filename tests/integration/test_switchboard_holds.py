"""Held threads as a cutover reads them: every position known, even when an app write holds a
thread again while they are read (real Postgres)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.sources.postgres.config import PostgresSourceConfig
from connectors.sources.postgres.switchboard import PostgresSwitchboard

pytestmark = pytest.mark.integration


def test_holds_reports_a_position_for_every_thread_even_when_one_is_held_again_meanwhile(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = PostgresSourceConfig(dsn=pg_dsn, slot="lgr_holds")  # type: ignore[arg-type]
    board, app = PostgresSwitchboard(config), PostgresSwitchboard(config)
    try:
        for thread in ("a", "b"):
            app.hold(thread, epoch=3)
        app.held_at("a", epoch=3)  # "a" has its position, "b" lost it (its writer died)
        app.hold("old", epoch=2)  # an earlier switch's hold: not this epoch's

        # An app write holds "a" again (position unknown until its commit is done) right after
        # the cutover's first statement on the board's connection, as a concurrent app would.
        execute = board.conn.execute
        calls = 0

        def with_a_write_after_the_first(query: Any, params: Any = None) -> Any:
            nonlocal calls
            result = execute(query, params)
            calls += 1
            if calls == 1:
                app.hold("a", epoch=3)
            return result

        monkeypatch.setattr(board.conn, "execute", with_a_write_after_the_first)
        held = board.holds(3)
        monkeypatch.undo()

        assert set(held) == {"a", "b"}
        assert all(isinstance(position, int) and position > 0 for position in held.values()), held
        # "a" is unknown again now: the next read sets it, past the write that held it again.
        again = board.holds(3)
        assert again["a"] >= held["a"] and again["b"] == held["b"]
    finally:
        board.close()
        app.close()
