"""Shared plumbing for the benchmarks: the bench database, Django setup, the bench's meetings and
the check of their rosters, timing, CPU meters.

Everything talks to 127.0.0.1 only: the database URL and the SQS endpoint are checked.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import secrets
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from roster.dev import local_sqs
from roster.dev.chime import REGION, arrival_order, as_envelope, detail, meeting_stream, webinar_family

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_roster")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


SEED = 20261124
START_MS = int(datetime(2026, 11, 24, 9, 0, tzinfo=UTC).timestamp() * 1000)
GAPS_MS = (200, 500, 1000, 2000, 3000, 6000)  # people act seconds apart: about 10 % arrive late


def meetings_generate(
    *, meetings: int, attendees: int, events_per_meeting: int, seed: int = SEED
) -> list[dict[str, Any]]:
    """Every event of ``meetings`` tidy meetings (roster.dev.chime) of exactly
    ``events_per_meeting`` events, started 3 s apart, in the order one queue (one EventBridge
    rule) delivers them: each arrives a delivery delay after it happened, so about 10 % of a
    meeting's events arrive after a later one, which the ingest must re-fold."""
    streams = [
        meeting_stream(
            seed=seed + index,
            attendees=attendees,
            events=events_per_meeting,
            tidy=True,
            start_ms=START_MS + index * 3_000,
            gaps_ms=GAPS_MS,
            external_meeting_id=f"bench-meeting-{index:04d}",
        )
        for index in range(meetings)
    ]
    return arrival_order([doc for stream in streams for doc in stream], seed=seed)


def meetings_split(details: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Per meeting (in the order their first events arrive), its events in the order they came:
    what a queue of its own delivers."""
    by_meeting: dict[str, list[dict[str, Any]]] = {}
    for doc in details:
        by_meeting.setdefault(doc["meetingId"], []).append(doc)
    return list(by_meeting.values())


def roster_check(meetings: list[list[dict[str, Any]]], *, expected_events: int | None = None) -> str:
    """Compare the database with the pure fold of each meeting's events (and, when given, the
    event log's size). Returns 'ok ...' or the differences."""
    from roster.domain.events import event_parse
    from roster.domain.fold import AttendeeState, roster_fold
    from roster.models import Attendee, Event, Meeting

    problems = []
    stored = Event.objects.count()
    if expected_events is not None and stored != expected_events:
        problems.append(f"events stored {stored} != {expected_events}")
    ids = [details[0]["meetingId"] for details in meetings]
    rows: dict[str, dict[str, Attendee]] = {}
    for row in Attendee.objects.filter(meeting_id__in=ids):
        rows.setdefault(row.meeting_id, {})[row.attendee_id] = row
    found = Meeting.objects.in_bulk(ids)
    for index, (meeting_id, details) in enumerate(zip(ids, meetings, strict=True)):
        roster = roster_fold(meeting_id, [event_parse(as_envelope(doc)) for doc in details])
        meeting = found.get(meeting_id)
        if meeting is None:
            problems.append(f"meeting {index} missing")
            continue
        if (meeting.status, meeting.peak_joined, meeting.started_at, meeting.ended_at) != (
            roster.meeting.status,
            roster.peak_joined,
            roster.meeting.started_at,
            roster.meeting.ended_at,
        ):
            problems.append(f"meeting {index} fields differ from the fold")
        got = rows.get(meeting_id, {})
        if set(got) != set(roster.attendees):
            problems.append(f"meeting {index}: attendee set differs")
            continue
        for attendee_id, state in roster.attendees.items():
            public = {name: getattr(got[attendee_id], name) for name in AttendeeState.PUBLIC_FIELDS}
            if public != state.public():
                problems.append(f"meeting {index} attendee {attendee_id}: row differs from the fold")
    if problems:
        return f"MISMATCH ({len(problems)}): " + "; ".join(problems[:5])
    return f"ok ({stored} events, {len(meetings)} meetings, every roster equals the pure fold)"


def meetings_start(*, count: int, tag: str) -> list[tuple[str, str]]:
    """``count`` meetings started a minute ago (ingested): their (meetingId, externalMeetingId)."""
    from roster.ingest import IncomingMessage, messages_ingest

    meetings = [(str(uuid.uuid4()), f"{tag}-{i:03d}") for i in range(count)]
    ts = int(time.time() * 1000) - 60_000
    bodies = [
        as_envelope(detail("MeetingStarted", mid, ts=ts, externalMeetingId=ext, mediaRegion=REGION))
        for mid, ext in meetings
    ]
    for start in range(0, len(bodies), 100):
        messages_ingest(messages=[IncomingMessage(body=body) for body in bodies[start : start + 100]])
    broadcast_flush()
    return meetings


def webinar_burst(
    *, seed: int, viewers: int, replicas: int, start: bool = True
) -> tuple[list[list[dict[str, Any]]], list[str]]:
    """A webinar's join burst (roster.dev.chime.webinar_family, starting now): its meetings, started
    (ingested, untimed) unless ``start`` is false, and the bodies of the joins in the order SQS
    would deliver them (delivery delays: out of order within and across the meetings)."""
    from roster.ingest import IncomingMessage, messages_ingest

    family = webinar_family(seed=seed, viewers=viewers, replicas=replicas, start_ms=int(time.time() * 1000))
    if start:
        messages_ingest(messages=[IncomingMessage(body=as_envelope(meeting[0])) for meeting in family])
        broadcast_flush()
    joins = arrival_order([doc for meeting in family for doc in meeting[1:]], seed=seed)
    return family, [as_envelope(doc) for doc in joins]


def bodies_ingest(
    bodies: list[str], *, batch: int, threads: int, stop: threading.Event | None = None
) -> None:
    """Ingest ``bodies`` from memory in batches of ``batch``, taken in turn by ``threads`` threads
    (as drain threads take receives), until all are in or ``stop`` is set."""
    from django.db import connection

    from roster.ingest import IncomingMessage, messages_ingest

    chunks = iter([bodies[i : i + batch] for i in range(0, len(bodies), batch)])
    lock = threading.Lock()

    def worker() -> None:
        try:
            while stop is None or not stop.is_set():
                with lock:
                    chunk = next(chunks, None)
                if chunk is None:
                    return
                messages_ingest(messages=[IncomingMessage(body=body) for body in chunk])
        finally:
            connection.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def log(message: str) -> None:
    print(message, flush=True)


def secret_key_ensure() -> str:
    """The settings require a SECRET_KEY (DEBUG is off): unless one is set, a key for this run, in
    the environment every child inherits, so they all sign and check alike."""
    if not os.environ.get("SECRET_KEY"):
        os.environ["SECRET_KEY"] = secrets.token_urlsafe(50)
    return os.environ["SECRET_KEY"]


def environment_prepare(*, sqs_endpoint: str | None = None, database_url: str = BENCH_DATABASE_URL) -> None:
    """Set the environment the project's settings read, before Django is imported."""
    url = urlsplit(database_url)
    if url.hostname not in LOOPBACK:
        raise SystemExit(f"bench: refusing a non-loopback database: {database_url}")
    if not (url.path.lstrip("/") or "").startswith("bench"):
        raise SystemExit("bench: the bench database's name must start with 'bench' (it is dropped)")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["CHIME_ALLOWED_ACCOUNTS"] = ""
    os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    os.environ.setdefault("ROSTER_NAMESPACE", f"bench-{uuid.uuid4().hex[:12]}")  # Redis is shared
    secret_key_ensure()
    os.environ.update(AWS_TEST_ENV)
    # Never let boto3 find real credentials or a real endpoint.
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ.pop(name, None)
    os.environ["AWS_CONFIG_FILE"] = "/dev/null"
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
    if sqs_endpoint is not None:
        if urlsplit(sqs_endpoint).hostname not in LOOPBACK:
            raise SystemExit(f"bench: refusing a non-loopback SQS endpoint: {sqs_endpoint}")
        os.environ["AWS_ENDPOINT_URL_SQS"] = sqs_endpoint
        os.environ["AWS_ENDPOINT_URL"] = sqs_endpoint
        os.environ["SQS_QUEUE_URLS"] = ""
    else:
        os.environ["AWS_ENDPOINT_URL_SQS"] = ""


def database_recreate(database_url: str = BENCH_DATABASE_URL) -> None:
    """Drop and create a bench database (its name must start with 'bench')."""
    import psycopg

    url = urlsplit(database_url)
    name = url.path.lstrip("/")
    assert name.startswith("bench"), f"refusing to drop {name!r}: not a bench database"
    admin = url._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def django_setup(*, recreate: bool = False, database_url: str = BENCH_DATABASE_URL) -> None:
    import django

    if recreate:
        database_recreate(database_url)
    django.setup()
    _channel_layer_isolate()
    if recreate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)


def _channel_layer_isolate() -> None:
    """Publish the bench's roster changes under a prefix of its own, on loopback Redis only.

    The broadcast work is part of the measured ingest, but nobody's live dashboard (pub/sub
    channels are shared by every Redis database) should see the bench's meetings.
    """
    from django.conf import settings

    for layer in settings.CHANNEL_LAYERS.values():
        config = layer.setdefault("CONFIG", {})
        for host in config.get("hosts", []):
            address = host if isinstance(host, str) else host.get("address", "")
            if isinstance(address, str) and urlsplit(address).hostname not in LOOPBACK:
                raise SystemExit(f"bench: refusing a non-loopback Redis: {address}")
        config["prefix"] = "benchroster"


def broadcast_flush() -> None:
    """Wait until the broadcaster sent every committed change (so its cost is in the timing)."""
    from roster.live import broadcast

    publisher = getattr(broadcast, "publisher", None)
    if publisher is not None and hasattr(publisher, "flush"):
        publisher.flush(timeout=120)


def roster_tables_truncate() -> None:
    """Empty every table the ingest writes, so a run starts from a clean roster."""
    from django.db import connection

    from roster.models import Attendee, Event, Meeting, Quarantine, VoiceConnectorStream

    tables = ", ".join(
        connection.ops.quote_name(m._meta.db_table)
        for m in (Attendee, Event, Meeting, Quarantine, VoiceConnectorStream)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


def database_vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def roster_counts() -> dict[str, int]:
    from django.db.models import Sum

    from roster.models import Attendee, Event, Meeting, Quarantine

    return {
        "events": Event.objects.count(),
        "duplicate_count_sum": Event.objects.aggregate(s=Sum("duplicate_count"))["s"] or 0,
        "meetings": Meeting.objects.count(),
        "meetings_ended": Meeting.objects.filter(status="ended").count(),
        "attendees": Attendee.objects.count(),
        "attendees_still_joined": Attendee.objects.filter(presence="joined").count(),
        "quarantined": Quarantine.objects.count(),
    }


def conditions() -> dict[str, object]:
    """Machine and software facts for the report."""
    info: dict[str, object] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            info["postgresql"] = cursor.fetchone()[0]
    except Exception as exc:  # noqa: BLE001 - a fact for the report, never fatal
        info["postgresql"] = f"unknown ({exc})"
    try:
        import django

        info["django"] = django.get_version()
    except ImportError:
        pass
    return info


@dataclass
class Timing:
    seconds: float = 0.0

    @contextmanager
    def measure(self):
        start = time.perf_counter()
        try:
            yield self
        finally:
            self.seconds += time.perf_counter() - start


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def moto_command(*, port: int) -> list[str]:
    """The local SQS endpoint's command line. ``BENCH_STOCK_MOTO=1``: moto's own server, without
    roster.dev.local_sqs's cheaper clock (the endpoint of the figures before 2026-11-24)."""
    if os.environ.get("BENCH_STOCK_MOTO"):
        return [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)]
    return local_sqs.server_command(port=port)


def pid_cpu_seconds(pid: int) -> float | None:
    """CPU time (user+sys) a process used so far, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def postgres_backends_cpu(database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving ``database`` (read from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    marker = f" {database} ".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "cmdline").read_bytes():
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if not stat[stat.find("(") + 1 : stat.rfind(")")].startswith("postgres"):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


class CpuMeter:
    """CPU used during a block: this process (with its child processes that ended in the block:
    ``ingest_file``'s workers), the moto server, the PostgreSQL backends of the bench database
    (sampled every 0.2 s, so backends that come and go are counted), and the machine.

    ``others_s()`` is what the rest of the machine used meanwhile: other people's work on a shared
    box, which the figures should be read against.
    """

    def __init__(self, moto_pid: int | None = None) -> None:
        self.moto_pid = moto_pid
        self.database = urlsplit(BENCH_DATABASE_URL).path.lstrip("/")

    def _sample(self) -> None:
        for pid, cpu in postgres_backends_cpu(self.database).items():
            self._pg_first.setdefault(pid, 0.0 if self._started else cpu)
            self._pg_last[pid] = cpu

    def _sampler(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._pg_first: dict[int, float] = {}
        self._pg_last: dict[int, float] = {}
        self._started = False
        self._sample()
        self._started = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sampler, daemon=True)
        self._thread.start()
        self._proc = _own_cpu_seconds()
        self._moto = pid_cpu_seconds(self.moto_pid) if self.moto_pid else None
        self._busy, self._total = machine_cpu_ticks()
        return self

    def __exit__(self, *exc_info) -> None:
        self.process_s = _own_cpu_seconds() - self._proc
        moto = pid_cpu_seconds(self.moto_pid) if self.moto_pid else None
        self.moto_s = moto - self._moto if moto is not None and self._moto is not None else None
        busy, total = machine_cpu_ticks()
        self._stop.set()
        self._thread.join()
        self._sample()
        self.postgres_s = sum(self._pg_last[pid] - first for pid, first in self._pg_first.items())
        self.machine_busy = (busy - self._busy) / (total - self._total) if total > self._total else 0.0
        self.machine_busy_s = (busy - self._busy) / os.sysconf("SC_CLK_TCK")

    def others_s(self, extra_s: float = 0.0) -> float:
        """CPU seconds used by processes that are not the bench, moto or PostgreSQL (background load)."""
        known = self.process_s + (self.moto_s or 0.0) + self.postgres_s + extra_s
        return max(0.0, self.machine_busy_s - known)


def _own_cpu_seconds() -> float:
    """This process's CPU and that of its children it has waited for."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def background_load(seconds: float = 3.0) -> float:
    """Share of the machine's cores busy while the bench sleeps: other people's work."""
    busy0, total0 = machine_cpu_ticks()
    time.sleep(seconds)
    busy1, total1 = machine_cpu_ticks()
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


def results_write(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, default=str))
