"""``docs/config-reference.md`` is rendered from the config models (``replicator.configdoc``) and
must stay what they render: a model changed without regenerating the file fails here, naming
the keys that differ and the command that regenerates it."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field, SecretStr

from replicator import configdoc
from replicator.config import Config

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "config-reference.md"
FIX = "python -m replicator.configdoc > docs/config-reference.md"


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models in a field's type (through Optional, list, Annotated and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(arg) for arg in typing.get_args(annotation))


def _expected_tables() -> dict[str, tuple[type[BaseModel], dict[str, Any]]]:
    """Heading -> (model, its keys as written in TOML), walked here independently of configdoc."""
    tables: dict[str, tuple[type[BaseModel], dict[str, Any]]] = {}
    for name, field in Config.model_fields.items():
        models = _models(field.annotation)
        assert models, f"Config.{name} is not a table"
        header = f"[[{name}]]" if typing.get_origin(field.annotation) is list else f"[{name}]"
        for model in models:
            kind_field = model.model_fields.get("kind")
            heading = f"`{header}`"
            if len(models) > 1:
                assert kind_field is not None, f"{model.__name__} is a union member without a kind"
                (kind,) = typing.get_args(kind_field.annotation)
                heading = f'`{header}` kind = "{kind}"'
            keys = {(f.alias or n): f.annotation for n, f in model.model_fields.items()}
            tables[heading] = (model, keys)
    return tables


def _rendered_rows(text: str) -> dict[str, dict[str, str]]:
    """Heading -> key -> its row, read back from the Markdown."""
    rows: dict[str, dict[str, str]] = {}
    heading = ""
    for line in text.splitlines():
        if line.startswith(("## ", "### ")):
            heading = line.split(" ", 1)[1].strip()
        elif line.startswith("| `") and heading:
            key = line.split("`")[1]
            rows.setdefault(heading, {})[key] = line
    return rows


def test_the_committed_reference_is_what_the_models_render() -> None:
    assert REFERENCE.is_file(), f"docs/config-reference.md is missing; generate it: {FIX}"
    problem = configdoc.drift(REFERENCE.read_text(encoding="utf-8"))
    assert problem is None, (
        f"docs/config-reference.md is out of date with the config models; regenerate it: {FIX}\n{problem}"
    )


def test_every_key_of_every_model_has_a_row() -> None:
    rows = _rendered_rows(configdoc.render())
    expected = _expected_tables()
    assert len(expected) >= 4 + 5 + 2 + 4  # every source, target and state kind, and the plain tables
    missing = [
        f"{heading} {key}"
        for heading, (_, keys) in expected.items()
        for key in keys
        if key not in rows.get(heading, {})
    ]
    assert missing == []
    extra = [heading for heading in rows if heading not in expected]
    assert extra == []


def test_secret_keys_are_marked_secret_and_no_other() -> None:
    rows = _rendered_rows(configdoc.render())
    secrets = []
    for heading, (_, keys) in _expected_tables().items():
        for key, annotation in keys.items():
            type_cell = rows[heading][key].split("|")[2]
            assert ("secret" in type_cell) == _is_secret(annotation), rows[heading][key]
            if _is_secret(annotation):
                secrets.append(f"{heading} {key}")
    assert "`[kafka]` sasl_password" in secrets
    assert '`[source]` kind = "postgres" dsn' in secrets
    assert '`[[targets]]` kind = "cosmos" key' in secrets


def test_rows_carry_type_default_bounds_choices_and_the_validators_rule() -> None:
    rows = _rendered_rows(configdoc.render())
    kafka = rows["`[kafka]`"]
    assert kafka["bootstrap_servers"].split("|")[3].strip() == "required"
    assert "`8`" in kafka["partitions"] and ">= 1; <= 10000" in kafka["partitions"]
    assert 'one of `"PLAINTEXT"`, `"SSL"`, `"SASL_PLAINTEXT"`, `"SASL_SSL"`' in kafka["security_protocol"]
    assert "message.max.bytes" in kafka["max_message_bytes"]  # the comment above the field
    postgres = rows['`[source]` kind = "postgres"']
    assert "lower-case Postgres identifier" in postgres["slot"]  # the validator's message
    assert "`schema`" in postgres["schema"]  # the alias, as written in the file
    sqlite = rows['`[source]` kind = "sqlite"']
    assert "the app's SqliteSaver file" in sqlite["path"]  # the comment on the field's line


def test_rendering_is_deterministic() -> None:
    assert configdoc.render() == configdoc.render()


# -- the checker itself can fail ------------------------------------------------------------------------


class _Widget(BaseModel):
    """A widget."""

    # How many widgets.
    count: int = Field(3, ge=1, le=9)
    password: SecretStr | None = None  # the widget's secret
    mode: Literal["a", "b"] = "a"
    label: str = Field(description="What the widget is called.")


class _Root(BaseModel):
    widget: _Widget


class _WiderWidget(_Widget):
    colour: str = "blue"


class _WiderRoot(BaseModel):
    widget: _WiderWidget


def test_a_small_model_renders_every_column() -> None:
    rows = _rendered_rows(configdoc.render(_Root))["`[widget]`"]
    assert rows["count"] == "| `count` | integer | `3` | >= 1; <= 9 | How many widgets. |"
    assert rows["password"] == "| `password` | string, secret | unset |  | the widget's secret |"
    assert rows["mode"] == '| `mode` | string | `"a"` | one of `"a"`, `"b"` |  |'
    assert rows["label"] == "| `label` | string | required |  | What the widget is called. |"


def test_a_new_field_is_drift_naming_the_key() -> None:
    problem = configdoc.drift(configdoc.render(_Root), configdoc.render(_WiderRoot))
    assert problem is not None
    assert "in the models, not in the file: `[widget]` colour" in problem


def test_a_stale_file_fails_the_check_naming_the_key_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = configdoc.render()
    stale = "\n".join(line for line in fresh.splitlines() if not line.startswith("| `sasl_password`")) + "\n"
    path = tmp_path / "config-reference.md"
    path.write_text(stale, encoding="utf-8")
    assert configdoc.main(["--check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "in the models, not in the file: `[kafka]` sasl_password" in err
    assert f"fix: python -m replicator.configdoc > {path}" in err
    path.write_text(fresh, encoding="utf-8")
    assert configdoc.main(["--check", str(path)]) == 0
    assert configdoc.main(["--check", str(tmp_path / "absent.md")]) == 1
