"""Project configuration: settings, Celery app, ASGI/WSGI entry points and URLs."""

from config.celery import app as celery_app

__all__ = ("celery_app",)
