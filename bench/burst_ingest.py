"""Benchmark: a webinar's join burst through the ingest service, by batch size.

``python -m bench.burst_ingest [--attendees 10000] [--replicas 40] [--batches 10 100] [--threads 2]``

10,000 AttendeeJoined over a primary meeting and its 40 replicas (Chime caps a meeting at 250
attendees; each replica is a meeting with its own meetingId), in the order SQS would deliver them
(delivery delays: out of order within and across meetings; roster.dev.chime.webinar_family).
The meetings are started first (not timed); then threads ingest the joins in batches of the size
the drain gathers per transaction (``SQS_BATCH_MESSAGES``). Every batch of a meeting takes that
meeting's row lock, so what a batch spans and its size are the levers. This is the live
benchmark's "direct" burst phase without Daphne and the browser, at several batch sizes. Prints
the time to ingest every join; then each meeting must have joined its viewers (joined_count and
peak_joined) and its roster equal the whole fold of its events.
"""

from __future__ import annotations

import argparse
import time

from bench import common


def burst_run(*, attendees: int, replicas: int, batch: int, threads: int, seed: int) -> dict[str, object]:
    from roster.models import Meeting

    family, joins = common.webinar_burst(seed=seed, viewers=attendees, replicas=replicas)
    with common.CpuMeter() as cpu:
        start = time.perf_counter()
        common.bodies_ingest(joins, batch=batch, threads=threads)
        elapsed = time.perf_counter() - start
    viewers = {meeting[0]["meetingId"]: (len(meeting) - 1,) * 2 for meeting in family}
    rows = Meeting.objects.filter(meeting_id__in=viewers).values_list(
        "meeting_id", "joined_count", "peak_joined"
    )
    stored = {meeting_id: (joined, peak) for meeting_id, joined, peak in rows}
    fold = common.roster_check(family)
    if stored != viewers or not fold.startswith("ok"):
        raise RuntimeError(f"burst check failed: (joined, peak) per meeting {stored} != {viewers}; {fold}")
    return {
        "seconds": elapsed,
        "rate": attendees / elapsed,
        "meetings": len(family),
        "bench_cpu_s": cpu.process_s,
        "postgres_cpu_s": cpu.postgres_s,
        "others_cpu_s": cpu.others_s(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attendees", type=int, default=10000, help="joins in all")
    parser.add_argument("--replicas", type=int, default=40, help="replica meetings of the primary")
    parser.add_argument("--batches", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    common.environment_prepare()
    common.django_setup(recreate=True)
    common.log(
        f"join burst: {args.attendees:,} AttendeeJoined over {args.replicas + 1} meetings (a primary and "
        f"{args.replicas} replicas), out of order, {args.threads} threads, "
        f"PostgreSQL {common.BENCH_DATABASE_URL}"
    )
    for seed, batch in enumerate(args.batches):
        result = burst_run(
            attendees=args.attendees, replicas=args.replicas, batch=batch, threads=args.threads, seed=seed
        )
        common.broadcast_flush()
        common.log(
            f"  batch={batch:<4} {result['seconds']:6.2f}s  {result['rate']:8,.0f} joins/s  "
            f"each of the {result['meetings']} meetings: joined_count = peak_joined = its viewers, roster "
            f"= the whole fold (checked); cpu: bench process {result['bench_cpu_s']:.1f}s, postgres "
            f"{result['postgres_cpu_s']:.1f}s, other processes {result['others_cpu_s']:.1f}s"
        )


if __name__ == "__main__":
    main()
