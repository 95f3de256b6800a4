"""Host links: a signed, expiring, revocable URL that opens the dashboard for some meetings with no
account (docs/hosts.md). This is how the application that created a Chime meeting hands its host
the roster.

The URL is ``PUBLIC_BASE_URL/link/#<id>.<secret>:<signature>``: Django's signing (SECRET_KEY) over
the link's id and a random secret of which only the SHA-256 is stored, so neither a leaked database
nor a leaked SECRET_KEY alone opens a link. The value travels in the fragment, which browsers never
send: no access log, proxy or Referer holds it; the page at /link/ posts it (roster.web.host_links).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Collection
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.signing import BadSignature, Signer
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from roster.models import TEXT, FeedToken, HostLink

DEFAULT_HOURS = 4
SESSION_KEY = "roster_host_link"  # the link's id, in the session it opened
SALT = "roster.host-link"
_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is noted at most this often


class HostLinkRefused(Exception):
    """Why a link was not minted; ``code`` names the reason (REST answers it as ``error``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def is_glob(meetings: str) -> bool:
    return any(c in meetings for c in "*?[")


def scope_covers(*, scope: str, meetings: str) -> bool:
    """Whether every meeting ``meetings`` can match is one ``scope`` matches, proved from the two
    texts alone (so it holds for meetings that do not exist yet); when in doubt, no.

    Proved: scope ``*``; the scope itself; an exact id the scope matches (a text without glob
    characters matches only itself, as meetingId or externalMeetingId alike); a glob whose literal
    start begins with the prefix of a scope ``<prefix>*`` (every match starts with that prefix).
    """
    if scope == "*" or meetings == scope:
        return True
    if not is_glob(meetings):
        return fnmatchcase(meetings, scope)
    prefix = scope[:-1]
    start = meetings[: next(i for i, c in enumerate(meetings) if c in "*?[")]  # the literal start
    return scope.endswith("*") and not is_glob(prefix) and start.startswith(prefix)


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def host_link_check(*, meetings: Any, hours: Any, label: Any) -> None:
    """Raise HostLinkRefused for values no link may have (they may come straight from JSON)."""
    if not isinstance(meetings, str) or not meetings.strip() or len(meetings) > TEXT:
        raise HostLinkRefused(
            "bad_meetings", f'"meetings" is a meetingId, externalMeetingId or glob of 1 to {TEXT} characters'
        )
    if not meetings.isprintable():
        raise HostLinkRefused("bad_meetings", '"meetings" may not contain control characters')
    longest = settings.HOST_LINK_MAX_HOURS
    if (
        isinstance(hours, bool)
        or not isinstance(hours, int | float)
        or not math.isfinite(hours)
        or not 0 < hours <= longest
    ):
        raise HostLinkRefused(
            "bad_hours", f'"hours" is a number above 0 and at most {longest:g} (HOST_LINK_MAX_HOURS)'
        )
    if not isinstance(label, str) or len(label) > TEXT or not label.isprintable():
        raise HostLinkRefused("bad_label", f'"label" is text of at most {TEXT} characters on one line')


def host_link_create(
    *,
    meetings: str,
    hours: float = DEFAULT_HOURS,
    label: str = "",
    created_by_user: AbstractBaseUser | None = None,
    created_by_token: FeedToken | None = None,
) -> tuple[HostLink, str]:
    """Mint a link and return it with its URL, which exists only in this answer.

    A token mints only when it was created to, and only within its own meetings (scope_covers).
    """
    token = created_by_token
    if token is not None and (not token.can_mint_host_links or token.revoked_at is not None):
        raise HostLinkRefused(
            "forbidden", "this token may not mint host links (create one with --can-mint-host-links)"
        )
    host_link_check(meetings=meetings, hours=hours, label=label)
    if token is not None and not scope_covers(scope=token.meetings, meetings=meetings):
        raise HostLinkRefused(
            "out_of_scope",
            f"{meetings!r} is not provably within this token's meetings {token.meetings!r}: ask for one "
            "meeting the scope matches, the scope itself, or a glob that starts with the scope's prefix",
        )
    secret = secrets.token_urlsafe(24)
    link = HostLink.objects.create(
        meetings=meetings,
        label=label,
        secret_hash=_secret_hash(secret),
        created_by_user=created_by_user,
        created_by_token=token,
        expires_at=timezone.now() + timedelta(hours=hours),
    )
    signed = Signer(salt=SALT).sign(f"{link.pk}.{secret}")
    return link, f"{settings.PUBLIC_BASE_URL.rstrip('/')}{reverse('host-link')}#{signed}"


def host_link_revoke(*, link: HostLink) -> None:
    """End the link: sessions it opened stop at their next request, its sockets within seconds."""
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at"])


def host_link_verify(*, value: str) -> HostLink | None:
    """The link a signed value names when signature and secret hold (expired or revoked ones too);
    None for anything else."""
    try:
        payload = Signer(salt=SALT).unsign(value) if len(value) <= 200 else ""
    except BadSignature:
        return None
    link_id, _, secret = payload.partition(".")
    link = HostLink.objects.filter(pk=int(link_id)).first() if link_id.isdigit() else None
    if link is None or not constant_time_compare(_secret_hash(secret), link.secret_hash):
        return None
    return link


def host_link_live(*, link_id: Any) -> HostLink | None:
    """The link while it may be used (neither expired nor revoked), its use noted at most once a
    minute; None otherwise. Asked on every request and socket check of a link's session."""
    if not isinstance(link_id, int):
        return None
    now = timezone.now()
    link = HostLink.objects.filter(pk=link_id, revoked_at__isnull=True, expires_at__gt=now).first()
    if link is not None and (link.last_used_at is None or now - link.last_used_at >= _TOUCH_EVERY):
        HostLink.objects.filter(pk=link.pk).update(last_used_at=now)
    return link


def host_links_live(*, link_ids: Collection[int]) -> dict[int, str]:
    """The meetings of each of these links that may still be used, by id (an expired, revoked or
    deleted one is absent); their use noted at most once a minute, in one statement. Open
    sockets ask for all their links at once (roster.read.access.access_recheck)."""
    now = timezone.now()
    live = HostLink.objects.filter(pk__in=link_ids, revoked_at__isnull=True, expires_at__gt=now)
    rows = list(live.values_list("pk", "meetings", "last_used_at"))
    stale = [pk for pk, _, used in rows if used is None or now - used >= _TOUCH_EVERY]
    if stale:
        HostLink.objects.filter(pk__in=stale).update(last_used_at=now)
    return {pk: meetings for pk, meetings, _ in rows}
