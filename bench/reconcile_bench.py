"""Benchmark: a reconcile cycle (roster.sources.reconcile) over 1,000 active meetings.

``python -m bench.reconcile_bench [--meetings 1000] [--attendees 10] [--paced 25]``

Builds ``--meetings`` active meetings of ``--attendees`` attendees each (ingested as EventBridge
envelopes) in the PostgreSQL database ``bench_reconcile`` (or ``BENCH_RECONCILE_DATABASE_URL``;
dropped and re-created), mirrored in the local Chime SDK Meetings endpoint (roster.dev.chime_api,
in this process, over HTTP on loopback), then runs cycles through the real service
(``meetings_reconcile``: boto3, the Redis pacer, locks, ``repairs_ingest``):

1. with drift (2 % of the meetings ended in Chime, their MeetingEnded lost; 2 % with an attendee
   Chime lists whom the roster lacks), the budget set far above our own speed: calls and seconds
   are our own cost;
2. the steady state (nothing to repair), the same budget;
3. ``--paced`` meetings at the default budget (RECONCILE_CALLS_PER_SECOND 5): the measured
   duration against calls / 5, which is what a cycle of every meeting then lasts.

Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

from bench import common

DATABASE_URL = os.environ.get(
    "BENCH_RECONCILE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_reconcile"
)
DEFAULT_BUDGET = 5.0
UNBOUNDED = 100_000.0  # calls a second: far above what one process makes


def meetings_build(api, *, meetings: int, attendees: int) -> list[str]:
    """Active meetings in the roster and in Chime, in sync; their ids, stalest first."""
    from roster.dev.chime import REGION, as_envelope, detail
    from roster.ingest import IncomingMessage, messages_ingest

    now = int(time.time() * 1000)
    ids, bodies = [], []
    for index in range(meetings):
        meeting_id = str(uuid.uuid4())
        at = now - 3_600_000 + index * 1_000
        api.meeting_put(region=REGION, meeting_id=meeting_id, external_meeting_id=f"bench-{index:04d}")
        bodies.append(
            as_envelope(detail("MeetingStarted", meeting_id, ts=at, externalMeetingId=f"bench-{index:04d}"))
        )
        for n in range(attendees):
            attendee_id = str(uuid.uuid4())
            user = f"user-{index:04d}-{n:02d}@example.com"
            api.attendee_put(meeting_id, external_user_id=user, attendee_id=attendee_id)
            bodies.append(
                as_envelope(detail("AttendeeJoined", meeting_id, attendee_id, ts=at + n, externalUserId=user))
            )
        ids.append(meeting_id)
    for start in range(0, len(bodies), 500):
        messages_ingest(messages=[IncomingMessage(body=body) for body in bodies[start : start + 500]])
    common.broadcast_flush()
    return ids


def cycle(api, *, budget: float, meeting_ids: list[str] | None = None) -> dict:
    from django.conf import settings

    from roster.sources.reconcile import meetings_reconcile

    settings.RECONCILE_CALLS_PER_SECOND = budget
    calls_before = sum(api.calls.values())
    cpu_before = time.process_time()
    started = time.perf_counter()
    summary = meetings_reconcile(meeting_ids=meeting_ids)
    common.broadcast_flush()
    seconds = time.perf_counter() - started
    calls = sum(api.calls.values()) - calls_before
    return {
        "budget": budget,
        "calls": calls,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(time.process_time() - cpu_before, 3),
        "calls_per_second": round(calls / seconds, 1) if seconds else None,
        "summary": summary.as_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=1000)
    parser.add_argument("--attendees", type=int, default=10)
    parser.add_argument("--paced", type=int, default=25, help="meetings checked at the default budget")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)

    common.environment_prepare(database_url=DATABASE_URL)
    background = common.background_load()
    common.django_setup(recreate=True, database_url=DATABASE_URL)
    from roster.dev.chime_api import ChimeApi, ChimeApiServer

    api = ChimeApi()
    with ChimeApiServer(api) as server:
        os.environ["AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS"] = server.url
        built = time.perf_counter()
        ids = meetings_build(api, meetings=args.meetings, attendees=args.attendees)
        common.log(
            f"{args.meetings} meetings of {args.attendees} attendees in {time.perf_counter() - built:.1f}s"
        )
        common.database_vacuum()
        drift = max(1, args.meetings // 50)
        for meeting_id in ids[:drift]:
            api.meeting_end(meeting_id)  # their MeetingEnded lost
        for meeting_id in ids[drift : 2 * drift]:
            api.attendee_put(meeting_id, external_user_id="late@example.com")  # an AttendeeAdded lost
        results = {
            "conditions": {**common.conditions(), "background_load": round(background, 3)},
            "meetings": args.meetings,
            "attendees": args.attendees,
            "drift": cycle(api, budget=UNBOUNDED),
            "steady": cycle(api, budget=UNBOUNDED),
        }
        paced = ids[2 * drift : 2 * drift + args.paced]
        results["paced"] = cycle(api, budget=DEFAULT_BUDGET, meeting_ids=paced)
    steady, paced_run = results["steady"], results["paced"]
    per_meeting = steady["calls"] / max(1, steady["summary"]["checked"])
    results["default_budget_cycle_seconds"] = round(args.meetings * per_meeting / DEFAULT_BUDGET, 1)
    c = results["conditions"]
    common.log(
        f"conditions: {c['cores']} cores, PostgreSQL {c['postgresql']}, Python {c['python']}, "
        f"Django {c.get('django')}, background load {background:.0%}; local endpoint in process, loopback"
    )
    for name in ("drift", "steady"):
        run = results[name]
        common.log(
            f"{name:>6}: {run['summary']['checked']} checked, {run['calls']} calls in {run['seconds']:.2f}s "
            f"({run['calls_per_second']} calls/s, {run['cpu_seconds']:.2f}s CPU of this process); "
            f"ended={run['summary']['ended']} added={run['summary']['added']}"
        )
    common.log(
        f" paced: {paced_run['calls']} calls at {DEFAULT_BUDGET:g}/s in {paced_run['seconds']:.2f}s "
        f"(calls / budget = {paced_run['calls'] / DEFAULT_BUDGET:.2f}s)"
    )
    common.log(
        f"at the default budget ({DEFAULT_BUDGET:g} calls/s) a cycle of {args.meetings} meetings lasts "
        f"{results['default_budget_cycle_seconds']:.0f}s ({per_meeting:.1f} calls a meeting)"
    )
    common.results_write(args.json_out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
