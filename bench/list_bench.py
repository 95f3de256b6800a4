"""Benchmark: the meeting list at scale (issue #13): first page, cursor pages, filters and searches.

``python -m bench.list_bench [--meetings 10000] [--attendees 500000] [--runs 30] [--reuse]``

Builds ``--meetings`` meetings and ``--attendees`` attendee rows (COPY, about 50 a meeting) in the
PostgreSQL database ``bench_list`` (or ``BENCH_LIST_DATABASE_URL``; dropped and re-created, then
``manage.py migrate``, so the indexes are the migrations' own), runs ANALYZE, then times each case
through the real selector (``roster.read.selectors.meetings_page``) and through the REST view
(``GET /api/meetings/`` with Django's test client, a staff session): ``--runs`` runs each after
``--warmup`` unmeasured ones; p50, p95 and max in ms. The goal: the first page and every search
within 100 ms. Last, the EXPLAIN (ANALYZE, BUFFERS) of the first page and of an attendee search.

The data: ten tenants, externalMeetingId ``<tenant>-<kind>-<nnnnn>`` (a host's glob ``acme-*``
matches a tenth), started over 60 days (about 2 % active, 1 % never started), attendees'
externalUserId ``user<nnnnnn>@<tenant>.example`` drawn from 200,000 people (a person is in 2 or 3
meetings). Nothing leaves 127.0.0.1; no Redis, no SQS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench import common

DATABASE_URL = os.environ.get("BENCH_LIST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_list")
SEED = 20261201
GOAL_MS = 100.0
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "cyberdyne")
KINDS = ("standup", "review", "allhands", "oneonone", "sales")
PEOPLE = 200_000
DAY_MS = 86_400_000
NOW_MS = common.START_MS + 60 * DAY_MS  # the data's "now": the last meetings are still going on


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def data_build(*, meetings: int, attendees: int, seed: int = SEED) -> dict[str, Any]:
    """COPY the meetings and their attendees; returns facts the cases search for."""
    from django.db import connection

    rng = random.Random(seed)
    span = NOW_MS - common.START_MS
    meeting_rows = []
    for index in range(meetings):
        meeting_id = _uuid(rng)
        tenant = TENANTS[rng.randrange(len(TENANTS))]
        external = f"{tenant}-{KINDS[rng.randrange(len(KINDS))]}-{index:05d}"
        roll = rng.random()
        if roll < 0.01:  # created by an attendee's event, never started
            status, started, ended = "unknown", None, None
        elif roll < 0.03:
            status, started, ended = "active", NOW_MS - rng.randrange(2 * 3_600_000), None
        else:
            started = common.START_MS + rng.randrange(span - 3 * 3_600_000)
            status, ended = "ended", started + rng.randrange(5 * 60_000, 2 * 3_600_000)
        meeting_rows.append((meeting_id, external, tenant, status, started, ended))
    # Sizes around 50 that sum to exactly ``attendees``.
    sizes = [max(1, int(rng.gauss(attendees / meetings, 15))) for _ in range(meetings)]
    while (total := sum(sizes)) != attendees:
        i = rng.randrange(meetings)
        sizes[i] = max(1, sizes[i] + (1 if total < attendees else -1))

    capabilities = json.dumps({"audio": "SendReceive", "video": "SendReceive", "content": "SendReceive"})
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own, for COPY
        with raw.copy(
            "COPY roster_meeting (meeting_id, external_meeting_id, media_region, status, started_at, "
            "ended_at, peak_joined, joined_count, dropped_count, video_count, sharing_count, pipelines, "
            "seq, created_at, updated_at) FROM STDIN"
        ) as copy:
            for (meeting_id, external, _, status, started, ended), size in zip(
                meeting_rows, sizes, strict=True
            ):
                joined = size if status == "active" else 0
                copy.write_row(
                    (meeting_id, external, "us-east-1", status, started, ended, size, joined, 0, 0, 0,
                     "{}", size * 3, "2026-11-24T09:00:00Z", "2026-11-24T09:00:00Z")
                )  # fmt: skip
        with raw.copy(
            "COPY roster_attendee (meeting_id, attendee_id, external_user_id, presence, network_type, "
            "video, screen_share, content_share, content_video, first_joined_at, joined_since, joined_ms, "
            "drop_count, capabilities, seq, intervals, folded_ts, folded_rank, external_user_id_own) "
            "FROM STDIN"
        ) as copy:
            for (meeting_id, _, tenant, status, started, ended), size in zip(
                meeting_rows, sizes, strict=True
            ):
                begin = started if started is not None else NOW_MS
                for n in range(size):
                    person = rng.randrange(PEOPLE)
                    joined_at = begin + rng.randrange(600_000)
                    left_at = None if status == "active" else (ended or joined_at) + 1
                    presence = "joined" if status == "active" else ("left" if started else "added")
                    copy.write_row(
                        (meeting_id, _uuid(rng), f"user{person:06d}@{tenant}.example", presence, "Wifi",
                         n % 3 == 0, False, False, False, joined_at, joined_at if left_at is None else None,
                         0 if left_at is None else left_at - joined_at, 0, capabilities, n + 1,
                         json.dumps([[joined_at, left_at, None]]), joined_at, 3, True)
                    )  # fmt: skip
        cursor.execute("VACUUM ANALYZE roster_meeting")
        cursor.execute("VACUUM ANALYZE roster_attendee")
        cursor.execute("VACUUM ANALYZE roster_meetinguser")  # filled by the triggers of migration 0010
    sample = meeting_rows[meetings // 3]
    person = next(
        a for (a,) in _query("SELECT external_user_id FROM roster_attendee ORDER BY id LIMIT 1 OFFSET 12345")
    )
    return {"meeting_id": sample[0], "external": sample[1], "person": person.split("@")[0]}


def _query(sql: str, params: tuple = ()) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[max(0, round(0.95 * len(ordered)) - 1)],
        "max": ordered[-1],
    }


def _time(call: Callable[[], Any], *, runs: int, warmup: int) -> tuple[dict[str, float], Any]:
    for _ in range(warmup):
        result = call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        samples.append(1000 * (time.perf_counter() - start))
    return _ms(samples), result


def cases(facts: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], bool]]:
    """(name, scope, query, held to the goal): the query as REST takes it."""
    week = common.START_MS + 30 * DAY_MS
    sales = facts["external"].split("-", 1)[1][:-2]  # "sales-033": about 20 meetings
    return [
        ("first page, staff", "staff", {}, True),
        ("first page, host acme-* (1/10)", "host", {}, True),
        ("page 2 (cursor)", "staff", {"page": 2}, False),
        ("page 100 (cursor, rows 4951-5000)", "staff", {"page": 100}, False),
        ("status=active", "staff", {"status": "active"}, False),
        ("status=ended", "staff", {"status": "ended"}, False),
        ("started in one week", "staff", {"started_after": week, "started_before": week + 7 * DAY_MS}, False),
        (f"q={sales!r} (externalMeetingId part)", "staff", {"q": sales}, True),
        ("q=<a meetingId>", "staff", {"q": facts["meeting_id"]}, True),
        (
            f"q={facts['person'][:-1].title()!r} (externalUserId part)",
            "staff",
            {"q": facts["person"][:-1].title()},
            True,
        ),
        ("q='zzqx' (matches nothing)", "staff", {"q": "zzqx"}, True),
        ("q='a' (1 letter, matches most)", "staff", {"q": "a"}, True),
        ("q='ac' (2 letters, ~1/10)", "staff", {"q": "ac"}, True),
        ("q='q' (1 letter, matches nothing)", "staff", {"q": "q"}, True),
        ("q='zq' (2 letters, matches nothing)", "staff", {"q": "zq"}, True),
        ("q='zq', host acme-*", "host", {"q": "zq"}, True),
    ]


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=10_000)
    parser.add_argument("--attendees", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="keep the database of an earlier run")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)

    common.environment_prepare(database_url=DATABASE_URL)
    background = common.background_load()
    started = time.monotonic()
    common.django_setup(recreate=not args.reuse, database_url=DATABASE_URL)
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from roster.read.access import Access
    from roster.read.selectors import meetings_page
    from roster.web.meeting_query import cursor_encode, meeting_query_parse

    if args.reuse and _query("SELECT count(*) FROM roster_meeting")[0][0]:
        row = _query(
            "SELECT meeting_id, external_meeting_id FROM roster_meeting ORDER BY meeting_id LIMIT 1"
        )[0]
        person = _query("SELECT external_user_id FROM roster_attendee ORDER BY id LIMIT 1 OFFSET 12345")[0][0]
        facts = {"meeting_id": row[0], "external": row[1], "person": person.split("@")[0]}
    else:
        build_start = time.monotonic()
        facts = data_build(meetings=args.meetings, attendees=args.attendees)
        common.log(f"built in {time.monotonic() - build_start:.1f} s (COPY, then VACUUM ANALYZE)")
    counts = _query("SELECT (SELECT count(*) FROM roster_meeting), (SELECT count(*) FROM roster_attendee)")[0]
    conditions = common.conditions()
    shown = "('jit', 'work_mem', 'shared_buffers', 'max_parallel_workers_per_gather')"
    settings_now = dict(_query(f"SELECT name, setting FROM pg_settings WHERE name IN {shown}"))
    common.log(
        f"meeting list at scale: {counts[0]:,} meetings, {counts[1]:,} attendees in {DATABASE_URL}; "
        f"{conditions['cores']} cores, PostgreSQL {conditions['postgresql']}, Python {conditions['python']}, "
        f"Django {conditions.get('django')}; {settings_now}; background load before start {background:.0%}; "
        f"{args.runs} runs after {args.warmup} warm-up, ms; goal <= {GOAL_MS:.0f} ms (first page, searches)"
    )

    scopes = {
        "staff": Access(everything=True, label="bench"),
        "host": Access(globs=("acme-*",), label="bench"),
    }
    setup_test_environment()  # the test client's host name
    staff = User.objects.filter(username="bench-staff").first() or User.objects.create_user(
        "bench-staff", is_staff=True
    )
    client = Client()
    client.force_login(staff)

    results, missed = [], []
    header = f"  {'case':<44} {'rows':>4}  {'selector p50/p95/max':>22}  {'REST p50/p95/max':>22}"
    common.log(header)
    for name, scope, query, held in cases(facts):
        params = {k: str(v) for k, v in query.items() if k != "page"}
        if query.get("started_after"):
            for key in ("started_after", "started_before"):
                params[key] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(query[key] / 1000))
        parsed = meeting_query_parse(params)
        after = None
        for _ in range(query.get("page", 1) - 1):  # walk to the page (not timed)
            after = meetings_page(
                access=scopes[scope], where=parsed.where, after=after, limit=parsed.limit
            ).after

        def selector_call(parsed=parsed, after=after, scope=scope):
            return meetings_page(access=scopes[scope], where=parsed.where, after=after, limit=parsed.limit)

        selector, page = _time(selector_call, runs=args.runs, warmup=args.warmup)
        rest = None
        if scope == "staff":
            rest_params = dict(params)
            if after is not None:
                rest_params["cursor"] = cursor_encode(sort=parsed.where.sort, after=after)

            def rest_call(rest_params=rest_params):
                response = client.get("/api/meetings/", rest_params)
                assert response.status_code == 200, response.content
                return response

            rest, _ = _time(rest_call, runs=args.runs, warmup=args.warmup)
        worst = max(selector["p50"], rest["p50"] if rest else 0.0)
        verdict = ("ok" if worst <= GOAL_MS else "MISSES the goal") if held else ""
        if held and worst > GOAL_MS:
            missed.append(name)
        rest_text = f"{rest['p50']:6.1f} /{rest['p95']:6.1f} /{rest['max']:6.1f}" if rest else f"{'-':>22}"
        common.log(
            f"  {name:<44} {len(page.meetings):>4}  "
            f"{selector['p50']:6.1f} /{selector['p95']:6.1f} /{selector['max']:6.1f}  {rest_text}  {verdict}"
        )
        results.append({"case": name, "rows": len(page.meetings), "selector_ms": selector, "rest_ms": rest})

    explained = {}
    for title, where in (
        ("first page, staff", meeting_query_parse({}).where),
        (
            "attendee search q=" + facts["person"][:-1].title(),
            meeting_query_parse({"q": facts["person"][:-1].title()}).where,
        ),
        ("short search q='zq' (matches nothing)", meeting_query_parse({"q": "zq"}).where),
    ):
        with CaptureQueriesContext(connection) as queries:
            meetings_page(access=scopes["staff"], where=where)
        explained[title] = explain(queries.captured_queries[-1]["sql"])
        common.log(f"\nEXPLAIN (ANALYZE, BUFFERS), {title}:\n{explained[title]}")
    common.log(
        f"\n{len(missed)} case(s) above the {GOAL_MS:.0f} ms goal: {', '.join(missed) or 'none'}; "
        f"total bench time {time.monotonic() - started:.0f} s"
    )
    common.results_write(
        args.json_out,
        {"conditions": conditions, "settings": settings_now, "background_load_before_start": background,
         "counts": counts, "results": results, "explain": explained, "missed": missed},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
