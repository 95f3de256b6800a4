"""The URL a host link opens (roster.read.host_links): /link/#<signed value>.

The signed value is in the fragment, which the browser keeps to itself: the page's script posts it
(a form with the CSRF token), so it is never in a URL the server, a proxy or a log sees. A valid
link ends whatever session the browser had and starts one limited to the link's meetings, which
access_for_session checks on every request until the link expires or is revoked.
"""

from __future__ import annotations

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from roster.models import HostLink
from roster.read.host_links import SESSION_KEY, host_link_live, host_link_verify, is_glob
from roster.read.selectors import meeting_get


@sensitive_post_parameters("link")
@never_cache
@require_http_methods(["GET", "POST"])
def host_link_open(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "roster/host_link.html")
    # The value alone, or a whole pasted link (only its fragment counts).
    link = host_link_verify(value=request.POST.get("link", "").strip().rpartition("#")[2])
    if link is None:
        return _refused(request, "This is not a valid host link.", status=404)
    if host_link_live(link_id=link.pk) is None:
        return _refused(request, "This host link has expired or was revoked. Ask for a new one.", status=410)
    logout(request)  # a new session: nothing of the browser's earlier one (or its user) carries over
    request.session[SESSION_KEY] = link.pk
    request.session.set_expiry(link.expires_at)
    return redirect(_landing(link))


def _refused(request: HttpRequest, problem: str, *, status: int) -> HttpResponse:
    return render(request, "roster/host_link.html", {"problem": problem}, status=status)


def _landing(link: HostLink) -> str:
    """The meeting's page for a link to one meeting already known, else the meeting list."""
    meeting = None if is_glob(link.meetings) else meeting_get(meeting_id=link.meetings)
    if meeting is None:
        return reverse("meeting-list")
    return reverse("meeting-detail", args=[meeting.meeting_id])
