"""The Celery app. Redis is the broker; every worker also drains the enabled SQS queues."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("chime_roster")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from roster.sources.bootsteps import DrainStep  # noqa: E402  (needs the app above)

app.steps["worker"].add(DrainStep)
