"""The host dashboard's pages and the attendance CSV: a login, and a meeting the caller may see
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
from roster.read.selectors import attendance_list, meeting_visible, meetings_visible, roster_read
from roster.read.serializers import meeting_as_dict

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
    meetings = [meeting_as_dict(m) for m in meetings_visible(access=request.access)]
    context = {
        "initial_meetings": meetings,
        "ws_path": WS_DASHBOARD,
        "nothing_shared": request.access.nothing,
    }
    return render(request, "roster/meeting_list.html", context)


@viewer_required
@require_GET
def meeting_detail(request: HttpRequest, meeting_id: str) -> HttpResponse:
    roster = roster_read(meeting=_visible_or_404(request, meeting_id))
    context = {
        "meeting": roster["meeting"],
        "initial_roster": roster,
        "roster_url": reverse("api-roster", args=[meeting_id]),
        "timeline_url": reverse("api-timeline", args=[meeting_id]),
        "csv_url": reverse("attendance-csv", args=[meeting_id]),
        "ws_path": WS_DASHBOARD,
    }
    return render(request, "roster/meeting_detail.html", context)


def _iso(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds") if ms is not None else ""


def _cell(value: str | None) -> str:
    """Neutralise spreadsheet formulas in untrusted text (CSV injection)."""
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@viewer_required
@require_GET
def attendance_csv(request: HttpRequest, meeting_id: str) -> HttpResponse:
    meeting = _visible_or_404(request, meeting_id)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = "".join(
        c if c.isalnum() or c in "-_" else "_" for c in (meeting.external_meeting_id or meeting_id)
    )
    response["Content-Disposition"] = f'attachment; filename="attendance-{name}.csv"'
    writer = csv.writer(response)
    writer.writerow(
        [
            "attendee_id",
            "external_user_id",
            "first_joined",
            "total_seconds_in_meeting",
            "drops",
            "final_presence",
        ]
    )
    for row in attendance_list(meeting=meeting):
        writer.writerow(
            [
                _cell(row["attendee_id"]),
                _cell(row["external_user_id"]),
                _iso(row["first_joined_at"]),
                round(row["total_ms"] / 1000),
                row["drop_count"],
                row["presence"] or "",
            ]
        )
    return response
