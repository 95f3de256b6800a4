"""Where an ingest's time goes, step by step: ``bench.ingest_bench --phases NAME``.

Each step of the service (roster.ingest) and its store is wrapped with a timer for the run, and
the time is printed in microseconds per event, with its calls. Steps nest: ``batch_start`` holds
its ``_fetch``, ``meetings_fold`` its history reads; the run's own time is the whole. A timer
costs about a microsecond a call, so the total runs a little slower than unwrapped. py-spy
samples overstate frames that spend their time in C (it gave ``json_read`` 8 % of the ingest
where these timers give 2 %), so this is the figure docs/benchmarks.md gives per step.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from typing import Any

# (module path, owner name or "", function name): what is timed, where it exists.
STEPS = (
    ("roster.ingest.service", "", "_event_parse"),  # the parser, as ingest calls it
    ("roster.ingest.service", "", "meetings_fold"),
    ("roster.ingest.service", "", "_after_commit"),
    ("roster.ingest.store", "PostgresStore", "batch_start"),
    ("roster.ingest.store", "PostgresStore", "rows_write"),
    ("roster.ingest.store", "PostgresStore", "_fetch"),
    ("roster.ingest.store", "PostgresStore", "_execute"),
    ("roster.ingest.store", "Store", "attendee_histories"),
    ("roster.ingest.store", "Store", "meeting_histories"),
    ("roster.ingest.store", "Store", "joined_intervals"),
    ("psycopg", "Connection", "commit"),
)


@contextlib.contextmanager
def phases_timed() -> Iterator[dict[str, list[float]]]:
    """Time every step of STEPS while inside; yields {step: [calls, seconds]}."""
    import importlib

    timings: dict[str, list[float]] = {}
    restore: list[tuple[Any, str, Any]] = []
    for module_path, owner_name, name in STEPS:
        module = importlib.import_module(module_path)
        owner = getattr(module, owner_name) if owner_name else module
        original = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if original is None:
            continue
        label = f"{owner_name}.{name}" if owner_name else name
        function = original.__func__ if isinstance(original, staticmethod) else original
        timed = _timed(function, timings.setdefault(label, [0, 0.0]))
        setattr(owner, name, staticmethod(timed) if isinstance(original, staticmethod) else timed)
        restore.append((owner, name, original))
    try:
        yield timings
    finally:
        for owner, name, original in restore:
            setattr(owner, name, original)


def _timed(function: Any, slot: list[float]) -> Any:
    clock = time.perf_counter

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return function(*args, **kwargs)
        finally:
            slot[0] += 1
            slot[1] += clock() - started

    return wrapper


def phases_format(timings: dict[str, list[float]], *, events: int, seconds: float) -> str:
    lines = [
        f"      where the time goes (us per event, {events} events; steps nest):",
        f"      {1e6 * seconds / events:8.1f}  the whole run",
    ]
    for label, (calls, seconds) in sorted(timings.items(), key=lambda item: -item[1][1]):
        if calls:
            lines.append(f"      {1e6 * seconds / events:8.1f}  {label} ({int(calls)} calls)")
    return "\n".join(lines)
