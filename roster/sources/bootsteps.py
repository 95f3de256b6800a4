"""The Celery worker step that drains SQS: started with the worker, stopped cleanly with it.

Celery's warm shutdown (SIGTERM) stops worker steps; ours lets each drain thread finish the batch
in hand (receive, commit, delete) before the worker exits, so nothing is lost or half-done.
"""

from __future__ import annotations

import logging

from celery import bootsteps

logger = logging.getLogger(__name__)


class DrainStep(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):  # noqa: ANN001 (Celery's signature)
        super().__init__(worker, **kwargs)
        self.supervisor = None

    def start(self, worker) -> None:  # noqa: ANN001
        from django.conf import settings

        if not settings.SQS_DRAIN_IN_WORKER:
            logger.info("SQS draining is off in this worker (SQS_DRAIN_IN_WORKER=false)")
            return
        from roster.sources.slots import DrainSupervisor

        self.supervisor = DrainSupervisor()
        self.supervisor.start()

    def stop(self, worker) -> None:  # noqa: ANN001
        if self.supervisor is not None:
            logger.info("stopping SQS drain: finishing the batches in hand")
            self.supervisor.stop()
            self.supervisor = None

    # A cold shutdown (second signal, or an embedded worker) also lets the batch in hand finish:
    # it is one long poll at most, and only then is anything deleted.
    terminate = stop
    shutdown = stop
