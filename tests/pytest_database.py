"""A plain ``pytest`` runs on PostgreSQL when it answers on 127.0.0.1:5432: the production path.

Loaded with ``-p`` (pyproject.toml), so it runs before pytest-django reads the settings. An explicit
``DATABASE_URL`` always wins: ``make test`` sets one for each of its two runs (PostgreSQL, SQLite).

Each run also takes a ROSTER_NAMESPACE of its own (the processes it starts inherit it): Redis is
shared by everything on the machine, and a demo or another run must not hear this one. And a
SECRET_KEY of its own, which the settings require (DEBUG is off) and the processes it starts
(Daphne, Celery workers, manage.py) share with it: a host link signed here opens there.
"""

from __future__ import annotations

import os
import secrets
import socket
import uuid

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")


def _postgres_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


if "DATABASE_URL" not in os.environ and _postgres_answers():
    os.environ["DATABASE_URL"] = POSTGRES_URL
os.environ["ROSTER_NAMESPACE"] = f"test-{uuid.uuid4().hex[:12]}"
os.environ["SECRET_KEY"] = secrets.token_urlsafe(50)


def pytest_report_header() -> str:
    from django.conf import settings

    database = settings.DATABASES["default"]
    return f"database: {database['ENGINE'].rsplit('.', 1)[-1]} {database.get('NAME')}"
