"""Shared fixtures and helpers: a real local SQS endpoint (moto server over HTTP), queues, child
processes stopped with the test (Daphne, Celery workers), the environment a subprocess needs to
reach the same test database and endpoint, and the whole-fold oracle a stored roster is held to."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from roster.dev.chime import as_bare, detail
from roster.dev.chime_api import ChimeApiServer
from roster.dev.processes import ROOT, Child, Supervisor, daphne_command, free_port, sqs_endpoint_start
from roster.domain.events import event_parse
from roster.domain.fold import roster_fold
from roster.ingest import IncomingMessage, IngestResult, messages_ingest
from roster.read.selectors import roster_get

# Threads (drain, database_sync_to_async) must not keep connections open past a test.
settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
# Hashing a password costs 1,000 PBKDF2 iterations here, not a million (tests/hashers.py).
settings.PASSWORD_HASHERS = ["tests.hashers.FastPBKDF2PasswordHasher", *settings.PASSWORD_HASHERS]

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def pytest_collection_modifyitems(config, items):
    """On SQLite, tests that need PostgreSQL (row locks, other processes) are deselected, and so
    are the ones marked ``once``: one run is enough for them.

    The rule for ``once``: a test that never reaches the suite's database (pytest-django refuses
    it any query: no ``django_db`` mark, no ``db``/``transactional_db`` fixture, and no child
    process given ``DATABASE_URL``) asserts the same thing in both runs, so it runs in the
    PostgreSQL run only: pure domain and protocol code (tests/domain, tests/live/test_protocol),
    Redis or SQS without the database, dev tools, the repository's own checks. A test whose
    answer may depend on the database, however indirectly, is not marked."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        return

    def postgres_run_only(item) -> bool:
        return "postgres" in item.keywords or "once" in item.keywords

    kept = [item for item in items if not postgres_run_only(item)]
    deselected = [item for item in items if postgres_run_only(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(autouse=True)
def hooks_forgotten() -> Iterator[None]:
    """A test's hooks may vanish with its rolled-back transaction, which no signal reports: the
    process's list of hooks (roster.hooks.outbox) is dropped after every test."""
    yield
    from roster.hooks.outbox import hooks_changed

    hooks_changed()


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
def chime_server(monkeypatch, settings) -> Iterator[ChimeApiServer]:
    """The local Chime SDK Meetings endpoint over HTTP, reached by unchanged boto3 through
    AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS; CHIME_CONTROL_REGION us-east-1; a budget tests do not wait on."""
    with ChimeApiServer() as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS", server.url)
        settings.CHIME_CONTROL_REGION = "us-east-1"
        settings.RECONCILE_CALLS_PER_SECOND = 1000.0
        yield server


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


@contextlib.contextmanager
def embedded_worker(*, shutdown_timeout: float = 60) -> Iterator[None]:
    """A real Celery worker in this process (celery.contrib.testing's ``start_worker``, solo pool)
    on the project's app. Celery's embedded worker sets up logging again each time, and from the
    second one on leaves the root logger at ERROR: its level is put back, so later tests' caplog
    still hears warnings."""
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    root = logging.getLogger()
    level = root.level
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=shutdown_timeout):
            yield
    finally:
        root.setLevel(level)


CHROMIUM = Path("/usr/bin/chromium")  # Debian's: browser tests never download one


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """Where a browser test saves screenshots for a reviewer: artifacts/<module>/ at the repository
    root (gitignored, and kept after the run, unlike pytest's rotating tmp_path)."""
    folder = ROOT / "artifacts" / request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def chromium_page(
    dialogs: list[str],
    *,
    viewport: dict[str, int] | None = None,
    user: Any = None,
    site: str | None = None,
) -> Iterator:
    """A page of headless Chromium (Playwright); every dialog it opens is recorded in ``dialogs``
    and dismissed (hostile text shown by a page must open none). With ``user`` and ``site``
    (host:port), the page is signed in there as that user (a session cookie)."""
    from django.test import Client
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is needed (apt-get install chromium)"
    session = None
    if user is not None:  # before Playwright's event loop runs in this thread
        signed_in = Client()
        signed_in.force_login(user)
        session = signed_in.cookies[settings.SESSION_COOKIE_NAME].value
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        context = browser.new_context(viewport=viewport) if viewport else browser.new_context()
        if session is not None:
            context.add_cookies(
                [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": f"http://{site}/"}]
            )
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        yield page
        browser.close()


def in_thread(fn, *args, **kwargs) -> None:
    """Database work while Playwright's event loop runs in this thread: do it in another one."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn(*args, **kwargs)
        except BaseException as exc:  # re-raised below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not errors, errors


@pytest.fixture
def daphne(subprocess_env, processes) -> str:
    """A real Daphne serving config.asgi on a free port, on this test's database; its address."""
    port = free_port()
    processes.spawn("daphne", daphne_command(port), env=subprocess_env, stop_timeout=30)
    processes.wait_port(port, what="waiting for daphne", timeout=30)
    return f"127.0.0.1:{port}"


# --- the roster a stream must leave, whatever its arrival ---------------------------------------

MEETING_COMPARED = (
    "external_meeting_id",
    "media_region",
    "status",
    "started_at",
    "ended_at",
    "peak_joined",
    "transcription",
    "transcription_message",
    "pipelines",
)


def ingest(raw: list[str], *, queue: str = "test") -> IngestResult:
    return messages_ingest(
        messages=[IncomingMessage(body=b, queue=queue, message_id=str(i)) for i, b in enumerate(raw)]
    )


def chime_body(meeting_id: str, event_type: str, ts: int, attendee_id: str = "", external: str = "") -> str:
    """One Chime event as a bare-detail message body (roster.dev.chime.detail)."""
    extra = {"externalMeetingId": external} if external else {}
    return as_bare(detail(event_type, meeting_id, attendee_id or None, ts, **extra))


def expected(details: list[dict]) -> dict:
    """The whole fold of every event: what the database must hold, whatever the arrival."""
    events = [event_parse(as_bare(d)) for d in details]
    folded = roster_fold(details[0]["meetingId"], events)
    meeting = {name: getattr(folded.meeting, name) for name in MEETING_COMPARED if name != "peak_joined"}
    meeting["peak_joined"] = folded.peak_joined
    states = folded.attendees.values()
    meeting["joined_count"] = sum(1 for a in states if a.presence == "joined")
    meeting["dropped_count"] = sum(1 for a in states if a.presence == "dropped")
    meeting["video_count"] = sum(1 for a in states if a.video)
    meeting["sharing_count"] = sum(1 for a in states if a.screen_share or a.content_share or a.content_video)
    return {"meeting": meeting, "attendees": {a: s.public() for a, s in folded.attendees.items()}}


def stored(meeting_id: str) -> dict:
    roster = roster_get(meeting_id=meeting_id)
    assert roster is not None
    meeting = {name: roster["meeting"][name] for name in MEETING_COMPARED}
    for name in ("joined_count", "dropped_count", "video_count", "sharing_count"):
        meeting[name] = roster["meeting"][name]
    attendees = {}
    for attendee in roster["attendees"]:
        attendee = dict(attendee)
        attendee.pop("seq")
        attendees[attendee["attendee_id"]] = attendee
    return {"meeting": meeting, "attendees": attendees}


@pytest.fixture
def committed_batches() -> Iterator[list]:
    """What ingest hands its after-commit hook point (the broadcaster's and metrics' input), batch
    by batch."""
    from roster.ingest import hooks

    batches: list = []
    hooks.after_commit.append(batches.append)
    yield batches
    hooks.after_commit.remove(batches.append)


@pytest.fixture
def database_refuses_boom(monkeypatch) -> None:
    """The database refuses any batch holding a body with ``boom`` in it (as it would a value it
    cannot store): what ``messages_ingest_isolating`` splits a batch to find."""
    from roster.ingest import service

    real = service.messages_ingest

    def refusing(*, messages):
        if any(b"boom" in m.body for m in messages):
            raise ValueError("the database refused it")
        return real(messages=messages)

    monkeypatch.setattr(service, "messages_ingest", refusing)
