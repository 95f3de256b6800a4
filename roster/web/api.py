"""REST (JSON): a logged-in session or ``Authorization: Bearer <token>``.

A meeting the caller may not see answers exactly like one that does not exist (404)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from roster.models import Meeting
from roster.read.access import Access, access_for_session, access_for_token, bearer_token, feed_token_get
from roster.read.host_links import DEFAULT_HOURS, HostLinkRefused, host_link_create
from roster.read.selectors import (
    attendance_get,
    meeting_visible,
    meetings_page,
    roster_family_read,
    timeline_get,
)
from roster.read.serializers import attendance_as_dict
from roster.web.meeting_query import BadQuery, meeting_page_as_dict, meeting_query_parse


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
    try:
        query = meeting_query_parse(request.GET)
    except BadQuery as bad:
        return _error(400, "bad_query", str(bad), param=bad.name)
    page = meetings_page(access=access, where=query.where, after=query.after, limit=query.limit)
    return JsonResponse(meeting_page_as_dict(page, sort=query.where.sort))


@require_GET
def api_roster(request: HttpRequest, meeting_id: str) -> JsonResponse:
    return _meeting_json(request, meeting_id, lambda meeting: roster_family_read(meeting=meeting))


@require_GET
def api_timeline(request: HttpRequest, meeting_id: str) -> JsonResponse:
    return _meeting_json(request, meeting_id, lambda meeting: timeline_get(meeting=meeting))


@require_GET
def api_attendance(request: HttpRequest, meeting_id: str) -> JsonResponse:
    """The attendance summary (the dashboard shows it once the meeting ended)."""
    return _meeting_json(
        request, meeting_id, lambda meeting: attendance_as_dict(attendance_get(meeting=meeting))
    )


def _error(status: int, error: str, message: str, **extra: str) -> JsonResponse:
    return JsonResponse({"error": error, "message": message, **extra}, status=status)


def _csrf_exempt_for_bearer(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """No CSRF check for a bearer request (a browser never adds that header by itself); any other
    request is checked as Django's middleware would, and refused in JSON."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        if not bearer_token(request.headers.get("Authorization")):
            refused = CsrfViewMiddleware(lambda _: None).process_view(request, None, (), {})
            if refused is not None:
                return _error(403, "csrf_failed", "a request without a bearer token needs a CSRF token")
        return view(request, *args, **kwargs)

    return wrapper


@_csrf_exempt_for_bearer
@require_POST
@never_cache
def api_host_links(request: HttpRequest) -> JsonResponse:
    """Mint a host link: a token created with --can-mint-host-links, within its own meetings."""
    token = feed_token_get(raw=bearer_token(request.headers.get("Authorization")))
    if token is None:
        return _unauthorized()
    try:
        body = json.loads(request.body)
    except ValueError:
        return _error(400, "bad_json", "the body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "bad_json", 'the body is an object: {"meetings": ..., "hours": ..., "label": ...}')
    try:
        link, url = host_link_create(
            meetings=body.get("meetings"),
            hours=body.get("hours", DEFAULT_HOURS),
            label=body.get("label", ""),
            created_by_token=token,
        )
    except HostLinkRefused as refused:
        status = 403 if refused.code in ("forbidden", "out_of_scope") else 400
        return _error(status, refused.code, str(refused))
    return JsonResponse({"url": url, "expires_at": link.expires_at.isoformat()}, status=201)
