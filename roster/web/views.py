"""The host dashboard's pages and the attendance CSVs: a login, and a meeting the caller may see
(one they may not see answers 404, exactly like one that does not exist)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from roster.models import Meeting
from roster.read.access import access_for_session
from roster.read.selectors import attendance_get, meeting_visible, meetings_page, roster_family_read
from roster.read.serializers import attendance_as_dict
from roster.web.meeting_query import BadQuery, meeting_page_as_dict, meeting_query_parse

WS_DASHBOARD = "/ws/dashboard/"


def viewer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A page for whoever the session may show meetings to (roster.read.access.access_for_session),
    its access in ``request.access``; anyone else is sent to sign in."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        access = access_for_session(user=request.user, session=request.session)
        if access is None:
            return redirect_to_login(request.get_full_path())
        request.access = access
        return view(request, *args, **kwargs)

    return wrapper


def _visible_or_404(request: HttpRequest, meeting_id: str) -> Meeting:
    meeting = meeting_visible(access=request.access, meeting_id=meeting_id)
    if meeting is None:
        raise Http404("no such meeting")
    return meeting


@viewer_required
@require_GET
def meeting_list(request: HttpRequest) -> HttpResponse:
    """The first page of the list the URL asks for (the query string of /api/meetings/, so a
    search can be bookmarked); meeting_list.js pages on and keeps the rows live."""
    try:
        query, error = meeting_query_parse(request.GET.dict() | {"cursor": ""}), ""
    except BadQuery as bad:
        query, error = meeting_query_parse({}), str(bad)
    page = meetings_page(access=request.access, where=query.where, limit=query.limit)
    context = {
        "initial_page": meeting_page_as_dict(page, sort=query.where.sort),
        "where": query.where,
        "dates": {name: _date(getattr(query.where, name)) for name in ("started_after", "started_before")},
        "sorts": MEETING_SORT_LABELS,
        "query_error": error,
        "ws_path": WS_DASHBOARD,
        "nothing_shared": request.access.nothing,
    }
    return render(request, "roster/meeting_list.html", context, status=400 if error else 200)


MEETING_SORT_LABELS = {
    "active": "Active first",
    "newest": "Newest first",
    "oldest": "Oldest first",
    "name": "By name",
}


def _date(ms: int | None) -> str:
    """Epoch ms as the YYYY-MM-DD of a date input (the list's date filters are whole UTC days)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat() if ms is not None else ""


@viewer_required
@require_GET
def meeting_detail(request: HttpRequest, meeting_id: str) -> HttpResponse:
    meeting = _visible_or_404(request, meeting_id)
    roster = roster_family_read(meeting=meeting)
    ended = roster["meeting"]["ended_at"] is not None
    context = {
        "meeting": roster["meeting"],
        # A primary's family panel (shown once it has replicas: the page follows its figures).
        "family": roster.pop("family", None),
        "initial_roster": roster,
        # After the meeting the summary is part of the first paint; the page fetches it when the
        # meeting ends while it is open.
        "initial_attendance": attendance_as_dict(attendance_get(meeting=meeting)) if ended else None,
        "roster_url": reverse("api-roster", args=[meeting_id]),
        "timeline_url": reverse("api-timeline", args=[meeting_id]),
        "attendance_url": reverse("api-attendance", args=[meeting_id]),
        "csv_url": reverse("attendance-csv", args=[meeting_id]),
        "summary_csv_url": reverse("attendance-summary-csv", args=[meeting_id]),
        "ws_path": WS_DASHBOARD,
    }
    return render(request, "roster/meeting_detail.html", context)


def _iso(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds") if ms is not None else ""


def _seconds(ms: int | None) -> int | str:
    return round(ms / 1000) if ms is not None else ""


def _clock(ms: int) -> str:
    """Milliseconds as H:MM:SS, what a spreadsheet reads as a duration."""
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def _cell(value: str | None) -> str:
    """Neutralise spreadsheet formulas in untrusted text (CSV injection)."""
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_response(meeting: Meeting, prefix: str) -> tuple[HttpResponse, Any]:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = "".join(
        c if c.isalnum() or c in "-_" else "_" for c in (meeting.external_meeting_id or meeting.meeting_id)
    )
    response["Content-Disposition"] = f'attachment; filename="{prefix}-{name}.csv"'
    return response, csv.writer(response)


@viewer_required
@require_GET
def attendance_csv(request: HttpRequest, meeting_id: str) -> HttpResponse:
    """One row per person, by name (roster.domain.attendance); the first six columns as before."""
    meeting = _visible_or_404(request, meeting_id)
    response, writer = _csv_response(meeting, "attendance")
    writer.writerow(
        [
            "attendee_id",
            "external_user_id",
            "first_joined",
            "total_seconds_in_meeting",
            "drops",
            "final_presence",
            "last_left",
            "total_time",
        ]
    )
    for person in attendance_get(meeting=meeting).people:
        writer.writerow(
            [
                _cell(person.attendee_id),
                _cell(person.external_user_id),
                _iso(person.first_join),
                _seconds(person.total_ms),
                person.drops,
                person.presence or "",
                _iso(person.last_leave),
                _clock(person.total_ms),
            ]
        )
    return response


@viewer_required
@require_GET
def attendance_summary_csv(request: HttpRequest, meeting_id: str) -> HttpResponse:
    """The meeting's figures, one row: duration, peak and average attendance."""
    meeting = _visible_or_404(request, meeting_id)
    figures = attendance_get(meeting=meeting).meeting
    response, writer = _csv_response(meeting, "attendance-summary")
    writer.writerow(
        [
            "meeting_id",
            "external_meeting_id",
            "started",
            "ended",
            "duration_seconds",
            "duration",
            "peak_attendees",
            "attendees",
            "attendee_seconds",
            "average_attendance",
        ]
    )
    writer.writerow(
        [
            _cell(meeting.meeting_id),
            _cell(meeting.external_meeting_id),
            _iso(figures.started_at),
            _iso(figures.ended_at),
            _seconds(figures.duration_ms),
            _clock(figures.duration_ms) if figures.duration_ms is not None else "",
            figures.peak,
            figures.attendees,
            _seconds(figures.attendee_ms),
            f"{figures.average:.2f}" if figures.average is not None else "",
        ]
    )
    return response
