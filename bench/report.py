"""Result records, percentile helpers, small PNGs and ``bench/results.md``."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import matplotlib
except ImportError:  # pragma: no cover - depends on the environment
    raise SystemExit("python -m bench needs matplotlib: pip install 'langgraph-replicator[bench]'") from None

matplotlib.use("Agg")
import matplotlib.pyplot as plt

OUT = Path(__file__).resolve().parent
DPI = 80
FIGSIZE = (7.0, 3.4)


@dataclass
class Result:
    """One figure: its headline row and its section of results.md."""

    key: str
    title: str
    measured: str  # the headline number (a ratio or a distribution), as text
    goal: str
    met: bool | None  # None: no goal
    section: str  # markdown
    plots: list[str] = field(default_factory=list)
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def md_table(header: list[str], rows: list[list[str]], right: int = 1) -> str:
    """A markdown table; every column from index ``right`` on is right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def cores(shares: dict[str, float]) -> str:
    """``{"moto": 0.43, ...}`` as ``moto 0.43, daemon 0.37`` (largest first, tiny ones left out)."""
    ordered = sorted(shares.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v:.2f}" for k, v in ordered if v >= 0.01)


def new_figure(title: str) -> tuple[Any, Any]:
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    return fig, ax


def save(fig: Any, name: str, outdir: Path) -> str:
    fig.tight_layout()
    path = outdir / name
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return name


BASELINE, OURS, PROPOSED = "#999999", "#1f77b4", "#2ca02c"


def bar_chart(
    name: str,
    title: str,
    labels: list[str],
    values: list[float],
    ylabel: str,
    outdir: Path,
    colors: list[str] | None = None,
) -> str:
    fig, ax = new_figure(title)
    bars = ax.bar(labels, values, color=colors or [BASELINE] + [OURS] * (len(labels) - 1))
    for bar, value in zip(bars, values, strict=True):
        ax.annotate(
            f"{value:,.0f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel(ylabel)
    return save(fig, name, outdir)


def machine() -> str:
    cpus = os.cpu_count()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    try:
        mem = next(
            int(line.split()[1]) // 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem = 0
    return f"{cpus} cores ({model}), {mem:,} MiB RAM, Python {platform.python_version()}, {platform.system()}"


def write(
    results: list[Result],
    *,
    command: str,
    params: dict[str, Any],
    total_seconds: float,
    extra_sections: list[str],
    outdir: Path = OUT,
) -> Path:
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d')}, {machine()}; the whole run took "
        f"{total_seconds / 60:.1f} min. Everything ran on this one machine: Postgres 15, the Tansu "
        "broker, moto's DynamoDB/S3 server, the daemon and the load generators share the same cores, so "
        "absolute numbers say little about production. Each figure is a ratio or a distribution measured "
        "in this run, against a baseline measured in this run.",
        "",
        "Parameters: " + ", ".join(f"`{k}={v}`" for k, v in params.items()) + ".",
        "",
        _quiet(results),
        "",
        "| # | figure | measured | goal | met |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        met = "n/a" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {i} | {r.title} | {r.measured} | {r.goal} | {met} |")
    lines.append("")
    for i, r in enumerate(results, 1):
        lines.append(f"## {i}. {r.title}")
        lines.append("")
        lines.append(r.section.strip())
        lines.append("")
        for plot in r.plots:
            lines.append(f"![{r.title}]({plot})")
            lines.append("")
        lines.append(f"_Section run time: {r.seconds:.0f} s._")
        lines.append("")
    for section in extra_sections:
        lines.append(section.strip())
        lines.append("")
    path = outdir / "results.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _quiet(results: list[Result]) -> str:
    """How quiet the machine was before each figure: each waits (up to 3 min) for the work of
    the one before to drain, then the CPU's busy share over 2 s is what else was running."""
    if not any("busy_before" in r.data for r in results):  # a run from before the wait
        return (
            "Other work on the machine (1-minute load average just before each figure, this run's own "
            "services idle): "
            + ", ".join(f"{r.key} {r.data['load_before']:.1f}" for r in results if "load_before" in r.data)
            + "."
        )
    return (
        "Before each figure the bench waits (up to 3 min) until the machine is quiet, under 20% of "
        "its CPU busy over 2 s, so that one figure's leftover work (a store compacting, a database "
        "checkpoint) is not measured in the next. CPU busy just before each figure, and the wait: "
        + ", ".join(
            f"{r.key} {r.data['busy_before']:.0%} ({r.data.get('quiet_wait_s', 0):.0f} s)"
            for r in results
            if "busy_before" in r.data
        )
        + "."
    )
