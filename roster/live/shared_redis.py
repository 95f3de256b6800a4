"""One Redis client per URL and process (a connection pool inside), for the small coordination
keys of this deployment: reconcile's locks and pacer, the hooks' kick mark."""

from __future__ import annotations

import threading

import redis
from django.conf import settings

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}


def redis_client() -> redis.Redis:
    with _lock:
        client = _clients.get(settings.REDIS_URL)
        if client is None:
            client = _clients[settings.REDIS_URL] = redis.Redis.from_url(settings.REDIS_URL)
        return client


def redis_key(*parts: str) -> str:
    """A key in this deployment's namespace (ROSTER_NAMESPACE)."""
    return ":".join((settings.ROSTER_NAMESPACE, *parts))
