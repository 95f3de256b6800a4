"""Managing hooks: made by operators (admin, ``hook_create``) or by tokens allowed to (REST), paused,
rotated, mended and deleted. Reads are in :mod:`roster.hooks.selectors`."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from roster.domain.hook_events import EVENT_TYPES
from roster.hooks.outbox import hooks_changed
from roster.hooks.targets import TargetRefused, target_parse
from roster.models import FeedToken, Hook, HookDelivery

SECRET_PREFIX = "whsec_"


class HookRefused(ValueError):
    """A hook that may not be made or changed so: ``code`` is what REST answers."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def events_clean(*, events: Sequence[str] | str | None) -> list[str]:
    """The event-type filter: a list or a comma separated string; empty = every type."""
    if events is None:
        return []
    if isinstance(events, str):
        events = [part.strip() for part in events.split(",")]
    if not isinstance(events, list | tuple) or not all(isinstance(e, str) for e in events):
        raise HookRefused("bad_events", "events is a list of event type names")
    wanted = [e for e in events if e]
    unknown = sorted(set(wanted) - set(EVENT_TYPES))
    if unknown:
        raise HookRefused("bad_events", f"unknown event types: {', '.join(unknown)}")
    return sorted(set(wanted), key=EVENT_TYPES.index)


def hook_create(
    *,
    name: str,
    target: str,
    events: Sequence[str] | str | None = None,
    meetings: str = "*",
    created_by_token: FeedToken | None = None,
    created_by_user: AbstractBaseUser | None = None,
) -> tuple[Hook, str]:
    """A new hook and its secret (shown once: return it to whoever asked, store nothing else).
    A token's hook may target an https URL only (sns:/sqs: are for operators), and its meetings
    are bounded by the token's scope on every delivery."""
    if not isinstance(name, str) or not name.strip() or len(name) > 1024:
        raise HookRefused("bad_name", "a hook has a name")
    if not isinstance(meetings, str) or not meetings.strip():
        raise HookRefused("bad_meetings", "meetings is a glob on externalMeetingId or meetingId")
    if created_by_token is not None and not created_by_token.can_manage_hooks:
        raise HookRefused("forbidden", "this token may not manage hooks")
    try:
        target_parse(target=target, operator=created_by_token is None)
    except TargetRefused as refused:
        raise HookRefused(refused.code, str(refused)) from refused
    secret = secret_new()
    try:
        with transaction.atomic():
            hook = Hook.objects.create(
                name=name.strip(),
                target=target.strip(),
                events=events_clean(events=events),
                meetings=meetings.strip(),
                secret=secret,
                created_by_token=created_by_token,
                created_by_user=created_by_user,
            )
    except IntegrityError as exc:
        raise HookRefused("name_taken", f"a hook named {name!r} exists") from exc
    transaction.on_commit(hooks_changed)
    hooks_changed()
    return hook, secret


def hook_secret_rotate(*, hook: Hook, hours: float | None = None) -> str:
    """A new secret, returned once; the old one keeps signing for ``hours`` (HOOKS_ROTATION_HOURS
    by default, 0 = at once), so receivers can move to the new one without missing a delivery."""
    hours = settings.HOOKS_ROTATION_HOURS if hours is None else hours
    secret = secret_new()
    hook.previous_secret = hook.secret if hours > 0 else ""
    hook.previous_secret_until = timezone.now() + timedelta(hours=hours) if hours > 0 else None
    hook.secret = secret
    hook.save(update_fields=["secret", "previous_secret", "previous_secret_until", "updated_at"])
    return secret


def hook_enabled_set(*, hook: Hook, enabled: bool) -> None:
    """Pause (deliveries queue up, none is sent) or resume a hook."""
    hook.enabled = enabled
    hook.save(update_fields=["enabled", "updated_at"])


def hook_mend(*, hook: Hook) -> None:
    """Close a broken hook's circuit by hand (an operator fixed the receiver): its pending
    deliveries are due at once."""
    now = timezone.now()
    Hook.objects.filter(pk=hook.pk).update(
        broken_at=None, probe_at=None, broken_reason="", consecutive_failures=0
    )
    HookDelivery.objects.filter(hook=hook, status=HookDelivery.Status.PENDING).update(next_attempt_at=now)
    hook.refresh_from_db()


def hook_delete(*, hook: Hook) -> None:
    """Delete a hook and its deliveries."""
    hook.delete()
    hooks_changed()
