"""ingest_file and roster --json: the file path is the SQS path, and the JSON is the REST shape."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from roster.models import Quarantine
from tests.streams import bodies, meeting_stream
from tests.test_ingest import expected, stored

pytestmark = pytest.mark.django_db


def test_ingest_file_then_roster_json(tmp_path):
    details = meeting_stream(seed=60, attendees=3)
    path = tmp_path / "events.jsonl"
    lines = [*bodies(details, seed=60), "", '{"broken": ', *bodies(details[:5], seed=61)]
    path.write_text("\n".join(lines) + "\n")
    out = io.StringIO()
    call_command("ingest_file", str(path), stdout=out)
    assert out.getvalue().strip().splitlines()[-1] == (
        f"received={len(details) + 6} applied={len(details)} duplicates=5 quarantined=1"
    )
    assert Quarantine.objects.get().sqs_message_id == f"line:{len(details) + 2}"

    out = io.StringIO()
    call_command("roster", "room-60", "--json", stdout=out)  # by externalMeetingId
    roster = json.loads(out.getvalue())
    assert roster["meeting"]["meeting_id"] == details[0]["meetingId"]
    assert roster["meeting"]["seq"] >= 1
    assert stored(details[0]["meetingId"]) == expected(details)
    assert [a["attendee_id"] for a in roster["attendees"]] == ["att-60-0", "att-60-1", "att-60-2"]


def test_roster_of_unknown_meeting_is_an_error():
    with pytest.raises(CommandError, match="no meeting"):
        call_command("roster", "nope")
