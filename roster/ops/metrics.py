"""Prometheus metrics across processes.

Ingest runs in Celery workers, on any number of machines; /metrics is served by Daphne. A
per-process prometheus registry in a worker would be invisible to the scrape (and lost at every
restart), so each process adds its committed batches' tallies and latency buckets to Redis hashes
(HINCRBY is atomic: every worker adds to the same totals), from a thread, every half second
(:class:`_Pending`), and the /metrics view reads them at scrape time through a custom collector.
Recording never fails an ingest: with Redis down it logs (at most once a minute) and skips for a
few seconds.

Queue backlog comes from the QueueSource rows (the drains write it). Connected sockets are a
process-local count (roster.live.sockets): sockets live in the Daphne process that serves
/metrics, so each Daphne process reports its own (scrape every one, as Prometheus does with its
instance label).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator

import redis
from django.conf import settings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from roster.domain.events import SOURCE_CHIME, SOURCES, VOICE_CONNECTOR_STATUS_TIME_FIELD
from roster.domain.fold import RANK, type_name
from roster.ingest.hooks import Committed, Tally
from roster.live.sockets import sockets_connected
from roster.models import QueueSource
from roster.ops.health import queue_name

logger = logging.getLogger(__name__)


def _key(name: str) -> str:
    """A metrics key of this deployment (ROSTER_NAMESPACE)."""
    return f"{settings.ROSTER_NAMESPACE}:metrics:{name}"


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REDIS_TIMEOUT_SECONDS = 0.5
PAUSE_AFTER_FAILURE_SECONDS = 5.0
SEP = "\t"

# Label values come from message bodies: only known names are kept, so a producer cannot grow
# the number of series without bound. Everything else is "other".
KNOWN_TYPES = frozenset(
    {
        *RANK,  # every meeting and attendee type the fold ranks, MeetingStarted/Ended included
        *VOICE_CONNECTOR_STATUS_TIME_FIELD,  # the Voice Connector statuses the parser accepts
        # rejection codes (roster.domain.events) and ingest_failed (roster.ingest.service)
        "too_large",
        "not_utf8",
        "not_json",
        "not_object",
        "bad_sns",
        "sns_not_notification",
        "wrong_source",
        "account_not_allowed",
        "missing_field",
        "bad_field",
        "unrecognised",
        "ingest_failed",
    }
)
_FAMILY_TYPE = re.compile(r"^(Transcription|MediaPipeline)[A-Za-z]{0,48}$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")


def type_label(event_type: str) -> str:
    name = type_name(event_type)
    if not name:
        return "none"
    return name if name in KNOWN_TYPES or _FAMILY_TYPE.match(name) else "other"


def source_label(source: str) -> str:
    """``chime`` or ``reconcile`` (ROSTER.md: repairs carry their source in the metrics)."""
    return source if source in SOURCES else "other"


def queue_label(queue: str) -> str:
    """A short name: an SQS URL's last segment, ``sns:<topic name>``, ``file``; never an account id."""
    if not queue:
        return "none"
    if queue.startswith(("https://", "http://")):
        name = queue_name(queue)
    elif queue.startswith("sns:"):
        name = "sns:" + queue.rsplit(":", 1)[-1]
    elif queue.startswith("file:"):
        name = "file"
    else:
        name = queue
    return name if _QUEUE_NAME.match(name) else "other"


class _Redis:
    """One client per Redis URL per process, short timeouts, and a pause after a failure."""

    def __init__(self) -> None:
        self.clients: dict[str, redis.Redis] = {}
        self.paused_until = 0.0
        self.warned_at = 0.0
        self.lock = threading.Lock()

    def client(self) -> redis.Redis:
        url = settings.REDIS_URL
        with self.lock:
            client = self.clients.get(url)
            if client is None:
                client = redis.Redis.from_url(
                    url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
                )
                self.clients[url] = client
        return client

    def failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self.paused_until = now + PAUSE_AFTER_FAILURE_SECONDS
        if now - self.warned_at > 60:
            self.warned_at = now
            logger.warning("metrics not recorded: Redis unavailable (%s)", type(exc).__name__)

    def reset(self) -> None:
        with self.lock:
            self.clients.clear()
        self.paused_until = 0.0


_redis = _Redis()


def _bucket(seconds: float) -> str:
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


def ingest_committed(committed: Committed) -> None:
    """The after-commit hook of ingest (registered by roster.apps): add the batch's tallies (and its
    latency, when timed) to this process's pending counters, which a thread sends to the shared
    ones. Never raises, never waits on Redis."""
    if time.monotonic() < _redis.paused_until:
        return
    if committed.tallies or committed.seconds is not None:
        pending.add(tallies=committed.tallies, seconds=committed.seconds)


class _Pending:
    """This process's counts not yet in Redis. Each committed batch merges into them; one thread
    sends them every FLUSH_SECONDS in one pipelined round trip, and a scrape served by this
    process sends them first. A round trip per batch on the ingest's own thread cost it 10-13 %
    of its time (measured batch by batch, docs/benchmarks.md); now a busy ingest sends one per
    interval, whatever its number of batches. A process killed outright loses at most its last
    interval's counts; one that exits normally sends them (atexit)."""

    FLUSH_SECONDS = 0.5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._tallies: Counter[Tally] = Counter()
        self._buckets: Counter[str] = Counter()
        self._seconds = 0.0

    def add(self, *, tallies: Counter[Tally], seconds: float | None) -> None:
        with self._lock:
            if self._pid != os.getpid():  # fresh after a fork: the parent's counts are its own
                self._tallies, self._buckets, self._seconds = Counter(), Counter(), 0.0
                threading.Thread(target=self._run, name="roster-metrics", daemon=True).start()
                self._pid = os.getpid()
            self._tallies.update(tallies)
            if seconds is not None:
                self._buckets[_bucket(seconds)] += 1
                self._seconds += seconds

    def _run(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the thread must outlive one bad turn
                logger.exception("metrics: sending the pending counts failed")

    def flush(self) -> None:
        """Send what is pending now (the thread, a scrape, the process's exit). Never raises: with
        Redis down the counts are dropped, as an ingest's were before."""
        with self._lock:
            if self._pid != os.getpid():
                return
            tallies, buckets, seconds = self._tallies, self._buckets, self._seconds
            self._tallies, self._buckets, self._seconds = Counter(), Counter(), 0.0
        if not tallies and not buckets:
            return
        merged: Counter[str] = Counter()
        for (queue, event_type, outcome, source), count in tallies.items():
            labels = (queue_label(queue), type_label(event_type), outcome, source_label(source))
            merged[SEP.join(labels)] += count
        try:
            pipe = _redis.client().pipeline(transaction=False)
            for field, count in merged.items():
                pipe.hincrby(_key("events"), field, count)
            for bucket, count in buckets.items():
                pipe.hincrby(_key("ingest-latency"), bucket, count)
            if buckets:
                pipe.hincrby(_key("ingest-latency"), "count", sum(buckets.values()))
                pipe.hincrbyfloat(_key("ingest-latency"), "sum", seconds)
            pipe.execute()
        except Exception as exc:  # metrics must never fail an ingest
            _redis.failed(exc)


pending = _Pending()
atexit.register(pending.flush)


# ---------------------------------------------------------------------------------------------
# Scrape


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RosterCollector:
    """Reads the shared counters (Redis), the queue figures (database) and the socket count."""

    def collect(self) -> Iterator[Metric]:
        yield from self._ingest()
        yield from self._queues()
        sockets = GaugeMetricFamily(
            "chime_roster_websockets_connected",
            "Open websockets in this process (Daphne), by endpoint",
            labels=["endpoint"],
        )
        counts = sockets_connected()
        for endpoint in ("feed", "dashboard"):
            sockets.add_metric([endpoint], counts.get(endpoint, 0))
        yield sockets

    def _ingest(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "chime_roster_metrics_store_up", "1 when the shared counters (Redis) could be read"
        )
        pending.flush()  # this process's latest batches, so its own scrape shows them
        try:
            pipe = _redis.client().pipeline(transaction=False)
            pipe.hgetall(_key("events"))
            pipe.hgetall(_key("ingest-latency"))
            raw_events, raw_latency = pipe.execute()
        except Exception as exc:  # a scrape shows the store down, it does not fail
            logger.warning("metrics: Redis unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        events = CounterMetricFamily(
            "chime_roster_events",
            "Messages ingested, by queue, event type (or rejection code), outcome and source "
            "(chime, or reconcile: repairs synthesized from the Chime API)",
            labels=["queue", "type", "outcome", "source"],
        )
        received = CounterMetricFamily(
            "chime_roster_events_received",
            "Messages received, by queue and event type (or rejection code)",
            labels=["queue", "type"],
        )
        totals: Counter[tuple[str, str]] = Counter()
        by_labels: Counter[tuple[str, ...]] = Counter()
        for field, value in ((_decode(k), int(v)) for k, v in raw_events.items()):
            parts = field.split(SEP)
            if len(parts) == 3:  # counted before the source label: all from Chime
                parts.append(SOURCE_CHIME)
            if len(parts) != 4:
                continue
            by_labels[tuple(parts)] += value
            totals[(parts[0], parts[1])] += value
        for labels, value in sorted(by_labels.items()):
            events.add_metric(list(labels), value)
        for labels, value in sorted(totals.items()):
            received.add_metric(list(labels), value)
        yield events
        yield received

        latency = {_decode(k): _decode(v) for k, v in raw_latency.items()}
        cumulative = 0
        buckets = []
        for key in (*map(repr, LATENCY_BUCKETS), "+Inf"):  # the fields _bucket writes
            cumulative += int(latency.get(key, 0))
            buckets.append((key, cumulative))
        yield HistogramMetricFamily(
            "chime_roster_ingest_batch_seconds",
            "Time to ingest one batch (parse, one transaction, commit)",
            buckets=buckets,
            sum_value=float(latency.get("sum", 0.0)),
        )

    def _queues(self) -> Iterator[Metric]:
        backlog = GaugeMetricFamily(
            "chime_roster_queue_backlog_messages",
            "Messages waiting in the queue (ApproximateNumberOfMessages)",
            labels=["queue"],
        )
        in_flight = GaugeMetricFamily(
            "chime_roster_queue_in_flight_messages",
            "Messages received and not yet deleted (ApproximateNumberOfMessagesNotVisible)",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "chime_roster_queue_oldest_message_age_seconds",
            "Age of the oldest message in the drain's last receive",
            labels=["queue"],
        )
        enabled = GaugeMetricFamily(
            "chime_roster_queue_enabled", "1 when the queue is drained", labels=["queue"]
        )
        measured = {"backlog": backlog, "in_flight": in_flight, "oldest_age_seconds": oldest}
        try:
            rows = list(QueueSource.objects.order_by("url").values("url", "enabled", *measured))
        except Exception as exc:  # the rest of the scrape still answers
            logger.warning("metrics: queue figures unavailable (%s)", type(exc).__name__)
            rows = []
        for row in rows:
            label = [queue_label(row["url"])]
            enabled.add_metric(label, 1 if row["enabled"] else 0)
            for column, gauge in measured.items():
                if row[column] is not None:  # null: not measured yet, or the last check failed
                    gauge.add_metric(label, row[column])
        yield from (enabled, backlog, in_flight, oldest)


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RosterCollector())
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


REGISTRY = _registry()


def metrics_render() -> bytes:
    """The Prometheus text exposition of everything above."""
    return generate_latest(REGISTRY)
