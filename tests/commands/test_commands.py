"""ingest_file and roster --json: the file path is the SQS path, and the JSON is the REST shape."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from roster.dev.chime import bodies, meeting_stream
from roster.models import Quarantine
from tests.conftest import expected, stored

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


def test_a_file_ingested_twice_quarantines_each_bad_line_once(tmp_path):
    """A file has no message ids: a bad line is known again by its body (within the file's name),
    so a second run after a crash counts a delivery instead of adding a row."""
    path = tmp_path / "events.jsonl"
    path.write_text('{"broken": \n[]\n')
    for _ in range(2):
        out = io.StringIO()
        call_command("ingest_file", str(path), stdout=out)
        assert out.getvalue().strip().splitlines()[-1] == "received=2 applied=0 duplicates=0 quarantined=2"
    rows = Quarantine.objects.order_by("reason_code")
    assert [(q.reason_code, q.queue, q.deliveries) for q in rows] == [
        ("not_json", "file:events.jsonl", 2),
        ("not_object", "file:events.jsonl", 2),
    ]


def test_roster_of_unknown_meeting_is_an_error():
    with pytest.raises(CommandError, match="no meeting"):
        call_command("roster", "nope")


def test_queue_sources_are_seeded_from_settings(settings, caplog):
    from roster.models import QueueSource
    from roster.sources.sqs import accounts_warn, queue_sources_seed

    settings.SQS_QUEUE_URLS = [
        "https://sqs.eu-west-1.amazonaws.com/123456789012/chime-a",
        "http://127.0.0.1:5000/123456789012/local",
    ]
    QueueSource.objects.create(url=settings.SQS_QUEUE_URLS[0], enabled=False, consumers=4)
    queue_sources_seed()
    rows = {q.url: q for q in QueueSource.objects.all()}
    assert (rows[settings.SQS_QUEUE_URLS[0]].enabled, rows[settings.SQS_QUEUE_URLS[0]].consumers) == (
        False,
        4,
    )
    assert rows[settings.SQS_QUEUE_URLS[1]].region == settings.AWS_REGION
    settings.CHIME_ALLOWED_ACCOUNTS = []
    accounts_warn()
    assert "CHIME_ALLOWED_ACCOUNTS is empty" in caplog.text


def test_admin_shows_derived_rows_read_only(admin_client):
    details = meeting_stream(seed=62, attendees=2)
    from roster.ingest import IncomingMessage, messages_ingest

    messages_ingest(
        messages=[IncomingMessage(body=b) for b in bodies(details, seed=62)] + [IncomingMessage(body="<x>")]
    )
    meeting_id = details[0]["meetingId"]
    page = admin_client.get(f"/admin/roster/meeting/{meeting_id}/change/")
    assert page.status_code == 200 and b"att-62-0" in page.content
    assert b'name="status"' not in page.content  # derived fields are not form inputs
    assert (
        admin_client.post(f"/admin/roster/meeting/{meeting_id}/change/", {"status": "ended"}).status_code
        == 403
    )
    assert admin_client.get("/admin/roster/meeting/add/").status_code == 403
    quarantine = Quarantine.objects.get()
    page = admin_client.get(f"/admin/roster/quarantine/{quarantine.pk}/change/")
    assert page.status_code == 200 and b"&lt;x&gt;" in page.content


def test_revoke_feed_token_revokes_by_name_and_refuses_an_unknown_name():
    from roster.models import FeedToken
    from roster.read.access import access_for_token, feed_token_create

    _, raw = feed_token_create(name="wallboard")
    _, kept = feed_token_create(name="crm")
    out, err = io.StringIO(), io.StringIO()
    call_command("revoke_feed_token", "wallboard", stdout=out, stderr=err)
    assert out.getvalue().splitlines()[-1] == "revoked=1 name=wallboard"
    assert access_for_token(raw=raw) is None and access_for_token(raw=kept) is not None
    assert FeedToken.objects.get(name="wallboard").revoked_at is not None

    out, err = io.StringIO(), io.StringIO()
    call_command("revoke_feed_token", "wallboard", stdout=out, stderr=err)  # again: nothing to do
    assert out.getvalue().splitlines()[-1] == "revoked=0 name=wallboard" and "already" in err.getvalue()
    with pytest.raises(CommandError, match="no feed token is named 'walboard'"):
        call_command("revoke_feed_token", "walboard")
