"""Benchmark: ``ingest_file`` (batches of 500) against PostgreSQL's own ceiling for the same rows
(issue #17, goal 1: the project at >= 40 % of it).

``.venv/bin/python -m bench.ceiling_bench [--meetings N] [--rounds N] [--json-out PATH]``

The same events (bench.common.meetings_generate: 100 meetings x 200 events, in one EventBridge
queue's order) go in by two ways, in turns, each on an emptied roster (``bench_ceiling``
database, or ``BENCH_CEILING_DATABASE_URL``; dropped and recreated):

- **project**: ``manage.py ingest_file`` (called in this process, its default 6 worker processes
  split by meeting, each window in fold order: roster.ingest.stream) on a JSON-lines file of the
  envelopes, written beforehand: parse, dedupe, log, fold, rows, seq, broadcast, metrics;
- **ceiling**: PostgreSQL alone writing what any ingest must at least write for them, in the
  same batches of 500, a transaction each, into the same tables with the same indexes: every
  event's log row (``ON CONFLICT (key) DO NOTHING``) and a state upsert per event (the attendee
  row of an attendee event, the meeting row of a meeting event; one statement cannot update a
  row twice, so a batch upserts each row's last state). The rows are built beforehand (the
  project's own parser gives keys and columns), each column as one array literal, unpacked by
  ``unnest`` on the server: no parsing, folding or serialising is timed on our side (binary
  arrays cost this process more CPU per event than PostgreSQL spent on the rows). The meetings' rows exist
  before it starts (the attendees' foreign key), untimed.

Reported: events/s of each, their ratio, and the CPU of this process (with its workers) and of
PostgreSQL per event.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.common import log

DATABASE_URL = os.environ.get(
    "BENCH_CEILING_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_ceiling"
)
BATCH = 500
GOAL = 0.40


def events_parsed(details: list[dict[str, Any]]) -> tuple[list[str], list[Any]]:
    """The envelopes (one JSON line each) and the project's parse of each (outside any timing)."""
    from roster.dev.chime import as_envelope
    from roster.domain.events import ChimeEvent, event_parse

    bodies = [as_envelope(doc) for doc in details]
    events = [event_parse(body, allowed_accounts=frozenset()) for body in bodies]
    if not all(isinstance(event, ChimeEvent) for event in events):
        raise RuntimeError("the generator made a body the parser refuses")
    return bodies, events


def model_row(model: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Every column of ``model`` but its serial key: ``values``, else the field's default."""
    row = {}
    for field in model._meta.concrete_fields:
        if field.primary_key and field.attname not in values:
            continue
        row[field.column] = values[field.attname] if field.attname in values else field.get_default()
    return row


def ceiling_batches(events: list[Any]) -> list[list[tuple[str, list[str]]]]:
    """Per batch of 500, its statements: (SQL, array parameters) for the log rows and the upserts."""
    from django.db import connection
    from django.utils import timezone

    from roster.models import Attendee, Event, Meeting

    now = timezone.now()
    batches = []
    seq: dict[str, int] = {}
    for start in range(0, len(events), BATCH):
        chunk = events[start : start + BATCH]
        logged = [
            model_row(
                Event,
                {
                    "key": e.key,
                    "kind": e.kind,
                    "detail_type": e.detail_type,
                    "event_type": e.event_type,
                    "meeting_id": e.meeting_id,
                    "attendee_id": e.attendee_id,
                    "parent_id": e.parent_id,
                    "timestamp": e.timestamp,
                    "detail": json.dumps(e.detail),
                    "envelope_id": e.envelope_id,
                    "account": e.account,
                    "region": e.region,
                    "queue": "bench-file",
                    "sqs_message_id": f"line:{start + n}",
                    "received_at": now,
                    "duplicate_count": 0,
                    "source": e.source,
                },
            )
            for n, e in enumerate(chunk)
        ]
        meetings: dict[str, dict[str, Any]] = {}
        attendees: dict[tuple[str, str], dict[str, Any]] = {}
        for e in chunk:
            seq[e.meeting_id] = seq.get(e.meeting_id, 0) + 1
            if e.parent_id:
                attendees[(e.meeting_id, e.parent_id)] = model_row(
                    Attendee,
                    {
                        "meeting_id": e.meeting_id,
                        "attendee_id": e.parent_id,
                        "presence": e.event_type.rpartition(":")[2][len("Attendee") :].lower()[:16],
                        "seq": seq[e.meeting_id],
                        "folded_ts": e.timestamp,
                        "intervals": json.dumps([[e.timestamp, None]]),
                        "capabilities": None,
                    },
                )
            else:
                meetings[e.meeting_id] = model_row(
                    Meeting,
                    {
                        "meeting_id": e.meeting_id,
                        "status": "active",
                        "seq": seq[e.meeting_id],
                        "pipelines": "{}",
                        "peak_marks": None,
                        "reconcile_missed": "[]",
                        "created_at": now,
                        "updated_at": now,
                    },
                )
        statements = [_upsert(connection, Event, logged, conflict=("key",), update=())]
        if meetings:
            update = ("status", "seq", "updated_at")
            statements.append(_upsert(connection, Meeting, list(meetings.values()), ("meeting_id",), update))
        if attendees:
            update = ("presence", "seq", "folded_ts", "intervals")
            statements.append(
                _upsert(connection, Attendee, list(attendees.values()), ("meeting_id", "attendee_id"), update)
            )
        batches.append(statements)
    return batches


def _upsert(
    connection: Any,
    model: Any,
    rows: list[dict[str, Any]],
    conflict: tuple[str, ...],
    update: tuple[str, ...],
) -> tuple[str, list[Any]]:
    fields = {field.column: field for field in model._meta.concrete_fields}
    columns = list(rows[0])
    types = [fields[column].db_type(connection) for column in columns]
    arrays = ", ".join(f"%s::{kind}[]" for kind in types)
    names = ", ".join(f'"{column}"' for column in columns)
    action = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in update) if update else ""
    sql = (
        f"INSERT INTO {model._meta.db_table} ({names}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({', '.join(conflict)}) " + (f"DO UPDATE SET {action}" if action else "DO NOTHING")
    )
    return sql, [_array_literal([row[column] for row in rows]) for column in columns]


def _array_literal(values: list[Any]) -> str:
    """PostgreSQL's text form of an array: what ``unnest(%s::type[])`` reads."""
    items = []
    for value in values:
        if value is None:
            items.append("NULL")
            continue
        if isinstance(value, bool):
            text = "t" if value else "f"
        elif hasattr(value, "isoformat"):
            text = value.isoformat()
        else:
            text = str(value)
        items.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(items) + "}"


def meetings_create(events: list[Any]) -> None:
    from roster.domain.plan import MeetingFacts
    from roster.ingest.service import meeting_expected_create

    for meeting_id in sorted({e.meeting_id for e in events}):
        meeting_expected_create(meeting_id=meeting_id, facts=MeetingFacts(), control_region="")


def ceiling_run(db: Any, batches: list[list[tuple[str, list[str]]]]) -> float:
    """The statements on a connection of their own (psycopg, server-side parameters), opened
    before the CPU meter starts so that its backend is counted."""
    started = time.perf_counter()
    for statements in batches:
        with db.transaction(), db.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
    return time.perf_counter() - started


def project_run(path: Path) -> float:
    from django.core.management import call_command

    started = time.perf_counter()
    call_command("ingest_file", str(path), stdout=open(os.devnull, "w"))  # noqa: SIM115 - closed at exit
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="ingest_file against PostgreSQL's own ceiling")
    parser.add_argument("--meetings", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)

    os.environ["BENCH_DATABASE_URL"] = DATABASE_URL
    common.BENCH_DATABASE_URL = DATABASE_URL  # what CpuMeter reads
    common.environment_prepare(database_url=DATABASE_URL)
    background = common.background_load(2.0)
    common.django_setup(recreate=True, database_url=DATABASE_URL)
    import psycopg

    from roster.models import Event

    details = common.meetings_generate(meetings=args.meetings, attendees=20, events_per_meeting=200)
    bodies, events = events_parsed(details)
    batches = ceiling_batches(events)
    conditions = common.conditions()
    log(
        f"ceiling bench: {len(events):,} events ({args.meetings} meetings), batches of {BATCH}, "
        f"{args.rounds} rounds in turns; {conditions}; background load before start {background:.0%}"
    )
    results: dict[str, list[dict[str, float]]] = {"project": [], "ceiling": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_text("".join(body + "\n" for body in bodies))
        for round_ in range(args.rounds):
            for way in ("project", "ceiling"):
                common.roster_tables_truncate()
                if way == "ceiling":
                    meetings_create(events)
                common.database_vacuum()
                with psycopg.connect(DATABASE_URL, autocommit=True) as db, common.CpuMeter() as cpu:
                    seconds = project_run(path) if way == "project" else ceiling_run(db, batches)
                stored = Event.objects.count()
                if stored != len(events):
                    raise RuntimeError(f"{way}: {stored} events stored, {len(events)} sent")
                figures = {
                    "seconds": seconds,
                    "events_per_s": len(events) / seconds,
                    "process_us": cpu.process_s / len(events) * 1e6,
                    "postgres_us": cpu.postgres_s / len(events) * 1e6,
                }
                results[way].append(figures)
                log(
                    f"  round {round_ + 1} {way:<8} {figures['events_per_s']:9,.0f} events/s  "
                    f"CPU per event: this process {figures['process_us']:4.0f} us, "
                    f"PostgreSQL {figures['postgres_us']:4.0f} us"
                )
    ratios = [
        p["events_per_s"] / c["events_per_s"]
        for p, c in zip(results["project"], results["ceiling"], strict=True)
    ]
    ratio = statistics.median(ratios)
    verdict = "meets" if ratio >= GOAL else "BELOW"
    log(
        f"ingest_file at {ratio:.0%} of PostgreSQL's ceiling "
        f"(rounds: {', '.join(f'{r:.0%}' for r in ratios)}); {verdict} the {GOAL:.0%} goal"
    )
    output = {"conditions": conditions, "background": background, "results": results, "ratios": ratios}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(output, indent=2, default=str))
    return output


if __name__ == "__main__":
    main()
