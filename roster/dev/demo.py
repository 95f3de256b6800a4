"""`make demo`: the whole system on one machine, from a fresh clone, stopped by one Ctrl-C.

The demo migrates the database, resets a demo login, picks Redis (REDIS_URL when it answers, else
a private ``redis-server``), starts a local SQS endpoint (moto server) with two queues, Daphne, a
Celery worker (which drains both queues) and beat, a local Chime SDK Meetings endpoint, and the
simulator feeding the queues: meetings of a few minutes each, sent as they happen, and Voice
Connector calls streaming. The simulator mirrors what happens into the Chime endpoint and loses a
share of MeetingEnded and AttendeeLeft deliveries on the way; beat runs reconcile every
``reconcile_seconds``, so the dashboard shows repairs. A small webhook receiver of the demo's own
(roster.dev.hook_receiver) gets every change through an outbound hook registered to it, and its
page shows them arriving, signatures checked with the hook's secret.

Every child runs in its own session (roster.dev.processes), so a terminal's Ctrl-C reaches only
the demo, which then stops them newest first (SIGTERM to the child's process group, a wait,
SIGKILL after a timeout) and removes its private temporary directory. On Linux a child also gets
SIGTERM if the demo itself is killed outright, so nothing is orphaned.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from roster.dev.chime import ACCOUNT
from roster.dev.processes import (
    ROOT,
    Supervisor,
    celery_worker_command,
    chime_api_start,
    daphne_command,
    free_port,
    hook_receiver_start,
    http_ok,
    port_is_free,
    sqs_endpoint_start,
)

DEMO_USERNAME = "demo"
DEMO_EMAIL = "demo@example.com"  # where the sign-in page's password reset sends the demo's link
DEMO_QUEUE_PREFIX = "chime-roster-demo-"
DEMO_REGION = "us-east-1"
DEFAULT_WEB_PORT = 8000
DEMO_HOOK_NAME = "demo-receiver"
REDIS_MISSING = (
    "Redis is needed and nothing answers at {url}, and no redis-server is installed to start a "
    "private one.\n"
    "Install Redis: `sudo apt install redis-server` (Debian, Ubuntu) or `brew install redis` "
    "(macOS), then run `make demo` again; or set REDIS_URL to a Redis you can reach."
)


class DemoError(Exception):
    """A reason the demo cannot run, said to the user as it is."""


@dataclass(frozen=True)
class DemoOptions:
    port: int | None = None
    rate: float = 8.0
    meetings: int = 4
    attendees: int = 10
    meeting_minutes: float = 5.0
    calls: int = 2
    seed: int | None = None
    mirror_share: float = 0.5
    duplicates: float = 0.05
    poison: float = 0.01
    lose: float = 0.2  # MeetingEnded and AttendeeLeft never delivered: what reconcile repairs
    reconcile_seconds: float = 20.0  # short, so a repair shows within a demo meeting
    migrate: bool = True
    status_every: float = 10.0
    log_dir: Path | None = None
    ready_timeout: float = 120.0


class Progress:
    """One line per step as it starts and as it finishes (with its time): never silent for long."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def say(self, text: str) -> None:
        self.out.write(f"[demo] {text}\n")
        self.out.flush()

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[_Step]:
        self.say(f"{what} ...")
        step = _Step()
        started = time.monotonic()
        yield step
        self.say(f"{what}: {step.done} ({time.monotonic() - started:.1f}s)")


class _Step:
    done = "done"


# Ports, Redis -------------------------------------------------------------------------------


def web_port_choose(*, requested: int | None, default: int = DEFAULT_WEB_PORT) -> tuple[int, str]:
    """The port for Daphne and a note when it is not the one asked for."""
    if requested is not None:
        if not port_is_free(requested):
            raise DemoError(f"port {requested} is busy: pass another --port, or none to pick one")
        return requested, ""
    if port_is_free(default):
        return default, ""
    port = free_port()
    return port, f"port {default} is busy: the dashboard uses port {port} instead"


def url_redacted(url: str) -> str:
    """A URL fit to print: any password replaced."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))


def redis_reachable(url: str, *, timeout: float = 1.0) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def redis_choose(
    *,
    url: str,
    supervisor: Supervisor,
    which: Callable[[str], str | None] = shutil.which,
    timeout: float = 15.0,
) -> tuple[str, str]:
    """(Redis URL, what was done): REDIS_URL when it answers, else a private redis-server on a
    free loopback port without persistence, else DemoError saying what to install."""
    if redis_reachable(url):
        return url, f"using {url_redacted(url)}"
    binary = which("redis-server")
    if binary is None:
        raise DemoError(REDIS_MISSING.format(url=url_redacted(url)))
    port = free_port()
    supervisor.spawn(
        "redis",
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",  # it writes nothing: no persistence
            str(supervisor.log_dir),
        ],
        env=os.environ,
        tier=0,
    )
    private = f"redis://127.0.0.1:{port}/0"
    supervisor.wait(
        lambda: redis_reachable(private, timeout=0.5), what="waiting for redis-server", timeout=timeout
    )
    return private, f"nothing answers at {url_redacted(url)}: started a private redis-server on port {port}"


# SQS ------------------------------------------------------------------------------------------


def _demo_sqs(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=DEMO_REGION,
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
    )


def demo_queues_create(*, endpoint: str) -> list[str]:
    """The two demo queues: EventBridge envelopes, and SNS-wrapped copies of a share of them."""
    client = _demo_sqs(endpoint)
    return [
        client.create_queue(QueueName=f"{DEMO_QUEUE_PREFIX}{name}", Attributes={"VisibilityTimeout": "30"})[
            "QueueUrl"
        ]
        for name in ("eventbridge", "sns")
    ]


# Services and selectors (database) ------------------------------------------------------------


def demo_login_reset(*, username: str = DEMO_USERNAME) -> str:
    """Create or reset the demo login (staff and superuser, so admin is usable) with a fresh
    random password, returned to be printed: each run invalidates the last one's. It gets an
    email address, so a password reset from /login/ has somewhere to send its mail."""
    from django.contrib.auth import get_user_model

    password = secrets.token_urlsafe(12)
    user, _ = get_user_model().objects.get_or_create(username=username)
    user.is_active = user.is_staff = user.is_superuser = True
    user.email = user.email or DEMO_EMAIL
    user.set_password(password)
    user.save()
    return password


def demo_queue_sources_reset(*, queue_urls: list[str]) -> None:
    """Drain exactly this run's demo queues: earlier runs' queues died with their moto server, so
    their rows are disabled (kept: events name them). Other queues' rows are left alone."""
    from django.db import transaction

    from roster.models import QueueSource

    with transaction.atomic():
        QueueSource.objects.filter(url__contains=f"/{DEMO_QUEUE_PREFIX}", enabled=True).exclude(
            url__in=queue_urls
        ).update(enabled=False)
        for url in queue_urls:
            QueueSource.objects.update_or_create(
                url=url,
                defaults={"enabled": True, "consumers": 1, "region": DEMO_REGION, "last_poll_at": None},
            )


def demo_leftover_meetings(*, now_ms: int) -> list[dict[str, Any]]:
    """MeetingEnded details for simulated meetings an earlier demo left running (it was stopped
    mid-meeting), so they do not stay live forever. They go through the queue like any event."""
    from django.db.models import Exists, OuterRef

    from roster.models import Event, Meeting

    from_demo = Event.objects.filter(
        meeting_id=OuterRef("meeting_id"), queue__contains=f"/{DEMO_QUEUE_PREFIX}"
    )
    leftovers = Meeting.objects.exclude(status=Meeting.Status.ENDED).filter(Exists(from_demo))
    details = []
    for meeting in leftovers.order_by("meeting_id"):
        detail = {"version": "0", "eventType": "chime:MeetingEnded", "meetingId": meeting.meeting_id}
        if meeting.external_meeting_id:
            detail["externalMeetingId"] = meeting.external_meeting_id
        details.append({**detail, "timestamp": now_ms})
    return details


def demo_queue_send(*, endpoint: str, queue_url: str, bodies: list[str]) -> None:
    client = _demo_sqs(endpoint)
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])]
        failed = client.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")
        if failed:
            raise DemoError(f"the local SQS endpoint refused messages: {failed[:3]}")


def demo_hook_register(*, url: str) -> str:
    """The demo's hook to its own receiver at ``url`` (every change), made afresh: the last run's
    receiver died with it, so its hook and what it still owed are deleted. Returns the secret."""
    from django.test import override_settings

    from roster.hooks.services import hook_create, hook_delete
    from roster.models import Hook

    for old in Hook.objects.filter(name=DEMO_HOOK_NAME):
        hook_delete(hook=old)
    with override_settings(HOOKS_ALLOW_HTTP_LOOPBACK=True):  # the check of its loopback target
        _, secret = hook_create(name=DEMO_HOOK_NAME, target=url)
    return secret


def demo_queues_polled(*, queue_urls: list[str]) -> bool:
    from roster.models import QueueSource

    return QueueSource.objects.filter(url__in=queue_urls, last_poll_at__isnull=False).count() == len(
        queue_urls
    )


def demo_drain_errors(*, queue_urls: list[str], since: datetime.datetime) -> str:
    """The drain errors recorded on the demo queues since ``since`` (the worker's own words)."""
    from roster.models import QueueSource

    sources = QueueSource.objects.filter(url__in=queue_urls, last_error_at__gte=since).order_by("url")
    return "; ".join(f"drain error on {s.url.rsplit('/', 1)[-1]}: {s.last_error[:300]}" for s in sources)


def demo_counts() -> dict[str, int]:
    """What the status line shows, from the database."""
    from django.db.models import Count, Q, Sum

    from roster.models import Event, Meeting, Quarantine

    meetings = Meeting.objects.aggregate(
        total=Count("pk"),
        live=Count("pk", filter=Q(status=Meeting.Status.ACTIVE)),
        joined=Sum("joined_count"),
    )
    events = Event.objects.aggregate(total=Count("pk"), duplicates=Sum("duplicate_count"))
    return {
        "meetings": meetings["total"],
        "live": meetings["live"],
        "joined": meetings["joined"] or 0,
        "events": events["total"],
        "duplicates": events["duplicates"] or 0,
        "quarantined": Quarantine.objects.count(),
    }


def status_line(counts: Mapping[str, int]) -> str:
    return (
        f"{time.strftime('%H:%M:%S')} meetings {counts['meetings']} ({counts['live']} live, "
        f"{counts['joined']} attendees in), events {counts['events']}, duplicates dropped "
        f"{counts['duplicates']}, quarantined {counts['quarantined']}"
    )


# Putting it together --------------------------------------------------------------------------


def database_describe(db: Mapping[str, Any]) -> str:
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite file {db['NAME']}"
    return f"{db['ENGINE'].rsplit('.', 1)[-1]} database {db['NAME']} on {db.get('HOST') or 'localhost'}"


def child_env(
    *,
    base: Mapping[str, str],
    database_url: str,
    redis_url: str,
    sqs_endpoint: str,
    queue_urls: list[str],
    allowed_account: str,
    chime_api_endpoint: str = "",
    reconcile_seconds: float = 0.0,
) -> dict[str, str]:
    """What every child shares: one database, one Redis, both queues on the local endpoint, and
    the local Chime SDK Meetings endpoint reconcile asks (every RECONCILE_SECONDS)."""
    env = {
        key: value
        for key, value in base.items()
        if key not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "CELERY_BROKER_URL")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        # Redis is shared by everything on the machine: the demo hears only itself.
        ROSTER_NAMESPACE=base.get("ROSTER_NAMESPACE") or f"demo-{uuid.uuid4().hex[:12]}",
        SQS_QUEUE_URLS=",".join(queue_urls),
        AWS_ENDPOINT_URL_SQS=sqs_endpoint,
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_REGION=DEMO_REGION,
        AWS_DEFAULT_REGION=DEMO_REGION,
        SQS_WAIT_SECONDS="1",  # a stopping worker finishes one short poll, not a 20 s one
        CHIME_ALLOWED_ACCOUNTS=allowed_account,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
        RECONCILE_SECONDS=f"{reconcile_seconds:g}",
        HOOKS_ALLOW_HTTP_LOOPBACK="1",  # the demo's hook targets its receiver on loopback
    )
    if chime_api_endpoint:
        env["AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS"] = chime_api_endpoint
    return env


def simulator_argv(
    *, queue_urls: list[str], options: DemoOptions, seed: int, chime_api_endpoint: str = ""
) -> list[str]:
    mirror = ["--chime-api-url", chime_api_endpoint] if chime_api_endpoint else []
    return [
        sys.executable,
        str(ROOT / "manage.py"),
        "simulate",
        "--queue-url",
        queue_urls[0],
        "--sns-queue-url",
        queue_urls[1],
        "--mirror-share",
        str(options.mirror_share),
        "--forever",
        "--shuffle",
        "--duplicates",
        str(options.duplicates),
        "--poison",
        str(options.poison),
        "--rate",
        str(options.rate),
        "--meetings",
        str(options.meetings),
        "--attendees",
        str(options.attendees),
        "--meeting-minutes",
        str(options.meeting_minutes),
        "--calls",
        str(options.calls),
        "--lose",
        str(options.lose),
        *mirror,
        "--seed",
        str(seed),
    ]


def demo_run(*, options: DemoOptions, out: TextIO) -> None:
    """Run the demo until Ctrl-C (KeyboardInterrupt); stop all it started, whatever happens.

    Raises DemoError when it cannot start, ProcessError when a child stops on its own.
    """
    progress = Progress(out)
    work_dir = Path(tempfile.mkdtemp(prefix="chime-roster-demo-"))
    log_dir = options.log_dir or work_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(log_dir=log_dir, say=progress.say)
    try:
        _run(options=options, progress=progress, supervisor=supervisor, work_dir=work_dir)
    except KeyboardInterrupt:
        progress.say("stopping everything the demo started ...")
    finally:
        supervisor.stop_all()
        shutil.rmtree(work_dir, ignore_errors=True)
        progress.say("stopped" if not options.log_dir else f"stopped; logs kept in {log_dir}")


def _run(*, options: DemoOptions, progress: Progress, supervisor: Supervisor, work_dir: Path) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import DatabaseError
    from django.utils import timezone

    began = time.monotonic()
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):  # an absolute path: children run in ROOT, we may not
        database_url = f"sqlite:///{Path(db['NAME']).resolve()}"
    else:
        database_url = os.environ["DATABASE_URL"]
    progress.say(f"child logs in {supervisor.log_dir}")
    port, note = web_port_choose(requested=options.port)  # a busy --port fails before anything starts
    if note:
        progress.say(note)
    if options.migrate:
        with progress.step(f"migrating the {database_describe(db)}"):
            call_command("migrate", interactive=False, verbosity=0)
    with progress.step("demo login") as step:
        try:
            password = demo_login_reset()
        except DatabaseError as exc:
            raise DemoError(f"the {database_describe(db)} is not usable ({exc}); is it migrated?") from exc
        step.done = f"user {DEMO_USERNAME!r} with a new password"
    with progress.step("Redis") as step:
        redis_url, step.done = redis_choose(url=settings.REDIS_URL, supervisor=supervisor)
    with progress.step("local SQS endpoint (moto server) and two queues") as step:
        if importlib.util.find_spec("moto") is None:
            raise DemoError("moto is missing: run `make install` (moto[server] is in requirements-dev.txt)")
        endpoint = sqs_endpoint_start(supervisor, env=os.environ)
        queue_urls = demo_queues_create(endpoint=endpoint)
        demo_queue_sources_reset(queue_urls=queue_urls)
        step.done = f"{endpoint}, queues " + ", ".join(url.rsplit("/", 1)[-1] for url in queue_urls)
    with progress.step("local Chime SDK Meetings endpoint (what reconcile asks)") as step:
        chime_api_endpoint = chime_api_start(supervisor, env=os.environ)
        step.done = (
            f"{chime_api_endpoint}; the simulator loses {options.lose:.0%} of MeetingEnded and "
            f"AttendeeLeft events, reconcile checks every {options.reconcile_seconds:g}s"
        )
    with progress.step("webhook receiver and a hook to it") as step:
        receiver_port = free_port()
        secret = demo_hook_register(url=f"http://127.0.0.1:{receiver_port}/hook")
        receiver_url = hook_receiver_start(supervisor, secrets=[secret], env=os.environ, port=receiver_port)
        step.done = f"{receiver_url}/, hook {DEMO_HOOK_NAME!r} (every change, signed)"
    leftovers = demo_leftover_meetings(now_ms=int(time.time() * 1000))
    if leftovers:
        demo_queue_send(endpoint=endpoint, queue_url=queue_urls[0], bodies=[json.dumps(d) for d in leftovers])
        progress.say(
            f"queued MeetingEnded for {len(leftovers)} simulated meetings an earlier demo left running"
        )
    env = child_env(
        base=os.environ,
        database_url=database_url,
        redis_url=redis_url,
        sqs_endpoint=endpoint,
        queue_urls=queue_urls,
        allowed_account=ACCOUNT,
        chime_api_endpoint=chime_api_endpoint,
        reconcile_seconds=options.reconcile_seconds,
    )
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    python = sys.executable
    with progress.step("starting Daphne, a Celery worker, Celery beat and the simulator") as step:
        web = supervisor.spawn(
            "daphne",
            daphne_command(port),
            env=env,
        )
        supervisor.spawn(
            "worker",
            celery_worker_command(hostname=f"demo-{os.getpid()}@%h"),
            env=env,
            stop_timeout=30,  # the drain finishes the batch in hand
        )
        supervisor.spawn(
            "beat",
            [
                python,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--schedule",
                str(work_dir / "schedule"),
                "--loglevel",
                "INFO",
            ],
            env=env,
        )
        before = demo_counts()["meetings"]
        supervisor.spawn(
            "simulator",
            simulator_argv(
                queue_urls=queue_urls, options=options, seed=seed, chime_api_endpoint=chime_api_endpoint
            ),
            env=env,
        )
        step.done = (
            f"simulator seed {seed}, {options.meetings} meetings of about {options.meeting_minutes:g} min "
            f"and {options.calls} Voice Connector calls at a time, at most {options.rate:g} events/s"
        )
    url = f"http://127.0.0.1:{port}/"
    waits = (
        (f"waiting for Daphne at {url}", lambda: http_ok(f"{url}admin/login/")),
        ("waiting for the worker to poll both queues", lambda: demo_queues_polled(queue_urls=queue_urls)),
        ("waiting for beat", lambda: any(work_dir.glob("schedule*"))),
        ("waiting for the first simulated meeting", lambda: demo_counts()["meetings"] > before),
    )
    since = timezone.now()

    def drain_errors() -> str:
        return demo_drain_errors(queue_urls=queue_urls, since=since)

    for what, check in waits:
        with progress.step(what):
            supervisor.wait(check, what=what, timeout=options.ready_timeout, hint=drain_errors)
    progress.say(f"ready in {time.monotonic() - began:.1f}s")
    progress.say(f"  dashboard  {url}")
    progress.say(f"  login      {DEMO_USERNAME} / {password}  at {url}login/")
    if settings.EMAIL_BACKEND.endswith(".console.EmailBackend"):  # EMAIL_URL unset: consolemail://
        progress.say(f"  mail       password reset mails are printed in {web.log_path}")
    progress.say(f"  admin      {url}admin/  (quarantined messages, queues, hooks)")
    progress.say(f"  hooks      {receiver_url}/  (the demo hook's deliveries arriving, signatures checked)")
    progress.say("  processes  " + " ".join(f"{name}={pid}" for name, pid in supervisor.pids().items()))
    progress.say("Ctrl-C stops everything.")
    next_status = time.monotonic() + options.status_every
    while True:
        supervisor.raise_if_exited()
        if time.monotonic() >= next_status:
            try:
                progress.say(status_line(demo_counts()))
                errors = drain_errors()
                if errors:
                    progress.say(errors)
            except Exception as exc:  # a busy database must not stop the demo
                progress.say(f"status unavailable: {type(exc).__name__}: {exc}")
            since = timezone.now()
            next_status += options.status_every
        time.sleep(0.5)
