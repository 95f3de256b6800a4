"""Celery tasks. Each only calls a service; beat schedules them (CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down

from roster.sources import reconcile, sqs


@shared_task(name="roster.tasks.queue_health_refresh", ignore_result=True)
def queue_health_refresh() -> int:
    """Backlog and in-flight counts of every enabled queue, for admin, /metrics and the dashboard."""
    return len(sqs.queue_health_refresh())


# A worker asked to stop ends a running reconcile cycle after the check in hand (a cycle at the
# default budget lasts minutes; a warm shutdown would wait for all of it).
_worker_stopping = threading.Event()
worker_ready.connect(lambda **_: _worker_stopping.clear(), weak=False)
worker_shutting_down.connect(lambda **_: _worker_stopping.set(), weak=False)


@shared_task(name="roster.tasks.meetings_reconcile", ignore_result=True)
def meetings_reconcile() -> dict:
    """One reconcile cycle (beat runs it every RECONCILE_SECONDS): a cycle still running elsewhere
    makes this one return at once, so cycles never overlap (roster.sources.reconcile)."""
    return reconcile.meetings_reconcile(stop=_worker_stopping.is_set).as_dict()
