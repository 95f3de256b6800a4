"""Project configuration: settings, the Celery app, the ASGI entry point and URLs."""

from config.celery import app as celery_app

__all__ = ("celery_app",)
