"""Reads of hooks and their deliveries (REST, admin)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from roster.models import FeedToken, Hook, HookDelivery


def hooks_of_token(*, token: FeedToken) -> QuerySet[Hook]:
    return Hook.objects.filter(created_by_token=token).order_by("name")


def hook_of_token(*, token: FeedToken, hook_id: int) -> Hook | None:
    return hooks_of_token(token=token).filter(pk=hook_id).first()


def hook_as_dict(hook: Hook) -> dict[str, Any]:
    """What REST shows of a hook: never its secret."""
    counts = {
        status: HookDelivery.objects.filter(hook=hook, status=status).count()
        for status in HookDelivery.Status.values
    }
    return {
        "id": hook.pk,
        "name": hook.name,
        "url": hook.target,
        "events": hook.events,
        "meetings": hook.meetings,
        "enabled": hook.enabled,
        "broken": hook.broken_at is not None,
        "broken_reason": hook.broken_reason,
        "previous_secret_until": hook.previous_secret_until.isoformat()
        if hook.previous_secret_until
        else None,
        "created_at": hook.created_at.isoformat(),
        "deliveries": counts,
    }
