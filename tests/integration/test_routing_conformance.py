"""The official checkpointer conformance suite against RoutingSaver, on the source and on the target.

Needs the dev dependency ``langgraph-checkpoint-conformance`` (imported inside the test, so the
rest of the suite collects without it; without it this test fails, it is never skipped).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from replicator.migration import Phase
from replicator.routing import RoutingSaver
from tests.integration.harness import move_phase, offline_config

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("phases", "percent"),
    [
        ((), 100),
        ((Phase.FENCING, Phase.CUT_OVER), 100),
        ((Phase.FENCING, Phase.CUT_OVER), 50),
        ((Phase.DUAL_WRITING,), 100),
        ((Phase.DUAL_WRITING, Phase.FENCING, Phase.CUT_OVER), 50),
    ],
    ids=["replicating", "cut_over", "canary_50", "dual_writing", "dual_write_canary_50"],
)
def test_conformance(
    phases: tuple[Phase, ...],
    percent: int,
    tmp_path: Path,
    pg_dsn: str,
    moto: Any,
    dynamo_table: str,
    s3_bucket: str,
) -> None:
    from langgraph.checkpoint.conformance import checkpointer_test, validate

    path = offline_config(
        tmp_path / "r.toml",
        dsn=pg_dsn,
        moto=moto,
        table=dynamo_table,
        bucket=s3_bucket,
    )
    with RoutingSaver.from_config(path) as saver:
        move_phase(path, *phases, percent=percent)
        expected = phases[-1] if phases else Phase.REPLICATING
        assert saver.record().phase is expected

    @checkpointer_test(name=f"RoutingSaver[{expected.value}, {percent}%]")
    async def factory() -> AsyncIterator[RoutingSaver]:
        with RoutingSaver.from_config(path) as routing:
            yield routing

    report = asyncio.run(validate(factory))
    report.print_report()
    assert report.passed_all_base()
