"""Celery tasks. Each only calls a service; beat schedules them (CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from roster.sources import reconcile, sqs


@shared_task(name="roster.tasks.queue_health_refresh", ignore_result=True)
def queue_health_refresh() -> int:
    """Backlog and in-flight counts of every enabled queue, for admin, /metrics and the dashboard."""
    return len(sqs.queue_health_refresh())


@shared_task(name="roster.tasks.meetings_reconcile", ignore_result=True)
def meetings_reconcile() -> dict:
    """One reconcile cycle (beat runs it every RECONCILE_SECONDS): a cycle still running elsewhere
    makes this one return at once, so cycles never overlap (roster.sources.reconcile)."""
    return reconcile.meetings_reconcile().as_dict()
