"""Operations over HTTP: /healthz (public; details for operators), /metrics (token or staff),
the Voice Connector streams page and its JSON (staff), and the queue lag the dashboard header
polls (any login)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from roster.ops.health import OK, health_public, health_report
from roster.ops.metrics import metrics_render
from roster.read.access import bearer_token
from roster.read.selectors import STREAM_STATUSES, queue_lag_get, voice_connector_streams_list

STREAMS_POLL_SECONDS = 5


def _is_staff(request: HttpRequest) -> bool:
    user = request.user
    return user.is_authenticated and user.is_active and user.is_staff


def _json_refusal(request: HttpRequest) -> JsonResponse:
    """403 for a logged-in user who lacks the right, 401 for anyone else."""
    if request.user.is_authenticated:
        return JsonResponse({"error": "forbidden", "message": "staff only"}, status=403)
    return JsonResponse({"error": "unauthenticated", "message": "log in"}, status=401)


def _is_operator(request: HttpRequest) -> bool:
    """``Authorization: Bearer <METRICS_TOKEN>``, or a staff session."""
    expected = settings.METRICS_TOKEN
    token = bearer_token(request.headers.get("Authorization"))
    if token and expected:
        return hmac.compare_digest(token.encode(), expected.encode())
    return _is_staff(request)


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers: no login. Anyone learns ok or fail per part; operators (staff, the
    metrics token) also which queue and which exception class."""
    report = health_report()
    body = report if _is_operator(request) else health_public(report)
    return JsonResponse(body, status=200 if report["status"] == OK else 503)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format for `Authorization: Bearer <METRICS_TOKEN>`, or a staff session."""
    if not _is_operator(request):
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="chime-roster metrics"'
        return response
    return HttpResponse(metrics_render(), content_type=CONTENT_TYPE_LATEST)


def _status_filter(request: HttpRequest) -> str:
    status = request.GET.get("status", "").upper()
    return status if status in STREAM_STATUSES else ""


@login_required
@require_GET
def streams_page(request: HttpRequest) -> HttpResponse:
    """Staff only: streams belong to no meeting (no access rule reaches them) and carry phone numbers."""
    if not _is_staff(request):
        raise PermissionDenied("staff only")
    status = _status_filter(request)
    data = voice_connector_streams_list(status=status)
    groups = [
        {
            "status": name,
            "count": data["counts"][name],
            "streams": [s for s in data["streams"] if s["status"] == name],
        }
        for name in STREAM_STATUSES
        if not status or name == status
    ]
    context = {
        "initial": data,
        "groups": groups,
        "total": sum(data["counts"].values()),
        "status_filter": status,
        "poll_seconds": STREAMS_POLL_SECONDS,
    }
    return render(request, "roster/streams.html", context)


@never_cache
@require_GET
def api_streams(request: HttpRequest) -> JsonResponse:
    if not _is_staff(request):
        return _json_refusal(request)
    return JsonResponse(voice_connector_streams_list(status=_status_filter(request)))


@never_cache
@require_GET
def api_queue_lag(request: HttpRequest) -> JsonResponse:
    if not request.user.is_authenticated:
        return _json_refusal(request)
    return JsonResponse(queue_lag_get())
