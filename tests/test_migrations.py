"""Migrations stay valid on an existing database: a meeting stored under 0006 (with the old peak
ledger columns) goes on after the latest migration, swept once by its next batch."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from roster.dev.chime import BASE_TS, as_json, detail, envelope
from roster.models import Meeting
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
