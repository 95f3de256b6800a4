"""Benchmark: the CPU one ingest batch costs, split by who spends it, at several batch sizes.

``python -m bench.batch_cost [--sizes 1 10 30] [--meetings 100] [--warm-events 0]``

Events like the live latency benchmark's (AttendeeJoined, then VideoStarted a second later),
spread over ``--meetings`` active meetings, so a batch of k events touches about k meetings: the
shape the drain sees when it keeps up. Per batch it prints the wall time, the CPU of the
thread that ingests (parse, SQL, fold), the CPU of the rest of the process (the broadcaster's
publishing thread), and the CPU of the PostgreSQL backend. One process, no SQS, no sockets.
``--warm-events N`` ingests N such events first (not measured), so the meetings are as large as
after the live benchmark's earlier phases (20,000: about 100 attendees and a full peak ledger each).
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Iterator

from bench import common
from bench.common import pid_cpu_seconds
from roster.dev.chime import live_traffic


def batch_cost(
    *, size: int, batches: int, events: Iterator[tuple[str, str]], backend_pid: int
) -> dict[str, float]:
    from roster.ingest import IncomingMessage, messages_ingest
    from roster.live.broadcast import publisher

    wall0, process0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
    backend0 = pid_cpu_seconds(backend_pid)
    for _ in range(batches):
        messages_ingest(messages=[IncomingMessage(body=next(events)[1]) for _ in range(size)])
    publisher.flush(timeout=60)  # the publishing of these batches is in the figure
    thread = time.thread_time() - thread0
    return {
        "wall_ms": 1000 * (time.perf_counter() - wall0) / batches,
        "ingest_thread_ms": 1000 * thread / batches,
        "rest_of_process_ms": 1000 * (time.process_time() - process0 - thread) / batches,
        "postgres_ms": 1000 * (pid_cpu_seconds(backend_pid) - backend0) / batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument("--meetings", type=int, default=100)
    parser.add_argument("--warm-events", type=int, default=0, help="events ingested first, not measured")
    args = parser.parse_args()
    common.environment_prepare()
    common.django_setup(recreate=True)
    from django.db import connection

    from roster.ingest import IncomingMessage, messages_ingest

    tag = uuid.uuid4().hex[:6]
    meetings = common.meetings_start(count=args.meetings, tag=f"cost-{tag}")
    events = live_traffic(meetings=meetings, prefix=tag, seed=1)
    for _ in range(0, args.warm_events, 10):
        messages_ingest(messages=[IncomingMessage(body=next(events)[1]) for _ in range(10)])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend_pid = cursor.fetchone()[0]
    common.log(
        f"ingest batch cost: events over {args.meetings} active meetings, PostgreSQL "
        f"{common.BENCH_DATABASE_URL}, Redis channel layer, {args.warm_events:,} events ingested first; "
        "CPU per batch"
    )
    for size in args.sizes:
        cost = batch_cost(size=size, batches=max(200, 2000 // size), events=events, backend_pid=backend_pid)
        common.log(
            f"  batch={size:<3} wall {cost['wall_ms']:6.2f} ms  "
            f"ingest thread {cost['ingest_thread_ms']:5.2f} ms  "
            f"broadcaster (rest of the process) {cost['rest_of_process_ms']:5.2f} ms  "
            f"postgres {cost['postgres_ms']:5.2f} ms  ({cost['ingest_thread_ms'] / size:.2f} ms of ingest "
            f"thread per event)"
        )


if __name__ == "__main__":
    main()
