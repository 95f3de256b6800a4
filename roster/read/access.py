"""Who may see which meetings: staff, access rules for hosts, and scoped feed tokens.

One :class:`Access` value answers "may this caller see this meeting?" for REST, the dashboard and
the feed alike. A meeting outside it is treated exactly like a meeting that does not exist.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q
from django.utils import timezone

from roster.models import AccessRule, FeedToken

TOKEN_PREFIX = "crt_"


@dataclass(frozen=True, slots=True)
class Access:
    """A set of visible meetings: everything, or the meetings matched by any glob."""

    everything: bool = False
    globs: tuple[str, ...] = ()
    label: str = ""

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


def access_for_session(*, user: AbstractBaseUser | AnonymousUser, session: Any) -> Access | None:
    """What a browser session may see: its signed-in user's (staff: everything; hosts: their
    rules), or None when nobody is signed in. Pages, REST and the dashboard socket all ask here."""
    if user.is_authenticated and user.is_active:
        return access_for_user(user=user)
    return None


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def feed_token_create(*, name: str, meetings: str = "*") -> tuple[FeedToken, str]:
    """Create a token; the raw value is returned once and only its hash is stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = FeedToken.objects.create(
        name=name, token_hash=token_hash(raw), prefix=raw[: len(TOKEN_PREFIX) + 6], meetings=meetings or "*"
    )
    return token, raw


def feed_token_revoke(*, token: FeedToken) -> None:
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])


def access_for_token(*, raw: str) -> Access | None:
    """The access a bearer token grants; None for an unknown or revoked token."""
    if not raw or len(raw) > 200:
        return None
    token = FeedToken.objects.filter(token_hash=token_hash(raw), revoked_at__isnull=True).first()
    if token is None:
        return None
    FeedToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return Access(everything=token.meetings == "*", globs=(token.meetings,), label=f"token:{token.name}")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ''."""
    if not authorization:
        return ""
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
