"""Celery tasks. Each only calls a service; beat schedules them (CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from django.conf import settings

from roster.hooks import delivery, outbox
from roster.sources import reconcile, sqs


@shared_task(name="roster.tasks.queue_health_refresh", ignore_result=True)
def queue_health_refresh() -> int:
    """Backlog and in-flight counts of every enabled queue, for admin, /metrics and the dashboard."""
    return len(sqs.queue_health_refresh())


# A worker asked to stop ends a running reconcile cycle after the check in hand (a cycle spreads
# its checks over RECONCILE_SECONDS, or longer at the default budget) and waits for it.
_worker_stopping = threading.Event()
worker_ready.connect(lambda **_: _worker_stopping.clear(), weak=False)
worker_shutting_down.connect(lambda **_: _worker_stopping.set(), weak=False)
worker_shutdown.connect(lambda **_: reconcile.reconcile_cycle_join(timeout=30), weak=False)


@shared_task(name="roster.tasks.meetings_reconcile", ignore_result=True)
def meetings_reconcile() -> bool:
    """Start a reconcile cycle (beat runs this every RECONCILE_SECONDS) in the worker's background,
    its checks spread over that period; cycles never overlap (roster.sources.reconcile). False
    when one is running in this worker already."""
    return reconcile.reconcile_cycle_start(
        stop=_worker_stopping.is_set, spread_seconds=settings.RECONCILE_SECONDS
    )


@shared_task(name="roster.tasks.hook_deliveries_run", ignore_result=True)
def hook_deliveries_run() -> int:
    """Deliver what the outbox holds that is due (kicked after each batch that wrote deliveries,
    and by beat every HOOKS_SWEEP_SECONDS for retries); how many attempts were made."""
    return delivery.deliveries_run(seconds=30.0)


@shared_task(name="roster.tasks.hook_outbox_prune", ignore_result=True)
def hook_outbox_prune() -> tuple[int, int]:
    """Forget deliveries delivered more than HOOKS_KEEP_HOURS ago and the payloads nothing points
    at any more (beat, every HOOKS_PRUNE_SECONDS); how many of each."""
    return outbox.outbox_prune()
