"""docs/security.md names, for every boundary, the test that proves it: each name must exist, so
the page cannot point at a test that was renamed or removed (issue #14.9)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "security.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def references(text: str) -> list[tuple[str, str | None]]:
    """(file, test) for each `tests/x.py::name`, `tests/x.py` and `::name` (the last file named
    before it, in the same table row)."""
    found = []
    for line in text.splitlines():
        current = None
        for match in REFERENCE.finditer(line):
            path, name = match.groups()
            if path is None and name is None:
                continue
            current = path or current
            assert current, f"`::{name}` with no file before it: {line}"
            found.append((current, name))
    return found


def test_every_test_the_security_page_names_exists():
    found = references(PAGE.read_text())
    assert len(found) > 40
    for path, name in found:
        source = (ROOT / path).read_text()
        assert name is None or re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name}"


def test_the_reader_of_references_sees_continuations_and_bare_files():
    row = "| x | `tests/a.py::test_one`, `::test_two`, `tests/b.py` (note) |"
    assert references(row) == [("tests/a.py", "test_one"), ("tests/a.py", "test_two"), ("tests/b.py", None)]
