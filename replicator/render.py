"""The status report as a table for people (rich); scripts use ``status --json``."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress_bar import ProgressBar
from rich.table import Table


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def status_table(report: dict[str, Any]) -> Table:
    source = report["source"]
    slot = source["slot"]
    table = Table(title=f"caught up: {'yes' if report['caught_up'] else 'no'}", title_justify="left")
    for column in ("stage", "position", "lag", "state"):
        table.add_column(column)
    table.add_row("source head", source["head_lsn"], "", source["kind"])
    snapshot = source["snapshot"]
    if snapshot["state"] == "running":
        total = max(int(snapshot["total_estimate"]), int(snapshot["rows"]), 1)
        rate, eta = snapshot.get("rows_per_second"), snapshot.get("eta_seconds")
        detail = _size(int(snapshot.get("bytes", 0)))
        if rate:
            detail += f", {rate:,.0f} rows/s, ETA {eta:,.0f} s"
        table.add_row(
            "initial copy",
            ProgressBar(total=total, completed=int(snapshot["rows"]), width=20),
            f"{snapshot['rows']}/{total} rows",
            detail,
        )
    else:
        table.add_row(
            "initial copy",
            f"{snapshot['rows']} rows",
            "",
            f"{snapshot['state']} (~{snapshot['total_estimate']} rows)",
        )
    table.add_row(
        "captured (slot)",
        slot.get("confirmed_flush_lsn", "-"),
        _size(int(report["lag"]["capture"]["bytes"])),
        ("active" if slot.get("active") else "inactive") if slot.get("exists") else "no slot",
    )
    table.add_row("published", f"{report['lag']['publish']['records']} records", "", "")
    for name, target in report["targets"].items():
        lag = target["lag"]
        table.add_row(
            f"applied: {name}",
            target["applied_lsn"],
            f"{lag['events']} events, {_size(int(lag['bytes']))}, {lag['seconds']:.1f} s",
            "caught up" if target["caught_up"] else "behind",
        )
    migration = report.get("migration") or {}
    if migration.get("available"):
        pause = migration.get("last_pause_ms")
        table.add_row(
            "migration",
            migration["phase"],
            f"last pause {pause:.1f} ms" if pause is not None else "",
            f"app on {migration['store']}"
            + (
                f" ({migration['target']}: {migration['threads_on_target']} threads)"
                if migration["store"] == "target"
                else ""
            )
            + (
                f", {held} held on the source until applied"
                if (held := migration.get("threads_held_on_source"))
                else ""
            ),
        )
    return table


def render_status(report: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(status_table(report))
