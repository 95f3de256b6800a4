"""Open websockets of this process, by endpoint, for /metrics (roster.ops.metrics).

A process-local count is right: sockets live in the Daphne process that also serves /metrics.
The scrape reads it from another thread, hence the lock.
"""

from __future__ import annotations

import threading
from collections import Counter

_open: Counter[str] = Counter()
_lock = threading.Lock()


def socket_opened(*, endpoint: str) -> None:
    with _lock:
        _open[endpoint] += 1


def socket_closed(*, endpoint: str) -> None:
    with _lock:
        _open[endpoint] = max(0, _open[endpoint] - 1)


def sockets_connected() -> dict[str, int]:
    with _lock:
        return dict(_open)
