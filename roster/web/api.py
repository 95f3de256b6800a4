"""REST (JSON): a logged-in session or ``Authorization: Bearer <token>``.

A meeting the caller may not see answers exactly like one that does not exist (404)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from roster.models import Meeting
from roster.read.access import Access, access_for_session, access_for_token, bearer_token
from roster.read.selectors import attendance_get, meeting_visible, meetings_visible, roster_read, timeline_get
from roster.read.serializers import attendance_as_dict, meeting_as_dict


def _api_access(request: HttpRequest) -> Access | None:
    token = bearer_token(request.headers.get("Authorization"))
    if token:
        return access_for_token(raw=token)
    return access_for_session(user=request.user, session=request.session)


def _unauthorized() -> JsonResponse:
    response = JsonResponse(
        {"error": "unauthenticated", "message": "log in or send Authorization: Bearer <token>"}, status=401
    )
    response["WWW-Authenticate"] = 'Bearer realm="chime-roster"'
    return response


def _meeting_json(
    request: HttpRequest, meeting_id: str, read: Callable[[Meeting], dict[str, Any]]
) -> JsonResponse:
    """``read`` of the meeting, when the caller may see it; else the JSON 401 or 404."""
    access = _api_access(request)
    if access is None:
        return _unauthorized()
    meeting = meeting_visible(access=access, meeting_id=meeting_id)
    if meeting is None:
        return JsonResponse({"error": "not_found", "message": "no such meeting"}, status=404)
    return JsonResponse(read(meeting))


@require_GET
def api_meetings(request: HttpRequest) -> JsonResponse:
    access = _api_access(request)
    if access is None:
        return _unauthorized()
    return JsonResponse({"meetings": [meeting_as_dict(m) for m in meetings_visible(access=access)]})


@require_GET
def api_roster(request: HttpRequest, meeting_id: str) -> JsonResponse:
    return _meeting_json(request, meeting_id, lambda meeting: roster_read(meeting=meeting))


@require_GET
def api_timeline(request: HttpRequest, meeting_id: str) -> JsonResponse:
    return _meeting_json(request, meeting_id, lambda meeting: timeline_get(meeting=meeting))


@require_GET
def api_attendance(request: HttpRequest, meeting_id: str) -> JsonResponse:
    """The attendance summary (the dashboard shows it once the meeting ended)."""
    return _meeting_json(
        request, meeting_id, lambda meeting: attendance_as_dict(attendance_get(meeting=meeting))
    )
