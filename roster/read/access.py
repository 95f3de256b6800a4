"""Who may see which meetings: staff, access rules for hosts, host links, and scoped feed tokens.

One :class:`Access` value answers "may this caller see this meeting?" for REST, the dashboard and
the feed alike. A meeting outside it is treated exactly like a meeting that does not exist. It
names the credential it came from, so an open socket can ask again (:func:`access_recheck`)
whatever changed it: admin, a command or a direct database update.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q
from django.utils import timezone

from roster.models import AccessRule, FeedToken
from roster.read.host_links import SESSION_KEY as HOST_LINK_SESSION_KEY
from roster.read.host_links import host_link_live, host_links_live

TOKEN_PREFIX = "crt_"
TOKEN_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is noted at most this often (a busy app
# calling REST many times a second would otherwise write the token's row on every call)


@dataclass(frozen=True, slots=True)
class Access:
    """A set of visible meetings: everything, or the meetings matched by any glob."""

    everything: bool = False
    globs: tuple[str, ...] = ()
    label: str = ""
    # The credential it came from (at most one): it ends when that does, and changes with it.
    link_id: int | None = None  # a host link's session
    token_id: int | None = None  # a feed token
    user_id: int | None = None  # a signed-in user's session

    @property
    def nothing(self) -> bool:
        return not self.everything and not self.globs

    @property
    def credential(self) -> str:
        """Which kind of credential it came from: ``host_link``, ``token``, ``user`` or ''."""
        if self.link_id is not None:
            return "host_link"
        if self.token_id is not None:
            return "token"
        return "user" if self.user_id is not None else ""

    @property
    def ended_message(self) -> str:
        """What a socket is told when its credential ends (error ``revoked``)."""
        return {
            "host_link": "the host link expired or was revoked",
            "token": "the token was revoked",
            "user": "the account was deactivated or removed",
        }.get(self.credential, "access ended")

    def allows(
        self,
        *,
        meeting_id: str,
        external_meeting_id: str = "",
        primary_meeting_id: str | None = None,
        primary_external_meeting_id: str = "",
    ) -> bool:
        """Whether the meeting is visible: its own ids match, or it is a replica and its primary's
        do (DESIGN.md, Hosts: a scope that allows a primary allows its replicas)."""
        if self.everything:
            return True
        ids = (meeting_id, external_meeting_id, primary_meeting_id or "", primary_external_meeting_id)
        return any(fnmatchcase(value, glob) for glob in self.globs for value in ids if value)


NO_ACCESS = Access()


def access_for_user(*, user: AbstractBaseUser | AnonymousUser) -> Access:
    """Staff see every meeting; other users what their (and their groups') rules match."""
    if not user.is_authenticated or not user.is_active:
        return NO_ACCESS
    staff = user.is_staff or user.is_superuser
    globs: Iterable[str] = ()
    if not staff:
        rules = AccessRule.objects.filter(Q(user=user) | Q(group__in=user.groups.all()))
        globs = rules.values_list("meetings", flat=True)
    return _user_access(user.pk, user.get_username(), staff=staff, globs=globs)


def _user_access(user_id: int, username: str, *, staff: bool, globs: Iterable[str]) -> Access:
    label = f"user:{username}"
    if staff:
        return Access(everything=True, label=label, user_id=user_id)
    unique = tuple(sorted(set(globs)))
    return Access(everything="*" in unique, globs=unique, label=label, user_id=user_id)


def _glob_access(glob: str, *, label: str, link_id: int | None = None, token_id: int | None = None) -> Access:
    return Access(everything=glob == "*", globs=(glob,), label=label, link_id=link_id, token_id=token_id)


def _token_access(token_id: int, name: str, meetings: str) -> Access:
    return _glob_access(meetings, label=f"token:{name}", token_id=token_id)


def _link_access(link_id: int, meetings: str) -> Access:
    return _glob_access(meetings, label=f"link:{link_id}", link_id=link_id)


def access_for_session(*, user: AbstractBaseUser | AnonymousUser, session: Any) -> Access | None:
    """What a browser session may see: its signed-in user's (staff: everything; hosts: their
    rules), else the meetings of the host link that opened it while the link lives, else None.
    Pages, REST and the dashboard socket all ask here, on every request."""
    if user.is_authenticated and user.is_active:
        return access_for_user(user=user)
    link = host_link_live(link_id=session.get(HOST_LINK_SESSION_KEY)) if session is not None else None
    if link is None:
        return None
    return _link_access(link.pk, link.meetings)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def feed_token_create(
    *, name: str, meetings: str = "*", can_mint_host_links: bool = False, can_manage_hooks: bool = False
) -> tuple[FeedToken, str]:
    """Create a token; the raw value is returned once and only its hash is stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = FeedToken.objects.create(
        name=name,
        token_hash=token_hash(raw),
        prefix=raw[: len(TOKEN_PREFIX) + 6],
        meetings=meetings or "*",
        can_mint_host_links=can_mint_host_links,
        can_manage_hooks=can_manage_hooks,
    )
    return token, raw


def feed_token_revoke(*, token: FeedToken) -> None:
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])


def feed_tokens_revoke(*, name: str) -> int | None:
    """Revoke every live token named ``name`` (names are not unique); how many were live, or None
    when no token ever had that name. Open sockets on them close within ACCESS_RECHECK_SECONDS."""
    named = FeedToken.objects.filter(name=name)
    revoked = named.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    return revoked if revoked or named.exists() else None


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
    return None if token is None else _token_access(token.pk, token.name, token.meetings)


def access_recheck(*, accesses: Collection[Access]) -> dict[Access, Access | None]:
    """What the credential of each access grants now: an equal value when nothing changed, another
    when its meetings did (a rule added or removed, a glob edited, staff given or taken), None when
    it ended (a token revoked or deleted, a user deactivated or deleted, a host link revoked,
    expired or deleted). An access that names no credential is left out of the answer.

    Open sockets ask this every ACCESS_RECHECK_SECONDS, all of a process's at once (consumers.
    access_watch), so the cost is one query per kind of credential, at most five, however many
    sockets; the database is asked rather than told, so a change made any way at all is seen.
    """
    token_ids = {a.token_id for a in accesses if a.token_id is not None}
    link_ids = {a.link_id for a in accesses if a.link_id is not None}
    user_ids = {a.user_id for a in accesses if a.user_id is not None}
    tokens: dict[int, Access] = {}
    if token_ids:
        live = FeedToken.objects.filter(pk__in=token_ids, revoked_at__isnull=True)
        for pk, name, glob in live.values_list("pk", "name", "meetings"):
            tokens[pk] = _token_access(pk, name, glob)
    links: dict[int, Access] = {}
    if link_ids:
        links = {pk: _link_access(pk, glob) for pk, glob in host_links_live(link_ids=link_ids).items()}
    users = _users_access(user_ids) if user_ids else {}
    answer: dict[Access, Access | None] = {}
    for access in accesses:
        if access.token_id is not None:
            answer[access] = tokens.get(access.token_id)
        elif access.link_id is not None:
            answer[access] = links.get(access.link_id)
        elif access.user_id is not None:
            answer[access] = users.get(access.user_id)
    return answer


def _users_access(user_ids: Collection[int]) -> dict[int, Access]:
    """:func:`access_for_user` of many active users at once (three queries); others are absent."""
    model = get_user_model()
    rows = model._default_manager.filter(pk__in=user_ids, is_active=True).values_list(
        "pk", model.USERNAME_FIELD, "is_staff", "is_superuser"
    )
    people = {pk: (str(username), staff or superuser) for pk, username, staff, superuser in rows}
    hosts = [pk for pk, (_, staff) in people.items() if not staff]
    globs: dict[int, set[str]] = defaultdict(set)
    if hosts:
        own = AccessRule.objects.filter(user_id__in=hosts).values_list("user_id", "meetings")
        of_groups = AccessRule.objects.filter(group__user__in=hosts).values_list("group__user", "meetings")
        for user_id, glob in (*own, *of_groups):
            globs[user_id].add(glob)
    return {
        pk: _user_access(pk, username, staff=staff, globs=globs.get(pk, ()))
        for pk, (username, staff) in people.items()
    }


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ''."""
    if not authorization:
        return ""
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
