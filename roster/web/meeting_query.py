"""A meeting list's query string (REST and the list page read the same one) and its cursor.

The cursor is the last row's sort keys, base64url JSON: opaque to clients, checked on the way
back in (a cursor from another sort, or tampered with, is a 400, never a server error).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime

from roster.read.selectors import MEETING_SORTS, PAGE_DEFAULT, PAGE_MAX, MeetingFilter, MeetingPage
from roster.read.serializers import meeting_as_dict

STATUSES = ("active", "ended", "unknown")
Q_MAX = 200
BIGINT = range(-(2**63), 2**63)  # what a database integer holds (SQLite's, PostgreSQL's bigint)


class BadQuery(ValueError):
    """A parameter the list refuses: ``name`` and a sentence for the 400 answer."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True, slots=True)
class MeetingQuery:
    where: MeetingFilter
    after: list[Any] | None
    limit: int


def cursor_encode(*, sort: str, after: list[Any]) -> str:
    raw = json.dumps([sort, after], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(cursor: str, *, sort: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, after = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise BadQuery("cursor", "the cursor is not one this server gave") from None
    keys = MEETING_SORTS[sort].keys
    if (
        cursor_sort != sort
        or not isinstance(after, list)
        or len(after) != len(keys)
        or not all(_fits(value, key.kind) for value, key in zip(after, keys, strict=True))
    ):
        raise BadQuery("cursor", "the cursor is not one this server gave for this sort")
    return after


def _fits(value: Any, kind: type) -> bool:
    """A cursor key the database can compare: of its sort key's type, an integer within 64 bits,
    text without NUL (PostgreSQL refuses it, so either would be a server error, not a 400)."""
    if type(value) is not kind:
        return False
    return value in BIGINT if kind is int else "\x00" not in value


def _epoch_ms(name: str, text: str) -> int | None:
    """An ISO 8601 date or date-time (UTC when it names no zone) as epoch ms."""
    if not text:
        return None
    try:
        moment = parse_datetime(text)
        if moment is None and (day := parse_date(text)) is not None:
            moment = datetime.combine(day, time.min)
    except ValueError:
        moment = None
    if moment is None:
        raise BadQuery(name, f"{name} is an ISO 8601 date or date-time, such as 2026-11-30T09:00:00Z")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def meeting_query_parse(params: Mapping[str, str]) -> MeetingQuery:
    """``q``, ``status``, ``started_after``, ``started_before``, ``sort``, ``cursor``, ``limit``."""
    q = params.get("q", "").strip()
    if len(q) > Q_MAX:
        raise BadQuery("q", f"q is at most {Q_MAX} characters")
    if "\x00" in q:
        raise BadQuery("q", "q cannot hold a NUL character")
    status = params.get("status", "")
    if status not in ("", *STATUSES):
        raise BadQuery("status", f"status is one of {', '.join(STATUSES)}")
    sort = params.get("sort", "") or "active"
    if sort not in MEETING_SORTS:
        raise BadQuery("sort", f"sort is one of {', '.join(MEETING_SORTS)}")
    limit_text = params.get("limit", "")
    if limit_text and not (limit_text.isdigit() and 1 <= int(limit_text) <= PAGE_MAX):
        raise BadQuery("limit", f"limit is a whole number from 1 to {PAGE_MAX}")
    cursor = params.get("cursor", "")
    where = MeetingFilter(
        q=q,
        status=status,
        started_after=_epoch_ms("started_after", params.get("started_after", "")),
        started_before=_epoch_ms("started_before", params.get("started_before", "")),
        sort=sort,
    )
    return MeetingQuery(
        where=where,
        after=_cursor_decode(cursor, sort=sort) if cursor else None,
        limit=int(limit_text) if limit_text else PAGE_DEFAULT,
    )


def meeting_page_as_dict(page: MeetingPage, *, sort: str) -> dict[str, Any]:
    """``{"meetings": [...], "next": cursor or null}`` (DESIGN.md, REST), and ``families`` when a
    row has replicas: their family figures by the row's meeting id (docs/decisions.md)."""
    after = None if page.after is None else cursor_encode(sort=sort, after=page.after)
    listed: dict[str, Any] = {"meetings": [meeting_as_dict(m) for m in page.meetings], "next": after}
    if page.families:
        listed["families"] = {primary: f.as_dict() for primary, f in page.families.items()}
    return listed
