"""Access globs (fnmatch, case-sensitive) as regular expressions a database can run.

A scope is a glob such as ``acme-*`` (roster.read.access). Python answers one meeting with
``fnmatchcase``; a meeting list asks the database instead, so each glob becomes a regular
expression that means the same on PostgreSQL (``~``, its "advanced" dialect) and in Python's
``re`` (SQLite's REGEXP, as Django defines it). ``fnmatch.translate`` will not do: its output
uses Python-only syntax, and fnmatch's ``[!x]`` is not SQL's ``[^x]``.
"""

from __future__ import annotations

# (?s): "." also matches a newline, in both dialects; \A and \Z anchor at the very ends in both.
_START, _END = r"(?s)\A", r"\Z"


def _literal(char: str) -> str:
    """A character matched as itself: every one that is not a letter or digit is escaped (a
    backslash before an ASCII letter or digit would mean something else in either dialect)."""
    return char if char.isascii() and char.isalnum() else "\\" + char


def _bracket(glob: str, start: int) -> tuple[str, int] | None:
    """The class that opens at ``glob[start] == "["`` and the index after it, or None when it does
    not close (fnmatch then reads "[" as itself)."""
    i = start + 1
    negate = i < len(glob) and glob[i] == "!"
    if negate:
        i += 1
    body_start = i
    if i < len(glob) and glob[i] == "]":  # "]" first is a member, as in fnmatch
        i += 1
    while i < len(glob) and glob[i] != "]":
        i += 1
    if i >= len(glob):
        return None
    members: list[str] = []
    body = glob[body_start:i]
    j = 0
    while j < len(body):
        if j + 2 < len(body) and body[j + 1] == "-":
            low, high = body[j], body[j + 2]
            if low <= high:  # fnmatch drops an empty range (z-a) and keeps the rest
                members.append(f"{_literal(low)}-{_literal(high)}")
            j += 3
        else:
            members.append(_literal(body[j]))
            j += 1
    if not members:
        # Nothing can match ([z-a]); "[!z-a]" is any one character.
        return ("." if negate else "(?!)"), i + 1
    return f"[{'^' if negate else ''}{''.join(members)}]", i + 1


def glob_regex(glob: str) -> str:
    """A regular expression that matches exactly the strings ``fnmatchcase(s, glob)`` matches."""
    parts: list[str] = [_START]
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            parts.append(".*")
            while i + 1 < len(glob) and glob[i + 1] == "*":
                i += 1
        elif char == "?":
            parts.append(".")
        elif char == "[" and (bracket := _bracket(glob, i)) is not None:
            pattern, i = bracket
            parts.append(pattern)
            continue
        else:
            parts.append(_literal(char))
        i += 1
    parts.append(_END)
    return "".join(parts)
