"""Every clause of the sink contract (``suite.CONTRACTS``) against every target (``conftest.TARGETS``)."""

from __future__ import annotations

import pytest

from tests.contract.suite import CONTRACTS, Contract, SinkTarget


@pytest.mark.parametrize("contract", [pytest.param(c, id=c.id, marks=c.marks) for c in CONTRACTS])
def test_sink_contract(sink_target: SinkTarget, contract: Contract, request: pytest.FixtureRequest) -> None:
    fixtures = {name: request.getfixturevalue(name) for name in contract.fixtures}
    contract.run(sink_target, **fixtures)
