"""The dynalite test service refuses to start without dynalite, naming how to install it."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicator.errors import ErrorKind, ReplicatorError
from tests.services.dynalite import DYNALITE_BIN_ENV, EmbeddedDynalite, dynalite_bin


@pytest.mark.parametrize("exists", [False, True])
def test_missing_dynalite_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exists: bool
) -> None:
    fake = tmp_path / "dynalite"
    if exists:
        fake.write_text("#!/bin/sh\n")  # there, but not executable
    monkeypatch.setenv(DYNALITE_BIN_ENV, str(fake))
    with pytest.raises(ReplicatorError) as err, EmbeddedDynalite():
        pass
    assert err.value.kind is ErrorKind.CONFIG
    message = str(err.value)
    assert str(fake) in message and "npm ci --prefix" in message and "tests/services" in message


def test_env_points_at_an_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "dynalite"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv(DYNALITE_BIN_ENV, str(fake))
    assert dynalite_bin() == fake
