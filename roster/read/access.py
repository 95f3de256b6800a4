"""Who may see which meetings: staff, access rules for hosts, host links, and scoped feed tokens.

One :class:`Access` value answers "may this caller see this meeting?" for REST, the dashboard and
the feed alike. A meeting outside it is treated exactly like a meeting that does not exist.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q
from django.utils import timezone

from roster.models import AccessRule, FeedToken
from roster.read.host_links import SESSION_KEY as HOST_LINK_SESSION_KEY
from roster.read.host_links import host_link_live

TOKEN_PREFIX = "crt_"
TOKEN_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is noted at most this often (a busy app
# calling REST many times a second would otherwise write the token's row on every call)


@dataclass(frozen=True, slots=True)
class Access:
    """A set of visible meetings: everything, or the meetings matched by any glob."""

    everything: bool = False
    globs: tuple[str, ...] = ()
    label: str = ""
    link_id: int | None = None  # a host link's session: ends when the link does

    @property
    def nothing(self) -> bool:
        return not self.everything and not self.globs

    def allows(self, *, meeting_id: str, external_meeting_id: str = "") -> bool:
        if self.everything:
            return True
        return any(
            fnmatchcase(meeting_id, glob) or (external_meeting_id and fnmatchcase(external_meeting_id, glob))
            for glob in self.globs
        )


NO_ACCESS = Access()


def access_for_user(*, user: AbstractBaseUser | AnonymousUser) -> Access:
    """Staff see every meeting; other users what their (and their groups') rules match."""
    if not user.is_authenticated or not user.is_active:
        return NO_ACCESS
    if user.is_staff or user.is_superuser:
        return Access(everything=True, label=f"user:{user.get_username()}")
    rules = AccessRule.objects.filter(Q(user=user) | Q(group__in=user.groups.all()))
    globs = tuple(sorted(set(rules.values_list("meetings", flat=True))))
    return Access(everything="*" in globs, globs=globs, label=f"user:{user.get_username()}")


def _glob_access(glob: str, *, label: str, link_id: int | None = None) -> Access:
    return Access(everything=glob == "*", globs=(glob,), label=label, link_id=link_id)


def access_for_session(*, user: AbstractBaseUser | AnonymousUser, session: Any) -> Access | None:
    """What a browser session may see: its signed-in user's (staff: everything; hosts: their
    rules), else the meetings of the host link that opened it while the link lives, else None.
    Pages, REST and the dashboard socket all ask here, on every request."""
    if user.is_authenticated and user.is_active:
        return access_for_user(user=user)
    link = host_link_live(link_id=session.get(HOST_LINK_SESSION_KEY)) if session is not None else None
    if link is None:
        return None
    return _glob_access(link.meetings, label=f"link:{link.pk}", link_id=link.pk)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def feed_token_create(
    *, name: str, meetings: str = "*", can_mint_host_links: bool = False
) -> tuple[FeedToken, str]:
    """Create a token; the raw value is returned once and only its hash is stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = FeedToken.objects.create(
        name=name,
        token_hash=token_hash(raw),
        prefix=raw[: len(TOKEN_PREFIX) + 6],
        meetings=meetings or "*",
        can_mint_host_links=can_mint_host_links,
    )
    return token, raw


def feed_token_revoke(*, token: FeedToken) -> None:
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])


def feed_token_get(*, raw: str) -> FeedToken | None:
    """The live token of a raw bearer value, its use noted (at most once a minute); None for an
    unknown or revoked one."""
    if not raw or len(raw) > 200:
        return None
    token = FeedToken.objects.filter(token_hash=token_hash(raw), revoked_at__isnull=True).first()
    now = timezone.now()
    if token is not None and (token.last_used_at is None or now - token.last_used_at >= TOKEN_TOUCH_EVERY):
        FeedToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def access_for_token(*, raw: str) -> Access | None:
    """The access a bearer token grants; None for an unknown or revoked token."""
    token = feed_token_get(raw=raw)
    return None if token is None else _glob_access(token.meetings, label=f"token:{token.name}")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ''."""
    if not authorization:
        return ""
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
