"""Migrations stay valid on an existing database: a meeting stored under 0006 (with the old peak
ledger columns) goes on after the latest migration, swept once by its next batch; quarantine rows
stored under 0010 get their keys, one row per message; rows stored under 0011 get 0012's sources
and control regions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from roster.dev.chime import BASE_TS, as_json, detail, envelope
from roster.domain.repairs import Repairs, meeting_ended_repair
from roster.ingest import IncomingMessage, messages_ingest, repairs_ingest
from roster.models import Event, Meeting, MeetingUser, Quarantine
from tests.conftest import ingest

BEFORE = [("roster", "0006_meeting_peak_tail")]


@pytest.mark.django_db(transaction=True)
def test_a_meeting_stored_before_peak_marks_goes_on_after_migrating():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("roster")
    executor.migrate(BEFORE)
    old = MigrationExecutor(connection).loader.project_state(BEFORE).apps
    old.get_model("roster", "Meeting").objects.create(
        meeting_id="m-old", status="active", peak_joined=2, joined_count=2, seq=3,
        peak_ledger={"steps": [[BASE_TS, 3, 1, 2]], "before": [0, 0], "complete": True}, peak_tail={},
    )  # fmt: skip
    for attendee_id in ("a-1", "a-2"):
        old.get_model("roster", "Attendee").objects.create(
            meeting_id="m-old", attendee_id=attendee_id, presence="joined", first_joined_at=BASE_TS,
            joined_since=BASE_TS, intervals=[[BASE_TS, None, None]], folded_ts=BASE_TS, folded_rank=3, seq=3,
        )  # fmt: skip
    MigrationExecutor(connection).migrate(latest)

    assert Meeting.objects.get(pk="m-old").peak_marks is None
    ingest([as_json(envelope(detail("AttendeeLeft", "m-old", "a-1", BASE_TS + 5)))])
    meeting = Meeting.objects.get(pk="m-old")
    assert (meeting.peak_joined, meeting.joined_count, meeting.seq) == (2, 1, 4)
    assert meeting.peak_marks == {"last": [BASE_TS + 5, 7], "at": [BASE_TS, 3]}


QUARANTINE_BEFORE = [("roster", "0010_meeting_users")]
SQS_QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/chime-events"


@pytest.mark.django_db(transaction=True)
def test_quarantine_rows_stored_before_keys_are_keyed_and_redeliveries_folded():
    """0011 keys the rows already stored as ingest keys new ones: SQS rows by queue and MessageId,
    the others by source and body. The extra rows a redelivery made are folded into the first
    (its deliveries count them); a redelivery after migrating finds the row."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("roster")
    executor.migrate(QUARANTINE_BEFORE)
    old = MigrationExecutor(connection).loader.project_state(QUARANTINE_BEFORE).apps
    quarantine = old.get_model("roster", "Quarantine")
    at = [datetime(2026, 11, 30, 12, minute, tzinfo=UTC) for minute in range(6)]

    def stored(body: bytes, queue: str, message_id: str, received_at: datetime, **more) -> int:
        return quarantine.objects.create(
            body=body[: 64 * 1024], body_size=len(body), truncated=len(body) > 64 * 1024,
            reason_code="not_json", reason="bad", queue=queue, sqs_message_id=message_id,
            received_at=received_at, **more,
        ).pk  # fmt: skip

    first = stored(b"{", SQS_QUEUE, "id-1", at[0])
    stored(
        b"{", SQS_QUEUE, "id-1", at[2], reprocessed=True, reprocess_outcome="rejected", reprocessed_at=at[3]
    )  # redelivered
    stored(b"{", SQS_QUEUE, "id-1", at[4])  # and again
    twin = stored(b"{", SQS_QUEUE, "id-2", at[1])  # the same body, another message
    line = stored(b"[", "file:a.jsonl", "line:1", at[0])
    stored(b"[", "file:a.jsonl", "line:1", at[3])  # the file ingested again
    big = [stored(b"x" * 70_000, "file:a.jsonl", f"line:{n}", at[0]) for n in (2, 3)]  # truncated: kept
    MigrationExecutor(connection).migrate(latest)

    rows = {q.pk: q for q in Quarantine.objects.all()}
    assert sorted(rows) == sorted([first, twin, line, *big])
    assert (rows[first].deliveries, rows[first].received_at, rows[first].last_received_at) == (
        3,
        at[0],
        at[4],
    )
    assert rows[first].reprocess_outcome == "rejected"  # the last attempt of the message, kept
    assert (rows[twin].deliveries, rows[twin].last_received_at) == (1, at[1])
    assert (rows[line].deliveries, rows[line].last_received_at) == (2, at[3])
    assert [rows[pk].deliveries for pk in big] == [1, 1]
    assert len({q.source_key for q in rows.values()}) == len(rows)

    # Redeliveries after the upgrade find the rows 0011 keyed.
    messages_ingest(
        messages=[IncomingMessage(body="{", queue=SQS_QUEUE, message_id="id-1", keyed_by_id=True)]
    )
    messages_ingest(messages=[IncomingMessage(body="[", queue="file:a.jsonl", message_id="line:7")])
    assert Quarantine.objects.count() == len(rows)
    assert Quarantine.objects.get(pk=first).deliveries == 4
    assert Quarantine.objects.get(pk=line).deliveries == 3


REPAIRS_BEFORE = [("roster", "0011_quarantine_once_per_message")]


@pytest.mark.django_db(transaction=True)
def test_meetings_and_events_stored_before_repairs_get_sources_regions_and_go_on():
    """0012 on a database with rows: logged events are Chime's, a meeting learns its control
    region from its logged envelopes (blank when only bare details came), and a row of the
    previous release (inserted without the new columns, as its workers do during a rolling
    upgrade) takes the database defaults; then ingest and repairs go on."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("roster")
    executor.migrate(REPAIRS_BEFORE)
    old = MigrationExecutor(connection).loader.project_state(REPAIRS_BEFORE).apps
    received = datetime(2026, 12, 1, tzinfo=UTC)
    for meeting_id, regions in (("m-env", ["", "us-east-1"]), ("m-bare", [""])):
        old.get_model("roster", "Meeting").objects.create(meeting_id=meeting_id, status="active", seq=1)
        for n, region in enumerate(regions):
            old.get_model("roster", "Event").objects.create(
                key=f"{meeting_id}-{n}", kind="meeting", detail_type="Chime Meeting State Change",
                event_type="chime:AttendeeJoined", meeting_id=meeting_id, attendee_id=f"a-{n}",
                parent_id=f"a-{n}", timestamp=BASE_TS, detail={}, region=region, received_at=received,
            )  # fmt: skip
    MigrationExecutor(connection).migrate(latest)

    regions = dict(Meeting.objects.values_list("meeting_id", "control_region"))
    assert regions == {"m-env": "us-east-1", "m-bare": ""}
    assert set(Event.objects.values_list("source", flat=True)) == {"chime"}
    assert Meeting.objects.get(pk="m-env").reconcile_missed == []
    assert Meeting.objects.get(pk="m-env").primary_meeting_id is None

    with connection.cursor() as cursor:  # what a worker of the previous release writes
        cursor.execute(
            "INSERT INTO roster_event (key, kind, detail_type, event_type, meeting_id, attendee_id,"
            " parent_id, timestamp, detail, envelope_id, account, region, queue, sqs_message_id,"
            " received_at, duplicate_count) VALUES ('k-old', 'meeting', 'x', 'chime:Old', 'm-env', '',"
            " '', 1, '{}', '', '', '', '', '', %s, 0)",
            [datetime(2026, 12, 1, tzinfo=UTC)],
        )
        cursor.execute(
            "INSERT INTO roster_meeting (meeting_id, external_meeting_id, media_region, status,"
            " peak_joined, joined_count, dropped_count, video_count, sharing_count, pipelines, seq,"
            " created_at, updated_at) VALUES ('m-old-worker', '', '', 'unknown', 0, 0, 0, 0, 0, '{}',"
            " 0, %s, %s)",
            [datetime(2026, 12, 1, tzinfo=UTC)] * 2,
        )
    assert Event.objects.get(key="k-old").source == "chime"
    old_worker = Meeting.objects.get(pk="m-old-worker")
    assert (old_worker.control_region, old_worker.reconcile_missed) == ("", [])

    ingest([as_json(envelope(detail("AttendeeJoined", "m-env", "a-9", BASE_TS + 5, externalUserId="zed")))])
    # SQLite rebuilt roster_attendee: 0010's triggers must be there again.
    assert MeetingUser.objects.filter(meeting_id="m-env", user_upper="ZED").exists()
    repairs_ingest(
        repairs=[
            Repairs(
                meeting_id="m-env", bodies=(meeting_ended_repair(meeting_id="m-env", timestamp=BASE_TS + 5),)
            )
        ]
    )
    assert Meeting.objects.get(pk="m-env").status == "ended"
    assert Event.objects.filter(source="reconcile").count() == 1


PAYLOAD_BEFORE = [("roster", "0015_hook_delivery_retry_until")]


@pytest.mark.django_db(transaction=True)
def test_deliveries_stored_with_their_bodies_get_a_payload_and_send_the_same_body():
    """0016 moves each stored body into a payload (``"id": ""``); the delivery then sends the very
    bytes it would have sent before, its own id in them. 0017 takes those payloads as fanned out
    already: the fan-out writes them no second delivery."""
    from roster.hooks.outbox import body_with_id, deliveries_fan_out
    from roster.models import HookDelivery, HookPayload

    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("roster")
    executor.migrate(PAYLOAD_BEFORE)
    old = MigrationExecutor(connection).loader.project_state(PAYLOAD_BEFORE).apps
    hooks = old.get_model("roster", "Hook").objects
    hook = hooks.create(name="h", target="https://h.example.com/", secret="s")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    bodies = {}
    for seq, delivery_id in ((1, "a" * 32), (2, "b" * 32)):
        bodies[delivery_id] = (
            f'{{"id": "{delivery_id}", "type": "roster.change", "events": ["attendee.joined"], '
            f'"meeting": {{"meeting_id": "m-1", "seq": {seq}}}, "attendees": []}}'
        )
        old.get_model("roster", "HookDelivery").objects.create(
            hook=hook, meeting_id="m-1", seq=seq, delivery_id=delivery_id, events=["attendee.joined"],
            body=bodies[delivery_id], next_attempt_at=now, created_at=now, status="pending",
        )  # fmt: skip
    MigrationExecutor(connection).migrate(latest)

    rows = list(HookDelivery.objects.select_related("payload").order_by("seq"))
    sent = [body_with_id(body=r.payload.body, delivery_id=r.delivery_id) for r in rows]
    assert sent == list(bodies.values())
    assert {(tuple(r.payload.events), r.payload.parts, r.status) for r in rows} == {
        (("attendee.joined",), 1, "pending")
    }
    assert len({r.payload_id for r in rows}) == 2
    assert set(HookPayload.objects.values_list("fanned", flat=True)) == {True}
    assert deliveries_fan_out() == 0
    assert HookDelivery.objects.count() == 2
