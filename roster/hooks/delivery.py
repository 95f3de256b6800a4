"""Delivering the outbox: Celery tasks (roster.tasks) call :func:`deliveries_run`, which fans the
outbox's new rows out into deliveries (:func:`roster.hooks.outbox.deliveries_fan_out`) and sends
what is due.

Order: per (hook, meeting) only the first pending delivery (lowest seq, then part) is ever
attempted, so a later change never overtakes an earlier one that is still undelivered. A worker
takes up to 50 deliveries at once with a lease (``locked_until``, ``lock_token``), by one
conditional UPDATE that also checks each is still first (:func:`deliveries_claim`), then sends
and records them one by one, no transaction held across the network call. A worker killed
mid-delivery leaves its lease to run out (it outlasts any attempt: twice HOOKS_TIMEOUT_SECONDS
and a second), then another worker sends it again (at least once: the same delivery id), still
before anything later of that hook and meeting.

Failures back off exponentially with full jitter up to HOOKS_RETRY_MAX_SECONDS, for
HOOKS_RETRY_HOURS, then the delivery is ``dead`` (kept; :func:`delivery_redeliver`). After
HOOKS_BREAKER_FAILURES consecutive failures the hook is broken: it sends nothing but one probe
every HOOKS_BREAKER_COOLDOWN_SECONDS, and the first success mends it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import random
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import redis
from django.conf import settings
from django.db import connection as database
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from roster.hooks.outbox import FAN_OUT_BATCH, body_with_id, deliveries_fan_out
from roster.hooks.signatures import DELIVERY_HEADER, SIGNATURE_HEADER, signature_header
from roster.hooks.targets import KIND_HTTP, KIND_SNS, KIND_SQS, TargetRefused, address_resolve, target_parse
from roster.live.shared_redis import redis_client, redis_key
from roster.models import Hook, HookDelivery

logger = logging.getLogger(__name__)

TASK_NAME = "roster.tasks.hook_deliveries_run"
PENDING, DELIVERED, DEAD = (
    HookDelivery.Status.PENDING,
    HookDelivery.Status.DELIVERED,
    HookDelivery.Status.DEAD,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str = ""
    latency_ms: int = 0


class _Kicker:
    """One thread per process sends the delivery task, so ingest never waits on the broker, and
    the kicks of batches committed meanwhile go as one task; none while another kick waits in the
    broker (the kick mark, below). A process that exits before its thread sent leaves the work to
    beat's sweep (HOOKS_SWEEP_SECONDS)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._wake = threading.Event()

    def kick(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # fresh after a fork
                self._wake = threading.Event()
                threading.Thread(
                    target=self._run, args=(self._wake,), name="roster-hook-kick", daemon=True
                ).start()
                self._pid = os.getpid()
        self._wake.set()

    def _run(self, wake: threading.Event) -> None:
        from celery import current_app

        while True:
            wake.wait()
            wake.clear()
            if not _kick_mark():  # a kick waits in the broker: its run will see this batch
                continue
            try:
                current_app.send_task(TASK_NAME, ignore_result=True)
            except Exception:  # noqa: BLE001 - the sweep delivers what a lost kick leaves
                kick_mark_clear()
                logger.exception("could not queue the hook delivery task")
                time.sleep(1.0)


_kicker = _Kicker()


def deliveries_kick() -> None:
    """After a batch that wrote deliveries committed: a worker runs them now, not at the sweep."""
    _kicker.kick()


def lease_seconds() -> float:
    return 2 * settings.HOOKS_TIMEOUT_SECONDS + 1


def _earlier_pending() -> Exists:
    return Exists(
        HookDelivery.objects.filter(
            hook=OuterRef("hook"), meeting_id=OuterRef("meeting_id"), status=PENDING
        ).filter(Q(seq__lt=OuterRef("seq")) | Q(seq=OuterRef("seq"), part__lt=OuterRef("part")))
    )


def _free(now: datetime) -> Q:
    return Q(locked_until__isnull=True) | Q(locked_until__lt=now)


CLAIM_BATCH = 50  # deliveries leased at once by a worker (at most one per hook and meeting)


def deliveries_claim(*, now: datetime, limit: int = CLAIM_BATCH) -> list[HookDelivery]:
    """Lease up to ``limit`` deliveries that may be attempted now (pending, due, not leased, first
    of their hook and meeting, of an enabled hook that is not broken or whose probe is due), with
    their hooks and payloads, oldest due first: three statements for the whole batch.

    On PostgreSQL the rows are picked ``FOR UPDATE SKIP LOCKED``, so workers claiming at the same
    moment take different rows instead of queueing on the same ones; the UPDATE checks again that
    each is pending, free and first, which is what makes a claim exclusive and ordered on every
    backend."""
    hook_ready = Q(hook__broken_at__isnull=True) | Q(hook__probe_at__lte=now)
    due = (
        HookDelivery.objects.filter(status=PENDING, next_attempt_at__lte=now, hook__enabled=True)
        .filter(_free(now), hook_ready)
        .exclude(_earlier_pending())
        .order_by("next_attempt_at", "id")
        .select_for_update(skip_locked=True, of=("self",))
        .values_list("pk", flat=True)[:limit]
    )
    token = uuid.uuid4().hex
    with transaction.atomic():
        ids = list(due)
        if not ids:
            return []
        taken = (
            HookDelivery.objects.filter(pk__in=ids, status=PENDING)
            .filter(_free(now))
            .exclude(_earlier_pending())  # a redelivered earlier one came back meanwhile
            .update(locked_until=now + timedelta(seconds=lease_seconds()), lock_token=token)
        )
    if not taken:
        return []
    claimed = sorted(
        HookDelivery.objects.select_related("hook", "payload").filter(pk__in=ids, lock_token=token),
        key=lambda d: (d.next_attempt_at, d.pk),
    )
    hooks: dict[int, Hook] = {}
    for delivery in claimed:  # one Hook per hook: its breaker state, as the batch changes it
        delivery.hook = hooks.setdefault(delivery.hook_id, delivery.hook)
    return claimed


# The kick mark: up from a kick's task being sent until a worker starts running it. A batch that
# commits while it is up sends no task: the queued one has not claimed yet, so it will see the
# batch. At most one kick waits in the broker, however fast the ingest commits (with no worker
# running, or all busy), and a kick costs the ingest one Redis command, not a Celery task (about
# 2.5 ms of its interpreter). A task lost on the way leaves the mark to expire (KICK_MARK_SECONDS)
# and beat's sweep to deliver meanwhile.
KICK_MARK_SECONDS = 60


def _kick_key() -> str:
    return redis_key("hooks", "kicked")


def _kick_mark() -> bool:
    """Put the mark up; False when it was up already (a kick is on its way)."""
    try:
        return bool(redis_client().set(_kick_key(), "1", nx=True, ex=KICK_MARK_SECONDS))
    except redis.RedisError:  # without the mark, every batch kicks: more tasks, never late
        return True


def kick_mark_clear() -> None:
    """A run is starting: a batch committed from now on kicks again."""
    try:
        redis_client().delete(_kick_key())
    except redis.RedisError:
        logger.warning("the hook kick mark was not cleared: Redis unavailable (it expires)")


def deliveries_run(*, seconds: float = 30.0) -> int:
    """Attempt what is due until nothing is (or ``seconds`` passed, then a kick carries on); how
    many attempts were made. Any number of workers may run this at once."""
    started = time.monotonic()
    attempts = 0
    kick_mark_clear()  # before the first claim: a batch committed from now on kicks again
    while True:
        fanned = deliveries_fan_out()
        claimed = deliveries_claim(now=timezone.now(), limit=CLAIM_BATCH)
        if not claimed:
            if fanned == FAN_OUT_BATCH:  # more to fan out (deliveries of paused hooks, say)
                continue
            return attempts
        if len(claimed) == CLAIM_BATCH:  # a backlog: one more worker may help (one kick waits at most)
            deliveries_kick()
        delivered_hooks: set[int] = set()
        for delivery in claimed:
            if delivery.hook.broken_at is not None and not _probe_claim(delivery.hook):
                _release(delivery)
                continue
            if delivery_attempt(delivery=delivery).ok:
                delivered_hooks.add(delivery.hook_id)
            attempts += 1
        if delivered_hooks:  # once a batch, not once a delivery: every worker writes these rows
            with _unflushed_commit():
                Hook.objects.filter(pk__in=delivered_hooks).update(last_success_at=timezone.now())
        if time.monotonic() - started >= seconds:
            deliveries_kick()  # the rest in a new task, so the worker's other tasks get a turn
            return attempts


def _probe_claim(hook: Hook) -> bool:
    """One probe per cool-down for a broken hook, whatever the number of workers."""
    now = timezone.now()
    cooldown = timedelta(seconds=settings.HOOKS_BREAKER_COOLDOWN_SECONDS)
    return bool(
        Hook.objects.filter(pk=hook.pk, broken_at__isnull=False, probe_at__lte=now).update(
            probe_at=now + cooldown
        )
    )


def _release(delivery: HookDelivery) -> None:
    HookDelivery.objects.filter(pk=delivery.pk, lock_token=delivery.lock_token).update(
        locked_until=None, lock_token=""
    )


def delivery_send(*, hook: Hook, delivery: HookDelivery) -> Outcome:
    """Send one delivery to the hook's target, timed; any failure of the far side (or a refused
    target) is an outcome, not an exception. Records nothing: the caller decides what it means."""
    started = time.monotonic()
    try:
        outcome = _send(hook=hook, delivery=delivery)
    except TargetRefused as refused:
        outcome = Outcome(ok=False, error=f"refused: {refused}")
    except Exception as exc:  # noqa: BLE001 - any failure of the far side is a failed attempt
        outcome = Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:2000])
    return Outcome(outcome.ok, outcome.status_code, outcome.error, int((time.monotonic() - started) * 1000))


def delivery_attempt(*, delivery: HookDelivery) -> Outcome:
    """Send one leased delivery and record what happened (on the delivery and the hook's breaker)."""
    outcome = delivery_send(hook=delivery.hook, delivery=delivery)
    with _unflushed_commit():
        _record(delivery=delivery, outcome=outcome)
    return outcome


@contextlib.contextmanager
def _unflushed_commit() -> Iterator[None]:
    """A transaction whose commit does not wait for PostgreSQL's WAL flush (``synchronous_commit``
    off, for it alone): that wait was a third of a worker's time per delivery. A crash of the
    database may forget the last such commits; for an outcome that means a resend (at least once,
    the same delivery id), never a loss. Nor a reordering: the claim of a meeting's next delivery
    is an ordinary commit, which flushes the WAL up to it, this outcome included."""
    with transaction.atomic():
        if database.vendor == "postgresql":
            with database.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
        yield


def _record(*, delivery: HookDelivery, outcome: Outcome) -> None:
    """One UPDATE of the delivery; the hook's row only when its breaker state changes (the hook as
    the claim read it: a failure count to reset, a breaker to mend), never on a plain success."""
    now = timezone.now()
    mine = HookDelivery.objects.filter(pk=delivery.pk, lock_token=delivery.lock_token)
    common = {
        "attempts": F("attempts") + 1,
        "last_attempt_at": now,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
        "latency_ms": outcome.latency_ms,
        "locked_until": None,
        "lock_token": "",
    }
    hook = Hook.objects.filter(pk=delivery.hook_id)
    if outcome.ok:
        mine.update(status=DELIVERED, delivered_at=now, **common)
        if delivery.hook.broken_at is None and not delivery.hook.consecutive_failures:
            return
        delivery.hook.broken_at, delivery.hook.consecutive_failures = None, 0
        mended = hook.filter(broken_at__isnull=False).update(
            broken_at=None, probe_at=None, consecutive_failures=0, last_success_at=now
        )
        hook.filter(broken_at__isnull=True).update(consecutive_failures=0, last_success_at=now)
        if mended:  # what waited on backoff while the hook was broken goes now
            HookDelivery.objects.filter(hook_id=delivery.hook_id, status=PENDING).update(next_attempt_at=now)
        return
    until = delivery.retry_until or delivery.created_at + timedelta(hours=settings.HOOKS_RETRY_HOURS)
    if now >= until:
        mine.update(status=DEAD, **common)
    else:
        mine.update(
            next_attempt_at=now + timedelta(seconds=backoff_seconds(attempts=delivery.attempts + 1)), **common
        )
    hook.update(consecutive_failures=F("consecutive_failures") + 1, last_failure_at=now)
    delivery.hook.consecutive_failures += 1
    cooldown = timedelta(seconds=settings.HOOKS_BREAKER_COOLDOWN_SECONDS)
    error = outcome.error or outcome.status_code
    reason = f"{delivery.attempts + 1} attempt(s) of {delivery.delivery_id}: {error}"
    hook.filter(broken_at__isnull=True, consecutive_failures__gte=settings.HOOKS_BREAKER_FAILURES).update(
        broken_at=now, broken_reason=reason[:2000], probe_at=now + cooldown
    )
    hook.filter(broken_at__isnull=False).update(broken_reason=reason[:2000])


def backoff_seconds(*, attempts: int) -> float:
    """The wait after the ``attempts``-th failure: exponential, capped, with full jitter (between
    half and all of it, so it still grows)."""
    ceiling = min(
        settings.HOOKS_RETRY_MAX_SECONDS, settings.HOOKS_RETRY_BASE_SECONDS * 2 ** min(attempts - 1, 30)
    )
    return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 - jitter, not a secret


def hook_secrets(*, hook: Hook, now: datetime | None = None) -> list[str]:
    """The secrets that sign now: the current one, and the previous one within its window."""
    now = now or timezone.now()
    live = [hook.secret]
    if hook.previous_secret and hook.previous_secret_until and hook.previous_secret_until > now:
        live.append(hook.previous_secret)
    return live


def _send(*, hook: Hook, delivery: HookDelivery) -> Outcome:
    target = target_parse(target=hook.target, operator=True)
    text = body_with_id(body=delivery.payload.body, delivery_id=delivery.delivery_id)
    body = text.encode("utf-8")
    if target.kind == KIND_HTTP:
        return _post(url=target.value, hook=hook, delivery=delivery, body=body)
    attributes = _attributes(delivery)
    if target.kind == KIND_SNS:
        region = target.value.split(":")[3] or settings.AWS_REGION
        _client("sns", region).publish(TopicArn=target.value, Message=text, MessageAttributes=attributes)
        return Outcome(ok=True)
    if target.kind == KIND_SQS:
        region = _sqs_region(target.value)
        _client("sqs", region, settings.AWS_ENDPOINT_URL_SQS).send_message(
            QueueUrl=target.value, MessageBody=text, MessageAttributes=attributes
        )
        return Outcome(ok=True)
    raise TargetRefused("bad_target", f"unknown target kind {target.kind}")


def _attributes(delivery: HookDelivery) -> dict[str, dict[str, str]]:
    """Message attributes for SNS filter policies (``events`` is a String.Array) and SQS readers."""
    events = {"DataType": "String.Array", "StringValue": json.dumps(delivery.payload.events)}
    return {
        "events": events,
        "delivery_id": {"DataType": "String", "StringValue": delivery.delivery_id},
        "meeting_id": {"DataType": "String", "StringValue": delivery.meeting_id},
        "seq": {"DataType": "Number", "StringValue": str(delivery.seq)},
    }


def _sqs_region(url: str) -> str:
    host = urlsplit(url).hostname or ""
    parts = host.split(".")
    return parts[1] if len(parts) > 3 and parts[0] == "sqs" else settings.AWS_REGION


_clients: dict[tuple[str, str, str | None], Any] = {}
_clients_lock = threading.Lock()


def _client(service: str, region: str, endpoint: str | None = None) -> Any:
    key = (service, region, endpoint)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = boto3.client(service, region_name=region, endpoint_url=endpoint)
        return _clients[key]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever DNS says now; Host stays the name."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As above, with TLS verified against the URL's host name (SNI and certificate)."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


_Key = tuple[str, str, int, str]  # scheme, host, port, the checked address


class _Pool:
    """Idle keep-alive connections per (scheme, host, port, checked address), per process: a
    hook's deliveries reuse one connection instead of a TCP (and TLS) handshake each. A changed
    DNS answer is a different key, so a connection only ever goes to an address that was checked."""

    MAX_IDLE = 4  # per key

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._pid = os.getpid()

    def take(self, key: _Key) -> http.client.HTTPConnection | None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child never shares its parent's sockets
                self._idle, self._pid = {}, os.getpid()
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give(self, key: _Key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.MAX_IDLE and self._pid == os.getpid():
                idle.append(connection)
                return
        connection.close()


class _Watchdog:
    """One thread per process shuts the socket of an attempt that outlived its deadline, however
    slowly the far side sends or reads (a socket timeout only bounds each read). It replaces a
    timer thread per attempt, which cost a worker more than the POST itself."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._watched: dict[int, tuple[float, socket.socket]] = {}
        self._tokens = 0
        self._pid: int | None = None

    def watch(self, sock: socket.socket, seconds: float) -> int:
        with self._wake:
            if self._pid != os.getpid():
                self._watched, self._pid = {}, os.getpid()
                threading.Thread(target=self._run, name="roster-hook-watchdog", daemon=True).start()
            self._tokens += 1
            self._watched[self._tokens] = (time.monotonic() + seconds, sock)
            self._wake.notify()
            return self._tokens

    def release(self, token: int) -> None:
        with self._wake:
            self._watched.pop(token, None)

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for token, (deadline, sock) in list(self._watched.items()):
                    if deadline <= now:
                        del self._watched[token]
                        _shut(sock)
                soonest = min((deadline for deadline, _ in self._watched.values()), default=None)
                self._wake.wait(None if soonest is None else max(0.0, soonest - now))


_pool = _Pool()
_watchdog = _Watchdog()
# What a reused connection raises when the far side had closed it while idle: the request went
# nowhere, so it is sent again at once on a new connection (not counted as a failed attempt).
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _post(*, url: str, hook: Hook, delivery: HookDelivery, body: bytes) -> Outcome:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = address_resolve(host=host, port=port)
    key: _Key = (parts.scheme, host, port, address)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "chime-roster-hooks/1",
        SIGNATURE_HEADER: signature_header(secrets=hook_secrets(hook=hook), body=body),
        DELIVERY_HEADER: delivery.delivery_id,
    }
    connection = _pool.take(key)
    if connection is not None:
        try:
            return _request(key, connection, path=path, body=body, headers=headers)
        except _STALE:
            pass
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = kind(host, port, address=address, timeout=settings.HOOKS_TIMEOUT_SECONDS)
    return _request(key, connection, path=path, body=body, headers=headers)


def _request(
    key: _Key, connection: http.client.HTTPConnection, *, path: str, body: bytes, headers: dict[str, str]
) -> Outcome:
    """One POST on ``connection``, within twice HOOKS_TIMEOUT_SECONDS whatever the far side does:
    the socket is shut at that deadline, before the lease (lease_seconds) can run out, so no other
    worker sends this delivery, or the next one, while this attempt is still going. The connection
    goes back to the pool when the answer was read whole and the far side keeps it open."""
    if connection.sock is None:
        connection.connect()
    token = _watchdog.watch(connection.sock, 2 * settings.HOOKS_TIMEOUT_SECONDS)
    reusable = False
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)
        reusable = response.isclosed() and not response.will_close
    finally:
        _watchdog.release(token)
        if reusable:
            _pool.give(key, connection)
        else:
            connection.close()
    ok = 200 <= response.status < 300
    return Outcome(ok=ok, status_code=response.status, error="" if ok else f"HTTP {response.status}")


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def delivery_redeliver(*, delivery: HookDelivery) -> bool:
    """Send a dead (or delivered) delivery again, soon, with a fresh retry window: it goes back to
    pending and so to its place in its hook and meeting's order (before anything later that is
    still pending). False when it was pending already."""
    now = timezone.now()
    return bool(
        HookDelivery.objects.filter(pk=delivery.pk)
        .exclude(status=PENDING)
        .update(
            status=PENDING,
            next_attempt_at=now,
            retry_until=now + timedelta(hours=settings.HOOKS_RETRY_HOURS),
            delivered_at=None,
            locked_until=None,
            lock_token="",
        )
    )


def deliveries_redeliver(*, hook: Hook) -> int:
    """Every dead delivery of a hook, again (admin's bulk action); how many."""
    now = timezone.now()
    return HookDelivery.objects.filter(hook=hook, status=DEAD).update(
        status=PENDING,
        next_attempt_at=now,
        retry_until=now + timedelta(hours=settings.HOOKS_RETRY_HOURS),
        locked_until=None,
        lock_token="",
    )
