"""Health checks for load balancers (/healthz): the database, Redis and every enabled queue.

Anyone may ask (a load balancer cannot log in), and an anonymous caller learns only ok or fail
per part (:func:`health_public`). Staff and the metrics token get the details: each queue by its
name only (no URL, no account id) and a failure by its exception class, never its message. Queue checks
call SQS, so their results are cached for a few seconds per process: a storm of probes costs SQS
at most one GetQueueAttributes per queue per HEALTH_QUEUE_CACHE_SECONDS.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import connection

from roster.read.selectors import queue_urls_enabled
from roster.sources.sqs import sqs_client

OK = "ok"
FAIL = "fail"
CONNECT_TIMEOUT_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class _Cached:
    at: float
    check: dict[str, str]


_queue_cache: dict[tuple[str, str | None], _Cached] = {}
_queue_locks: dict[tuple[str, str | None], threading.Lock] = {}
_locks_guard = threading.Lock()


def queue_name(url: str) -> str:
    """The queue's name, the last segment of its URL (what /healthz may show)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def _failure(exc: BaseException) -> dict[str, str]:
    return {"status": FAIL, "error": type(exc).__name__}


def database_check() -> dict[str, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return _failure(exc)
    return {"status": OK}


def redis_check() -> dict[str, str]:
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=READ_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    except Exception as exc:
        return _failure(exc)
    finally:
        client.close()
    return {"status": OK}


def queue_check(*, url: str) -> dict[str, str]:
    """Reachable: GetQueueAttributes answers. Cached per (queue, endpoint) for a few seconds;
    concurrent probes of one queue wait for the one call in flight instead of each calling SQS."""
    key = (url, settings.AWS_ENDPOINT_URL_SQS)
    ttl = settings.HEALTH_QUEUE_CACHE_SECONDS
    cached = _queue_cache.get(key)
    if cached is not None and time.monotonic() - cached.at < ttl:
        return cached.check
    with _locks_guard:
        lock = _queue_locks.setdefault(key, threading.Lock())
    with lock:
        cached = _queue_cache.get(key)
        if cached is not None and time.monotonic() - cached.at < ttl:
            return cached.check
        check = {"queue": queue_name(url)}
        try:
            client = sqs_client(queue_url=url, timeout=READ_TIMEOUT_SECONDS, max_attempts=1)
            client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        except Exception as exc:
            check.update(_failure(exc))
        else:
            check["status"] = OK
        _queue_cache[key] = _Cached(at=time.monotonic(), check=check)
        return check


def health_cache_clear() -> None:
    _queue_cache.clear()


def health_report() -> dict[str, Any]:
    """Every check's status; ``status`` is ok only when all are."""
    database = database_check()
    queues: list[dict[str, str]] = []
    if database["status"] == OK:
        try:
            urls = queue_urls_enabled()
        except Exception as exc:
            database = _failure(exc)
        else:
            queues = [queue_check(url=url) for url in urls]
    redis_health = redis_check()
    healthy = all(check["status"] == OK for check in (database, redis_health, *queues))
    checks = {"database": database, "redis": redis_health, "queues": queues}
    return {"status": OK if healthy else FAIL, "checks": checks}


def health_public(report: dict[str, Any]) -> dict[str, Any]:
    """What an anonymous caller learns of a report: ok or fail per part, the queues as one part."""
    checks = report["checks"]
    queues_ok = all(queue["status"] == OK for queue in checks["queues"])
    return {
        "status": report["status"],
        "checks": {
            "database": checks["database"]["status"],
            "redis": checks["redis"]["status"],
            "queues": OK if queues_ok else FAIL,
        },
    }
