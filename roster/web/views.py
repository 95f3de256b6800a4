"""HTTP: the host dashboard (login required) and the REST API (session or bearer token).

A meeting the caller may not see answers exactly like one that does not exist (404)."""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from roster.domain.fold import STORED_EVENT_FIELDS, StoredEvent
from roster.domain.timeline import timeline_build
from roster.models import Event, Meeting
from roster.read.access import Access, access_for_token, access_for_user, bearer_token
from roster.read.selectors import meeting_visible, meetings_visible, roster_read
from roster.read.serializers import meeting_as_dict

WS_DASHBOARD = "/ws/dashboard/"


def _api_access(request: HttpRequest) -> Access | None:
    token = bearer_token(request.headers.get("Authorization"))
    if token:
        return access_for_token(raw=token)
    if request.user.is_authenticated:
        return access_for_user(user=request.user)
    return None


def _unauthorized() -> JsonResponse:
    response = JsonResponse(
        {"error": "unauthenticated", "message": "log in or send Authorization: Bearer <token>"}, status=401
    )
    response["WWW-Authenticate"] = 'Bearer realm="chime-roster"'
    return response


def _visible_or_404(access: Access, meeting_id: str) -> Meeting:
    meeting = meeting_visible(access=access, meeting_id=meeting_id)
    if meeting is None:
        raise Http404("no such meeting")
    return meeting


@require_GET
def api_meetings(request: HttpRequest) -> JsonResponse:
    access = _api_access(request)
    if access is None:
        return _unauthorized()
    return JsonResponse({"meetings": [meeting_as_dict(m) for m in meetings_visible(access=access)]})


def _api_meeting(request: HttpRequest, meeting_id: str) -> Meeting | JsonResponse:
    """The meeting the caller may see, or the JSON 401/404 to answer (absent == invisible)."""
    access = _api_access(request)
    if access is None:
        return _unauthorized()
    meeting = meeting_visible(access=access, meeting_id=meeting_id)
    if meeting is None:
        return JsonResponse({"error": "not_found", "message": "no such meeting"}, status=404)
    return meeting


@require_GET
def api_roster(request: HttpRequest, meeting_id: str) -> JsonResponse:
    meeting = _api_meeting(request, meeting_id)
    if isinstance(meeting, JsonResponse):
        return meeting
    return JsonResponse(roster_read(meeting=meeting))


@require_GET
def api_timeline(request: HttpRequest, meeting_id: str) -> JsonResponse:
    meeting = _api_meeting(request, meeting_id)
    if isinstance(meeting, JsonResponse):
        return meeting
    rows = Event.objects.filter(meeting_id=meeting.meeting_id).values_list(*STORED_EVENT_FIELDS)
    timeline = timeline_build(meeting.meeting_id, [StoredEvent(*row) for row in rows])
    timeline["end"] = (
        meeting.ended_at if meeting.status == Meeting.Status.ENDED else None
    )  # null: still going
    return JsonResponse(timeline)


@login_required
@require_GET
def meeting_list(request: HttpRequest) -> HttpResponse:
    access = access_for_user(user=request.user)
    meetings = [meeting_as_dict(m) for m in meetings_visible(access=access)]
    return render(
        request, "roster/meeting_list.html", {"initial_meetings": meetings, "ws_path": WS_DASHBOARD}
    )


@login_required
@require_GET
def meeting_detail(request: HttpRequest, meeting_id: str) -> HttpResponse:
    meeting = _visible_or_404(access_for_user(user=request.user), meeting_id)
    roster = roster_read(meeting=meeting)
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


@login_required
@require_GET
def attendance_csv(request: HttpRequest, meeting_id: str) -> HttpResponse:
    meeting = _visible_or_404(access_for_user(user=request.user), meeting_id)
    now_ms = int(time.time() * 1000)
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
    for attendee in meeting.attendees.order_by("attendee_id"):
        total = attendee.joined_ms + (
            now_ms - attendee.joined_since if attendee.joined_since is not None else 0
        )
        writer.writerow(
            [
                _cell(attendee.attendee_id),
                _cell(attendee.external_user_id),
                _iso(attendee.first_joined_at),
                round(total / 1000),
                attendee.drop_count,
                attendee.presence or "",
            ]
        )
    return response
