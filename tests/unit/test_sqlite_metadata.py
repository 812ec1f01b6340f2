"""SQLite metadata decodes to what ``SqliteSaver`` reads back (``json.loads``), fast path or not."""

from __future__ import annotations

import json

import pytest

from connectors.sources.sqlite.rows import metadata_tree
from replicator.errors import ErrorKind, ReplicatorError


@pytest.mark.parametrize(
    "text",
    [
        '{"source": "loop", "step": 3, "parents": {}, "writes": {"ü": [1.5, 1e400]}}',  # 1e400: json only
        '{"n": NaN, "big": 123456789012345678901234567890}',  # NaN: json.loads only
        '{"a": 1, "a": 2}',  # the last duplicate wins in both
    ],
)
def test_metadata_decodes_as_json_loads(text: str) -> None:
    expected = json.loads(text)
    got = metadata_tree(text.encode(), "row 1")
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert metadata_tree(text, "row 1").keys() == expected.keys()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_bad_metadata_is_a_malformed_event(text: str) -> None:
    with pytest.raises(ReplicatorError) as raised:
        metadata_tree(text.encode(), "row 7")
    assert raised.value.kind is ErrorKind.MALFORMED_EVENT and "row 7" in str(raised.value)
