"""Celery tasks. Each only calls a service; beat schedules them (CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from roster.sources import sqs


@shared_task(name="roster.tasks.queue_health_refresh", ignore_result=True)
def queue_health_refresh() -> int:
    """Backlog and in-flight counts of every enabled queue, for admin, /metrics and the dashboard."""
    return len(sqs.queue_health_refresh())
