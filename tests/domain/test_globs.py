"""Access globs as regular expressions: Python's ``re`` (SQLite's REGEXP, as Django defines it)
and the database the suite runs on (PostgreSQL's ``~``, or SQLite) agree with ``fnmatchcase``."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from roster.domain.globs import glob_regex
from roster.models import Meeting

# Every character fnmatch or a regex dialect treats specially, letters of both cases, a digit, a
# newline and one letter beyond ASCII.
ALPHABET = "ab AZ09*?[]!-^\\.$()+{}|\n/é"
globs = st.text(alphabet=ALPHABET, max_size=8)
strings = st.text(alphabet=ALPHABET, max_size=8)


@pytest.mark.once  # Python's re only: the test below holds the database to it in each run
@settings(max_examples=3000, deadline=None)
@given(glob=globs, text=strings)
@example(glob="[!a]", text="\n")
@example(glob="[]a]", text="]")
@example(glob="[!]]", text="]")
@example(glob="[a-]", text="-")
@example(glob="[z-a]", text="z")
@example(glob="[!z-a]", text="q")
@example(glob="[^a]", text="^")
@example(glob="[\\]", text="\\")
@example(glob="*\n", text="a\n")
@example(glob="a*", text="a\n")
@example(glob="[", text="[")
@example(glob="[a", text="[a")
@example(glob="a.b", text="axb")
def test_glob_regex_means_what_fnmatchcase_means(glob: str, text: str) -> None:
    assert bool(re.search(glob_regex(glob), text)) == fnmatchcase(text, glob)


# Globs and names where a naive translation goes wrong (negation, "]" first, ranges, escapes,
# regex metacharacters, anchoring at a final newline, case).
TRICKY_GLOBS = [
    "*",
    "acme-*",
    "ACME-*",
    "?",
    "a?c",
    "[!a]*",
    "[]]*",
    "[!]]*",
    "[a-c]x",
    "[z-a]*",
    "[!z-a]",
    "[a-]*",
    "[^a]*",
    "[\\]*",
    "a.c",
    "a+b",
    "(x)",
    "{1}",
    "a|b",
    "$x",
    "*\\*",
    "[",
    "[a",
    "a]",
    "x*y*z",
    "*-emea",
    "é*",
]
TRICKY_NAMES = [
    "acme-1",
    "ACME-1",
    "acme-",
    "a",
    "abc",
    "axc",
    "a.c",
    "aac",
    "b",
    "]x",
    "]",
    "-",
    "^z",
    "\\q",
    "a+b",
    "aab",
    "(x)",
    "{1}",
    "a|b",
    "$x",
    "q\\*",
    "[",
    "[a",
    "a]",
    "xyz",
    "x-y-z",
    "sales-emea",
    "é1",
    "acme-1\n",
    "z",
    "",
]


@pytest.mark.django_db
def test_the_database_agrees_with_fnmatchcase_on_tricky_globs() -> None:
    """``__regex`` is PostgreSQL's ``~`` or SQLite's REGEXP (Python's re.search), whichever the
    suite runs on: the meetings it finds are exactly the ones fnmatchcase accepts."""
    Meeting.objects.bulk_create(
        Meeting(meeting_id=f"m{i:02d}", external_meeting_id=name) for i, name in enumerate(TRICKY_NAMES)
    )
    by_id = dict(Meeting.objects.values_list("meeting_id", "external_meeting_id"))
    disagreements = []
    for glob in TRICKY_GLOBS:
        found = set(
            Meeting.objects.filter(external_meeting_id__regex=glob_regex(glob)).values_list("pk", flat=True)
        )
        expected = {pk for pk, name in by_id.items() if fnmatchcase(name, glob)}
        if found != expected:
            disagreements.append((glob, sorted(by_id[pk] for pk in found ^ expected)))
    assert disagreements == []
    # The set is not trivial: several globs match several names, some none.
    assert sum(1 for glob in TRICKY_GLOBS for name in TRICKY_NAMES if fnmatchcase(name, glob)) > 40
