"""``--threads`` / ``--threads-from`` mean the same in ``copy``, ``cutover`` and ``verify``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from replicator.cli import cli
from replicator.cli.threads import selected_threads


def test_ids_from_the_option_or_the_file_in_order_each_once(tmp_path: Path) -> None:
    listed = tmp_path / "ids.txt"
    listed.write_text("# a phased move\nb\n\na\nb\n", encoding="utf-8")
    assert selected_threads(" a, b,,a ", None) == ["a", "b"]
    assert selected_threads(None, str(listed)) == ["b", "a"]
    assert selected_threads(None, None) is None


@pytest.mark.parametrize(
    ("ids", "from_file", "message"),
    [
        ("a", "ids.txt", "--threads and --threads-from name the threads twice"),
        (" , ", None, "no thread ids given"),
        (None, "missing.txt", "--threads-from missing.txt: cannot read it"),
    ],
)
def test_bad_selections_exit_2_naming_the_option(
    ids: str | None, from_file: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        selected_threads(ids, from_file)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["copy", "cutover", "verify"])
def test_every_thread_command_takes_both_options(command: str) -> None:
    shown = CliRunner().invoke(cli, [command, "--help"]).output
    assert "--threads TEXT" in shown and "--threads-from FILE" in shown


def test_verify_refuses_thread_and_threads_together(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["verify", "--config", str(tmp_path / "none.toml"), "--thread", "a", "--threads", "b"]
    )
    assert result.exit_code == 2 and "name the threads twice" in result.output
