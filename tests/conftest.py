"""Shared fixtures: a real local SQS endpoint (moto server over HTTP), queues, child processes
stopped with the test, and the environment a subprocess needs to reach the same test database
and endpoint."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings

from roster.dev.processes import ROOT, Child, Supervisor, sqs_endpoint_start

# Threads (drain, database_sync_to_async) must not keep connections open past a test.
settings.DATABASES["default"]["CONN_MAX_AGE"] = 0

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def pytest_collection_modifyitems(config, items):
    """On SQLite, tests that need PostgreSQL (row locks, other processes) are deselected, and so
    are the ones marked ``once`` (they do not use the suite's database: one run is enough)."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        return

    def postgres_run_only(item) -> bool:
        return "postgres" in item.keywords or "once" in item.keywords

    kept = [item for item in items if not postgres_run_only(item)]
    deselected = [item for item in items if postgres_run_only(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def sqs_endpoint(tmp_path_factory) -> Iterator[str]:
    """A moto server on loopback (roster.dev.local_sqs), speaking the real SQS HTTP API."""
    with Supervisor(log_dir=tmp_path_factory.mktemp("sqs-endpoint")) as supervisor:
        url = sqs_endpoint_start(supervisor, timeout=30)
        previous = settings.AWS_ENDPOINT_URL_SQS
        settings.AWS_ENDPOINT_URL_SQS = url
        os.environ["AWS_ENDPOINT_URL_SQS"] = url
        try:
            yield url
        finally:
            settings.AWS_ENDPOINT_URL_SQS = previous
            os.environ.pop("AWS_ENDPOINT_URL_SQS", None)


@pytest.fixture
def processes(tmp_path) -> Iterator[Supervisor]:
    """The test's child processes (logs in its tmp_path), all stopped when it ends."""
    with Supervisor(log_dir=tmp_path) as supervisor:
        yield supervisor


@pytest.fixture
def sqs(sqs_endpoint):
    """A boto3 SQS client pointed at the local endpoint."""
    from roster.sources.sqs import sqs_client

    return sqs_client(wait_seconds=1)


@pytest.fixture
def make_queue(sqs):
    """Create uniquely named queues (deleted after the test)."""
    created: list[str] = []

    def make(*, visibility_timeout: int = 30, **attributes: str) -> str:
        name = f"roster-test-{uuid.uuid4().hex[:12]}"
        attrs = {"VisibilityTimeout": str(visibility_timeout), **attributes}
        url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
        created.append(url)
        return url

    yield make
    for url in created:
        with contextlib.suppress(Exception):  # best-effort cleanup
            sqs.delete_queue(QueueUrl=url)


def send_bodies(client, queue_url: str, bodies: list[str]) -> None:
    """SendMessageBatch in chunks of 10."""
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        response = client.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
        )
        assert not response.get("Failed"), response.get("Failed")


def queue_depth(client, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages."""
    attrs = client.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def subprocess_env(transactional_db, sqs_endpoint) -> dict[str, str]:
    """Environment for a child `manage.py` process that uses this test's database and endpoint."""
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        AWS_ENDPOINT_URL_SQS=sqs_endpoint,
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
        CONN_MAX_AGE="0",
    )
    return env


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def celery_worker_start(processes: Supervisor, env: dict[str, str], *, loglevel: str = "INFO") -> Child:
    """A real `celery worker` process (solo pool) draining SQS with 1 s long polls."""
    argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", loglevel]
    argv += ["--pool", "solo", "--without-mingle", "--without-gossip", "--without-heartbeat"]
    return processes.spawn("worker", argv, env=dict(env, SQS_WAIT_SECONDS="1"), stop_timeout=60)
