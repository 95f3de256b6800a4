"""The default ROSTER_NAMESPACE: one per (database, Redis) pair.

Redis pub/sub channels ignore the database number, so two deployments on one Redis server hear
each other unless every channel, group and key carries a name of their own. Deriving it from the
addresses and names of both stores means two deployments that differ in either never share one,
with nothing to configure; an explicit ROSTER_NAMESPACE (each test run, demo and benchmark sets
one) wins.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit


def namespace_default(*, database: dict[str, Any], redis_url: str) -> str:
    redis = urlsplit(redis_url)
    redis_db = redis.path.strip("/") or "0"
    stores = "|".join(
        (
            str(database.get("ENGINE", "")),
            f"{database.get('HOST') or ''}:{database.get('PORT') or ''}/{database.get('NAME', '')}",
            f"{redis.hostname or ''}:{redis.port or 6379}/{redis_db}",
        )
    )
    return "roster-" + hashlib.sha256(stores.encode()).hexdigest()[:12]
