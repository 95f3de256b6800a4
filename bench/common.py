"""Shared plumbing for the benchmarks: the bench database, Django setup, timing, the moto server.

Everything talks to 127.0.0.1 only: the database URL and the SQS endpoint are checked.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from roster.dev import local_sqs

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


def log(message: str) -> None:
    print(message, flush=True)


def environment_prepare(*, sqs_endpoint: str | None = None) -> None:
    """Set the environment the project's settings read, before Django is imported."""
    url = urlsplit(BENCH_DATABASE_URL)
    if url.hostname not in LOOPBACK:
        raise SystemExit(f"bench: refusing a non-loopback database: {BENCH_DATABASE_URL}")
    if not (url.path.lstrip("/") or "").startswith("bench"):
        raise SystemExit("bench: the bench database's name must start with 'bench' (it is dropped)")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DATABASE_URL"] = BENCH_DATABASE_URL
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["CHIME_ALLOWED_ACCOUNTS"] = ""
    os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/0"
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


def django_setup(*, recreate: bool = False) -> None:
    import django

    if recreate:
        database_recreate()
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """The local SQS endpoint (moto, ``roster.dev.local_sqs``) on a free loopback port, started and
    stopped by us (by its own pid)."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(f"/tmp/bench-moto-{self.port}.log")
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        """``BENCH_STOCK_MOTO=1``: moto's own server, without roster.dev.local_sqs's cheaper clock
        (the endpoint of the figures before 2026-11-24, for comparison)."""
        if os.environ.get("BENCH_STOCK_MOTO"):
            stock = Path(sys.executable).with_name("moto_server")
            return [str(stock), "-H", "127.0.0.1", "-p", str(self.port)]
        return local_sqs.server_command(port=self.port)

    def __enter__(self) -> MotoServer:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in __exit__
        self.process = subprocess.Popen(
            self.command(),
            cwd=local_sqs.ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited at start; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"moto_server did not answer on {self.url}; see {self.log_path}")

    def __exit__(self, *exc_info) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()

    def cpu_seconds(self) -> float | None:
        """CPU time (user+sys) the server process used so far, from /proc."""
        if self.process is None:
            return None
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


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
    """CPU used during a block: this process, the moto server, the PostgreSQL backends of the bench
    database (sampled every 0.2 s, so backends that come and go are counted), and the machine.

    ``others_s()`` is what the rest of the machine used meanwhile: other people's work on a shared
    box, which the figures should be read against.
    """

    def __init__(self, moto: MotoServer | None = None) -> None:
        self.moto = moto
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
        self._proc = time.process_time()
        self._moto = self.moto.cpu_seconds() if self.moto else None
        self._busy, self._total = machine_cpu_ticks()
        return self

    def __exit__(self, *exc_info) -> None:
        self.process_s = time.process_time() - self._proc
        moto = self.moto.cpu_seconds() if self.moto else None
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


def background_load(seconds: float = 3.0) -> float:
    """Share of the machine's cores busy while the bench sleeps: other people's work."""
    busy0, total0 = machine_cpu_ticks()
    time.sleep(seconds)
    busy1, total1 = machine_cpu_ticks()
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


def results_write(path: str | None, payload: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, default=str))
