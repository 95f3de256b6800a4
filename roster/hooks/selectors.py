"""Reads of hooks and their deliveries (REST, admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Min, QuerySet

from roster.models import FeedToken, Hook, HookDelivery, HookPayload


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


def outbox_waiting() -> tuple[int, datetime | None]:
    """Outbox rows no worker has fanned out into deliveries yet, and the oldest one's time: a
    count that stays up means no Celery worker is running."""
    waiting = HookPayload.objects.filter(fanned=False).aggregate(count=Count("pk"), oldest=Min("created_at"))
    return waiting["count"], waiting["oldest"]
