"""Benchmark: a join burst into ONE meeting through the ingest service, by batch size.

``python -m bench.burst_ingest [--attendees 10000] [--batches 10 100] [--threads 2]``

Every batch of a meeting takes that meeting's row lock, so batches into one meeting are serial
whatever the number of threads: the burst is bounded by the time of one transaction, and the
batch size (what the drain gathers per transaction, ``SQS_BATCH_MESSAGES``) is the lever. This is
the live benchmark's "direct" burst phase without Daphne and the browser, at several batch sizes.
Prints the time until ``Meeting.joined_count`` reached the number of attendees.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

from bench import common
from bench.live_bench import attendee_event  # the live benchmark's burst events, the same shape


def burst_run(*, attendees: int, batch: int, threads: int) -> dict[str, float]:
    from django.db import connection

    from roster.ingest import IncomingMessage, messages_ingest
    from roster.models import Meeting

    meeting_id = str(uuid.uuid4())
    base_ms = int(time.time() * 1000)
    bodies = [
        attendee_event(meeting_id, "burst", f"burst-{i:06d}", "chime:AttendeeJoined", base_ms + i)
        for i in range(attendees)
    ]
    chunks = [bodies[i : i + batch] for i in range(0, attendees, batch)]
    position = [0]
    lock = threading.Lock()

    def worker() -> None:
        try:
            while True:
                with lock:
                    if position[0] >= len(chunks):
                        return
                    chunk = chunks[position[0]]
                    position[0] += 1
                messages_ingest(messages=[IncomingMessage(body=body) for body in chunk])
        finally:
            connection.close()

    with common.CpuMeter() as cpu:
        start = time.perf_counter()
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        elapsed = time.perf_counter() - start
    meeting = Meeting.objects.get(meeting_id=meeting_id)
    if meeting.joined_count != attendees or meeting.peak_joined != attendees:
        raise RuntimeError(f"burst check failed: joined {meeting.joined_count}, peak {meeting.peak_joined}")
    return {
        "seconds": elapsed,
        "rate": attendees / elapsed,
        "bench_cpu_s": cpu.process_s,
        "postgres_cpu_s": cpu.postgres_s,
        "others_cpu_s": cpu.others_s(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attendees", type=int, default=10000)
    parser.add_argument("--batches", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    common.environment_prepare()
    common.django_setup(recreate=True)
    common.log(
        f"join burst into one meeting: {args.attendees:,} AttendeeJoined, {args.threads} threads, "
        f"PostgreSQL {common.BENCH_DATABASE_URL}"
    )
    for batch in args.batches:
        result = burst_run(attendees=args.attendees, batch=batch, threads=args.threads)
        common.broadcast_flush()
        common.log(
            f"  batch={batch:<4} {result['seconds']:6.2f}s  {result['rate']:8,.0f} joins/s  "
            f"joined_count = peak_joined = {args.attendees:,} (checked); cpu: bench process "
            f"{result['bench_cpu_s']:.1f}s, postgres {result['postgres_cpu_s']:.1f}s, "
            f"other processes {result['others_cpu_s']:.1f}s"
        )


if __name__ == "__main__":
    main()
