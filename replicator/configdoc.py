"""The config reference (``docs/config-reference.md``), rendered from the pydantic models.

    python -m replicator.configdoc                                    # print the Markdown
    python -m replicator.configdoc > docs/config-reference.md         # regenerate the file
    python -m replicator.configdoc --check docs/config-reference.md   # exit 1 naming the drift

``Config``'s fields are walked recursively: each field whose type is a model is a TOML table
(``[kafka]``; a list of models is an array of tables, ``[[targets]]``), and each member of a
discriminated union (every source kind, every target kind, every state store kind) gets a table
of its own. A key's row gives the key as written in the file (the alias where there is one),
its type (a ``SecretStr`` is marked secret), its default or "required", the bounds and choices
the model checks (``ge``/``le``/``Literal``...) and the rule its validator states (the message
of the ``ValueError`` it raises), and a description: the field's ``description``, else its
attribute docstring, else the comments above the field (and on its line) in the model's source.
A model's docstring, or the docstring of a module that defines only that model, introduces its
table. Nothing but the models' source is read, so the output is the same on every machine.

``tests/unit/test_config_reference.py`` fails when the committed file and this output differ.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, SecretStr, Tag
from pydantic.fields import FieldInfo

__all__ = ["Key", "Table", "drift", "main", "render", "tables"]

DEFAULT_PATH = "docs/config-reference.md"
REGENERATE = f"python -m replicator.configdoc > {DEFAULT_PATH}"
_PRAGMAS = ("noqa", "type:", "fmt:", "pragma", "pyright:", "mypy:")
_DIFF_LINES = 80


@dataclass(frozen=True)
class Key:
    """One row: a key of a TOML table."""

    key: str  # as written in the file
    type: str
    default: str  # a TOML value, "required" or "unset"
    constraints: str
    description: str
    secret: bool


@dataclass(frozen=True)
class Table:
    """One TOML table (or one kind of a table whose ``kind`` picks the model)."""

    path: str  # dotted, as in the file: "kafka", "targets"
    array: bool  # [[path]]: several of them
    kind: str | None  # the union member this table documents, None when there is no union
    model: type[BaseModel]
    intro: str
    keys: tuple[Key, ...]

    @property
    def header(self) -> str:
        return f"[[{self.path}]]" if self.array else f"[{self.path}]"

    @property
    def heading(self) -> str:
        kind = f' kind = "{self.kind}"' if self.kind is not None else ""
        return f"`{self.header}`{kind}"


@dataclass(frozen=True)
class _Section:
    """A field of a model whose type is one model, or a union of models picked by ``kind``."""

    path: str
    array: bool
    required: str
    description: str
    members: tuple[tuple[str | None, type[BaseModel]], ...]
    default_kind: str | None
    rules: tuple[str, ...]


# -- reading the models ------------------------------------------------------------------------------


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _models_in(annotation: Any) -> tuple[bool, list[tuple[str | None, type[BaseModel]]], Any]:
    """(a list of them, the models with their union tag, the union's discriminator) of a type."""
    array = False
    members: list[tuple[str | None, type[BaseModel]]] = []
    discriminator: Any = None

    def walk(tp: Any, tag: str | None) -> None:
        nonlocal array, discriminator
        origin = get_origin(tp)
        if origin is Annotated:
            inner, *extra = get_args(tp)
            for item in extra:
                if isinstance(item, Tag):
                    tag = item.tag
                elif isinstance(item, Discriminator):
                    discriminator = item.discriminator
            walk(inner, tag)
        elif origin in (Union, types.UnionType):
            for arg in get_args(tp):
                walk(arg, tag)
        elif origin in (list, tuple, set, frozenset):
            array = True
            for arg in get_args(tp):
                walk(arg, tag)
        elif _is_model(tp):
            members.append((tag, tp))

    walk(annotation, None)
    return array, members, discriminator


def _field_metadata_discriminator(field: FieldInfo) -> Any:
    for item in field.metadata:
        if isinstance(item, Discriminator):
            return item.discriminator
    return None


def _default_kind(discriminator: Any) -> str | None:
    """The kind a callable discriminator picks for a table that does not say (``_kind_of``)."""
    if not callable(discriminator):
        return None
    try:
        kind = discriminator({})
    except Exception:
        return None
    return kind if isinstance(kind, str) else None


def _toml_key(name: str, field: FieldInfo) -> str:
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    return alias or name


def _defining_class(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The class of the MRO whose own body declares ``name`` (where its comments are)."""
    for cls in model.__mro__:
        if name in inspect.get_annotations(cls):
            return typing.cast(type[BaseModel], cls)
    return model


def _source_of(obj: Any) -> str | None:
    try:
        return textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        return None


def _comment_text(token: str) -> str:
    return token.lstrip("#").strip()


@functools.cache
def _field_notes(cls: type) -> dict[str, str]:
    """Per field declared in ``cls``'s body: its attribute docstring, else the comment lines just
    above it and the comment on its own line(s)."""
    source = _source_of(cls)
    if source is None:
        return {}
    try:
        tree = ast.parse(source)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, tokenize.TokenError):
        return {}
    lines = source.splitlines()
    comments: dict[int, str] = {}
    for token in tokens:
        if token.type == tokenize.COMMENT:
            text = _comment_text(token.string)
            if not text.startswith(_PRAGMAS):
                comments[token.start[0]] = text
    classdef = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if classdef is None:
        return {}
    notes: dict[str, str] = {}
    body = classdef.body
    for index, stmt in enumerate(body):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        following = body[index + 1] if index + 1 < len(body) else None
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            notes[stmt.target.id] = _prose(following.value.value)
            continue
        above: list[str] = []
        line = stmt.lineno - 1
        while line >= 1 and lines[line - 1].strip().startswith("#"):
            if line in comments:
                above.insert(0, comments[line])
            line -= 1
        end = stmt.end_lineno or stmt.lineno
        trailing = [comments[n] for n in range(stmt.lineno, end + 1) if n in comments]
        text = " ".join(part for part in (*above, *trailing) if part)
        if text:
            notes[stmt.target.id] = text
    return notes


def _prose(text: str) -> str:
    """A docstring as Markdown: reST literals as code, hard-wrapped paragraphs joined."""
    text = inspect.cleandoc(text).replace("``", "`")
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        block_lines = [line.rstrip() for line in block.splitlines()]
        if any(line.lstrip().startswith(("- ", "* ")) for line in block_lines):
            paragraphs.append("\n".join(block_lines))
        else:
            paragraphs.append(" ".join(line.strip() for line in block_lines))
    return "\n\n".join(p for p in paragraphs if p)


def _model_intro(model: type[BaseModel]) -> str:
    own = model.__dict__.get("__doc__")
    if isinstance(own, str) and own.strip():
        return _prose(own)
    module = sys.modules.get(model.__module__)
    if module is None or not module.__doc__:
        return ""
    defined = [
        obj
        for obj in vars(module).values()
        if _is_model(obj) and obj.__module__ == model.__module__ and obj is not BaseModel
    ]
    return _prose(module.__doc__) if defined == [model] else ""


def _literal_text(node: ast.expr) -> str | None:
    """The text of a message literal; an f-string's fields as ``...``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
            else:
                parts.append("...")
        return "".join(parts)
    return None


def _raised_messages(func: Callable[..., Any], follow: int = 1) -> list[str]:
    """The messages of the ``ValueError``s a validator raises, and those of the functions it
    calls by name (``follow`` levels deep), in source order."""
    func = getattr(func, "__func__", func)
    source = _source_of(func)
    if source is None:
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found: list[tuple[int, str]] = []
    called: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            raised = node.exc.func
            if isinstance(raised, ast.Name) and raised.id == "ValueError":
                text = _literal_text(node.exc.args[0])
                if text:
                    found.append((node.lineno, text))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.append((node.lineno, node.func.id))
    messages = [text for _, text in sorted(found)]
    if follow > 0:
        namespace = getattr(func, "__globals__", {})
        for _, name in sorted(called):
            target = namespace.get(name)
            if inspect.isfunction(target):
                messages.extend(_raised_messages(target, follow - 1))
    return list(dict.fromkeys(messages))


def _validator_rules(model: type[BaseModel]) -> dict[str, list[str]]:
    """Per field: what its field validators say they refuse."""
    rules: dict[str, list[str]] = {}
    for decorator in model.__pydantic_decorators__.field_validators.values():
        messages = _raised_messages(decorator.func)
        for name in decorator.info.fields:
            rules.setdefault(name, []).extend(m for m in messages if m not in rules.get(name, []))
    return rules


def _model_rules(model: type[BaseModel]) -> list[str]:
    """What the model's own (cross-field) validators say they refuse."""
    messages: list[str] = []
    for decorator in model.__pydantic_decorators__.model_validators.values():
        messages.extend(m for m in _raised_messages(decorator.func) if m not in messages)
    return messages


# -- rendering values ---------------------------------------------------------------------------------


def _type_of(annotation: Any) -> tuple[str, bool, tuple[Any, ...]]:
    """(TOML type, secret, Literal choices) of a leaf field's annotation."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _type_of(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        parts = [_type_of(arg) for arg in get_args(annotation) if arg is not type(None)]
        names = list(dict.fromkeys(p[0] for p in parts))
        choices = tuple(c for p in parts for c in p[2])
        return " or ".join(names), any(p[1] for p in parts), choices
    if origin is Literal:
        values = get_args(annotation)
        names = list(dict.fromkeys(_type_of(type(v))[0] for v in values))
        return " or ".join(names), False, values
    if origin in (list, tuple, set, frozenset):
        inner = [_type_of(arg)[0] for arg in get_args(annotation) if arg is not Ellipsis]
        return f"array of {' or '.join(dict.fromkeys(inner)) or 'values'}", False, ()
    if origin is dict or annotation is dict:
        values = get_args(annotation)[1:]
        return (f"table of {_type_of(values[0])[0]} values" if values else "table"), False, ()
    if annotation is SecretStr:
        return "string", True, ()
    scalars = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation in scalars:
        return scalars[annotation], False, ()
    if _is_model(annotation):
        return "table", False, ()
    return str(getattr(annotation, "__name__", annotation)), False, ()


def _size(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size} {unit}"
    return ""


def _toml_value(value: Any, name: str = "") -> str:
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        size = _size(value) if "bytes" in name else ""
        return f"{value} ({size})" if size else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return f"{{ {pairs} }}" if pairs else "{}"
    return repr(value)


def _bounds(field: FieldInfo, kind: str) -> list[str]:
    found: list[str] = []
    for item in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(item, attr, None)
            if value is not None:
                found.append(f"{sign} {_toml_value(value)}")
        min_length = getattr(item, "min_length", None)
        if min_length is not None:
            if kind == "string" and min_length == 1:
                found.append("not empty")
            else:
                found.append(f"at least {min_length} {'characters' if kind == 'string' else 'entries'}")
        max_length = getattr(item, "max_length", None)
        if max_length is not None:
            found.append(f"at most {max_length} {'characters' if kind == 'string' else 'entries'}")
        pattern = getattr(item, "pattern", None)
        if pattern is not None:
            found.append(f"matches `{pattern}`")
    return found


def _key(model: type[BaseModel], name: str, field: FieldInfo, rules: dict[str, list[str]]) -> Key:
    kind, secret, choices = _type_of(field.annotation)
    if field.is_required():
        default = "required"
    else:
        value = field.get_default(call_default_factory=True)
        default = "unset" if value is None else f"`{_toml_value(value, name)}`"
    constraints: list[str] = []
    if len(choices) == 1 and name == "kind":
        constraints.append(f"`{_toml_value(choices[0])}`")
    elif choices:
        constraints.append("one of " + ", ".join(f"`{_toml_value(c)}`" for c in choices))
    constraints.extend(_bounds(field, kind))
    constraints.extend(rules.get(name, []))
    description = field.description or _field_notes(_defining_class(model, name)).get(name, "")
    return Key(
        key=_toml_key(name, field),
        type=f"{kind}, secret" if secret else kind,
        default=default,
        constraints="; ".join(constraints),
        description=_prose(description) if field.description else description,
        secret=secret,
    )


def _ordered_fields(model: type[BaseModel]) -> list[tuple[str, FieldInfo]]:
    """``kind`` first (it picks the model), then the fields as the model declares them."""
    fields = list(model.model_fields.items())
    return sorted(fields, key=lambda item: item[0] != "kind")


# -- walking Config -----------------------------------------------------------------------------------


def _sections(model: type[BaseModel], prefix: str = "") -> Iterator[_Section]:
    notes = _field_notes(model)
    rules = _validator_rules(model)
    for name, field in model.model_fields.items():
        array, members, discriminator = _models_in(field.annotation)
        if not members:
            continue
        discriminator = discriminator or _field_metadata_discriminator(field)
        key = _toml_key(name, field)
        path = f"{prefix}{key}"
        if field.is_required():
            required = "required"
            least = [b for b in _bounds(field, "array") if b.startswith("at least")]
            if array and least:
                required += ", " + least[0].removesuffix(" entries")
        else:
            required = "optional"
        yield _Section(
            path=path,
            array=array,
            required=required,
            description=field.description or notes.get(name, ""),
            members=tuple(members),
            default_kind=_default_kind(discriminator) if len(members) > 1 else None,
            rules=tuple(rules.get(name, [])),
        )
        for _, member in members:
            yield from _sections(member, f"{path}.")


def _table(section: _Section, kind: str | None, model: type[BaseModel]) -> Table:
    rules = _validator_rules(model)
    keys = tuple(
        _key(model, name, field, rules)
        for name, field in _ordered_fields(model)
        if not _models_in(field.annotation)[1]
    )
    return Table(section.path, section.array, kind, model, _model_intro(model), keys)


def tables(root: type[BaseModel] | None = None) -> list[Table]:
    """Every table of the config, in the order the models declare them."""
    found = []
    for section in _sections(root or _config()):
        union = len(section.members) > 1
        for tag, model in section.members:
            found.append(_table(section, (tag or _kind_of(model)) if union else None, model))
    return found


def _kind_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    if field is None:
        return None
    choices = _type_of(field.annotation)[2]
    return str(choices[0]) if len(choices) == 1 else None


def _config() -> type[BaseModel]:
    from replicator.config import Config

    return Config


# -- Markdown -------------------------------------------------------------------------------------------


_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


def _text(text: str) -> str:
    """Prose: ``<account>`` shown as written, not taken for an HTML tag (code spans kept)."""
    pieces = text.split("`")
    return "`".join(_TAG_START.sub("&lt;", p) if i % 2 == 0 else p for i, p in enumerate(pieces))


def _cell(text: str) -> str:
    """Prose in a table cell: on one line, its pipes escaped."""
    return _text(text.replace("\n", " ")).replace("|", "\\|")


_HEADER = """\
# Configuration reference

<!-- Generated by `python -m replicator.configdoc` from the config models: do not edit by hand.
     tests/unit/test_config_reference.py fails when this file and the models differ. -->

Every key of the TOML file that `--config FILE` names, generated from the pydantic models that
read it (`replicator/config.py`, `connectors/sources/*/config.py`, `connectors/sinks/*_config.py`).
After changing a model, regenerate it: `{regenerate}`.

{module}

How to read the tables:

- **key**: as written in its TOML table. A table whose `kind` picks the model (`[source]`,
  `[[targets]]`, `[state]`) has one table per kind here.
- **type**: the TOML type. *secret*: the value is kept in a `SecretStr`, so printing the config,
  a status or a log never shows it; write it as `"${{VAR}}"` to keep it out of the file.
- **default**: the value when the key is absent; *required*: it has none; *unset*: absent means
  off, or derived (the description says from what).
- **constraints**: the bounds and choices the model checks, and what its validators refuse
  (`...` stands for the offending value). A key that is not in the table is an error.
- Any string may hold `${{VAR}}`, replaced by the environment variable when the file is loaded; an
  unset variable is an error naming the key.
"""


def render(root: type[BaseModel] | None = None) -> str:
    """The whole reference as Markdown (deterministic: the same models give the same text)."""
    model = root or _config()
    module = sys.modules.get(model.__module__)
    lines = [
        _HEADER.format(
            regenerate=REGENERATE, module=_text(_prose(module.__doc__)) if module and module.__doc__ else ""
        ).rstrip(),
        "",
    ]
    sections = list(_sections(model))
    lines += ["## Tables", "", "| table | | kinds | what |", "|---|---|---|---|"]
    for section in sections:
        header = f"[[{section.path}]]" if section.array else f"[{section.path}]"
        kinds = ""
        if len(section.members) > 1:
            names = [tag or _kind_of(m) or "?" for tag, m in section.members]
            kinds = ", ".join(
                f"`{n}`" + (" (when `kind` is absent)" if n == section.default_kind else "") for n in names
            )
        what = section.description
        if not what and len(section.members) == 1:
            what = _model_intro(section.members[0][1]).split("\n\n")[0]
        lines.append(
            f"| [`{header}`](#{_anchor(header)}) | {section.required} | {_cell(kinds)} | {_cell(what)} |"
        )
    rules = _model_rules(model)
    if rules:
        lines += ["", "Rules across tables (the file is refused otherwise):", ""]
        lines += [f"- {_text(rule)}" for rule in rules]
    by_path: dict[str, list[Table]] = {}
    for table in tables(model):
        by_path.setdefault(table.path, []).append(table)
    for section in sections:
        header = f"[[{section.path}]]" if section.array else f"[{section.path}]"
        lines += ["", f"## `{header}`", ""]
        facts = [f"{section.required.capitalize()}."]
        if section.description:
            facts.append(_text(section.description))
        if section.default_kind is not None:
            facts.append(f'`kind` picks one of the tables below; absent: `kind = "{section.default_kind}"`.')
        facts += [_text(rule) for rule in section.rules]
        lines.append(" ".join(facts))
        union = len(section.members) > 1
        for table in by_path.get(section.path, []):
            if union:
                lines += ["", f"### {table.heading}"]
            if table.intro:
                lines += ["", _text(table.intro)]
            lines += ["", "| key | type | default | constraints | description |", "|---|---|---|---|---|"]
            for key in table.keys:
                lines.append(
                    f"| `{key.key}` | {_cell(key.type)} | {_cell(key.default)} | "
                    f"{_cell(key.constraints)} | {_cell(key.description)} |"
                )
    return "\n".join(lines) + "\n"


def _anchor(header: str) -> str:
    """GitHub's anchor for a ``## [header]`` heading."""
    return re.sub(r"[^a-z0-9 _-]", "", header.lower()).replace(" ", "-")


# -- drift ------------------------------------------------------------------------------------------------


def _rows(text: str) -> dict[str, str]:
    """``"<heading> <key>" -> row`` of every key row of a rendered reference."""
    rows: dict[str, str] = {}
    heading = ""
    for line in text.splitlines():
        if line.startswith(("## ", "### ")):
            heading = line.split(" ", 1)[1].strip()
        else:
            match = re.match(r"^\| `([^`]+)` \|", line)
            if match and heading:
                rows[f"{heading} {match.group(1)}"] = line
    return rows


def drift(actual: str, expected: str | None = None) -> str | None:
    """None when ``actual`` is the rendered reference; else what differs, keys first."""
    expected = render() if expected is None else expected
    if actual == expected:
        return None
    want, have = _rows(expected), _rows(actual)
    lines = []
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    changed = [k for k in want if k in have and want[k] != have[k]]
    for label, names in (
        ("in the models, not in the file", missing),
        ("in the file, no longer in the models", extra),
        ("changed", changed),
    ):
        if names:
            lines.append(f"{label}: {', '.join(names)}")
    diff = list(
        difflib.unified_diff(
            actual.splitlines(), expected.splitlines(), "committed", "generated", lineterm="", n=1
        )
    )
    if len(diff) > _DIFF_LINES:
        diff = [*diff[:_DIFF_LINES], f"... ({len(diff) - _DIFF_LINES} more diff lines)"]
    return "\n".join([*lines, *diff])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m replicator.configdoc",
        description="Print the config reference (Markdown) rendered from the config models.",
    )
    parser.add_argument(
        "--check",
        metavar="FILE",
        help=f"compare FILE with the rendered reference; exit 1 naming what differs (e.g. {DEFAULT_PATH})",
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check is None:
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.flush()
        return 0
    try:
        actual = Path(args.check).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot read {args.check}: {exc.strerror or exc}", file=sys.stderr)
        print(f"fix: python -m replicator.configdoc > {args.check}", file=sys.stderr)
        return 1
    found = drift(actual, text)
    if found is None:
        print(f"ok: {args.check} matches the config models")
        return 0
    print(f"{args.check} differs from the config models:", file=sys.stderr)
    print(found, file=sys.stderr)
    print(f"fix: python -m replicator.configdoc > {args.check}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
