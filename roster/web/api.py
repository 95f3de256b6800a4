"""REST (JSON): a logged-in session or ``Authorization: Bearer <token>``.

A meeting the caller may not see answers exactly like one that does not exist (404)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from roster.hooks.selectors import hook_as_dict, hook_of_token, hooks_of_token
from roster.hooks.services import HookRefused, hook_create, hook_delete, hook_enabled_set, hook_secret_rotate
from roster.models import FeedToken, Meeting
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


def _json_object(request: HttpRequest, *, shape: str) -> dict[str, Any] | JsonResponse:
    """The request's JSON object body, or the 400 that says what it should be."""
    try:
        body = json.loads(request.body)
    except ValueError:
        return _error(400, "bad_json", "the body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "bad_json", f"the body is an object: {shape}")
    return body


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
    body = _json_object(request, shape='{"meetings": ..., "hours": ..., "label": ...}')
    if isinstance(body, JsonResponse):
        return body
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


def _hooks_token(request: HttpRequest) -> tuple[FeedToken | None, JsonResponse | None]:
    """The bearer token of a hooks request, if it may manage hooks; else the JSON refusal."""
    token = feed_token_get(raw=bearer_token(request.headers.get("Authorization")))
    if token is None:
        return None, _unauthorized()
    if not token.can_manage_hooks:
        return None, _error(403, "forbidden", "this token may not manage hooks (--can-manage-hooks)")
    return token, None


@_csrf_exempt_for_bearer
@never_cache
def api_hooks(request: HttpRequest) -> JsonResponse:
    """``GET``: the token's hooks. ``POST {"name", "url", "events", "meetings"}``: a new hook (https
    only; its meetings bounded by the token's scope), with its secret, shown this once."""
    token, refusal = _hooks_token(request)
    if token is None:
        return refusal
    if request.method == "GET":
        return JsonResponse({"hooks": [hook_as_dict(hook) for hook in hooks_of_token(token=token)]})
    if request.method != "POST":
        return _error(405, "method_not_allowed", "GET or POST")
    body = _json_object(request, shape='{"name": ..., "url": ..., "events": [...]}')
    if isinstance(body, JsonResponse):
        return body
    try:
        hook, secret = hook_create(
            name=body.get("name"),
            target=body.get("url") if isinstance(body.get("url"), str) else "",
            events=body.get("events"),
            meetings=body.get("meetings", "*"),
            created_by_token=token,
        )
    except HookRefused as refused:
        status = {"forbidden": 403, "forbidden_target": 403, "name_taken": 409}.get(refused.code, 400)
        return _error(status, refused.code, str(refused))
    return JsonResponse({"hook": hook_as_dict(hook), "secret": secret}, status=201)


@_csrf_exempt_for_bearer
@never_cache
def api_hook(request: HttpRequest, hook_id: int) -> HttpResponse:
    """``GET`` one of the token's hooks, ``DELETE`` it (and its deliveries)."""
    token, refusal = _hooks_token(request)
    if token is None:
        return refusal
    hook = hook_of_token(token=token, hook_id=hook_id)
    if hook is None:
        return _error(404, "not_found", "no such hook")
    if request.method == "GET":
        return JsonResponse({"hook": hook_as_dict(hook)})
    if request.method == "DELETE":
        hook_delete(hook=hook)
        return HttpResponse(status=204)
    return _error(405, "method_not_allowed", "GET or DELETE")


@_csrf_exempt_for_bearer
@require_POST
@never_cache
def api_hook_action(request: HttpRequest, hook_id: int, action: str) -> JsonResponse:
    """``POST .../rotate`` (a new secret, shown once; the old one signs for HOOKS_ROTATION_HOURS),
    ``.../pause``, ``.../resume``."""
    token, refusal = _hooks_token(request)
    if token is None:
        return refusal
    hook = hook_of_token(token=token, hook_id=hook_id)
    if hook is None:
        return _error(404, "not_found", "no such hook")
    if action == "rotate":
        secret = hook_secret_rotate(hook=hook)
        return JsonResponse({"hook": hook_as_dict(hook), "secret": secret})
    if action in ("pause", "resume"):
        hook_enabled_set(hook=hook, enabled=action == "resume")
        return JsonResponse({"hook": hook_as_dict(hook)})
    return _error(404, "not_found", "no such action: rotate, pause or resume")
