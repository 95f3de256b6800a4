"""The Voice Connector streams page and its JSON (staff only, escaped, filtered by status) and the
queue lag warning in the dashboard header."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone

from roster.dev.chime import as_bare
from roster.ingest import IncomingMessage, messages_ingest
from roster.models import QueueSource

pytestmark = pytest.mark.django_db

HOSTILE = "<img src=x onerror=alert(1)>"


def vc(transaction: str, status: str, at: str, **extra: str) -> dict:
    time_field = {
        "STARTED": "startTime",
        "UPDATED": "updateTime",
        "ENDED": "endTime",
        "FAILED": "failureTime",
    }
    return {
        "voiceConnectorId": "vc-1",
        "transactionId": transaction,
        "callId": f"call-{transaction}",
        "direction": "Inbound",
        "fromNumber": "+15550100",
        "toNumber": "+15550199",
        "streamArn": "arn:aws:kinesisvideo:us-east-1:111122223333:stream/vc-1/1",
        "streamingStatus": status,
        time_field[status]: at,
        **extra,
    }


def ingest(details: list[dict]) -> None:
    messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])


@pytest.fixture
def streams():
    ingest(
        [
            vc(
                "tx-live", "STARTED", "2024-01-01T10:00:00.000Z", fromNumber=HOSTILE, callId=f"call-{HOSTILE}"
            ),
            vc("tx-upd", "STARTED", "2024-01-01T10:01:00.000Z"),
            vc("tx-upd", "UPDATED", "2024-01-01T10:02:00.000Z"),
            vc("tx-done", "STARTED", "2024-01-01T09:00:00.000Z"),
            vc("tx-done", "ENDED", "2024-01-01T09:30:00.000Z"),
            vc("tx-bad", "FAILED", "2024-01-01T10:03:00.000Z", failureReason=f"no media {HOSTILE}"),
        ]
    )


@pytest.fixture
def staff(client):
    User.objects.create_user("ops", password="pw-ops-123456", is_staff=True)
    client.login(username="ops", password="pw-ops-123456")
    return client


@pytest.fixture
def host(client):
    User.objects.create_user("host", password="pw-host-123456")
    client.login(username="host", password="pw-host-123456")
    return client


def test_streams_page_needs_a_staff_login(client, streams):
    response = client.get("/streams/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/streams/"
    assert client.get("/api/voice-connector-streams").status_code == 401
    User.objects.create_user("host", password="pw-host-123456")
    client.login(username="host", password="pw-host-123456")
    assert client.get("/streams/").status_code == 403  # streams belong to no meeting: staff only
    refused = client.get("/api/voice-connector-streams")
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert b"/streams/" not in client.get("/").content  # no link for hosts


def test_streams_page_groups_by_status_and_escapes(staff, streams):
    response = staff.get("/streams/")
    assert response.status_code == 200
    html = response.content.decode()
    assert HOSTILE not in html  # not even inside the json_script block
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    order = [
        html.index(f'data-status="{s}" aria-labelledby') for s in ("STARTED", "UPDATED", "FAILED", "ENDED")
    ]
    assert order == sorted(order)
    started = html[order[0] : order[1]]
    assert 'data-key="vc-1/tx-live"' in started and "tx-upd" not in started
    failed = html[order[2] : order[3]]
    assert "no media &lt;img" in failed and "2024-01-01T10:03:00.000Z" in failed
    assert "4 streams" in html
    assert '<a href="/streams/">' in staff.get("/").content.decode()  # linked from the header


def test_streams_page_filter(staff, streams):
    html = staff.get("/streams/?status=failed").content.decode()
    assert 'data-status="FAILED" aria-labelledby' in html
    assert 'aria-labelledby="group-STARTED"' not in html
    assert "tx-live" not in html and "tx-bad" in html


def test_streams_json(staff, streams):
    data = staff.get("/api/voice-connector-streams").json()
    assert data["counts"] == {"STARTED": 1, "UPDATED": 1, "FAILED": 1, "ENDED": 1}
    assert data["truncated"] is False
    assert [s["transaction_id"] for s in data["streams"]] == ["tx-bad", "tx-upd", "tx-live", "tx-done"]
    live = data["streams"][2]
    assert live["from_number"] == HOSTILE  # JSON carries the text; the page renders it as text
    assert live["call_id"] == f"call-{HOSTILE}"
    done = data["streams"][3]
    assert (done["status"], done["start_time"], done["end_time"]) == (
        "ENDED",
        "2024-01-01T09:00:00.000Z",
        "2024-01-01T09:30:00.000Z",
    )
    only = staff.get("/api/voice-connector-streams?status=ENDED").json()
    assert [s["transaction_id"] for s in only["streams"]] == ["tx-done"]
    assert only["counts"]["STARTED"] == 1  # counts stay global
    bogus = staff.get("/api/voice-connector-streams?status=<x>").json()
    assert len(bogus["streams"]) == 4  # an unknown status filters nothing


# ---------------------------------------------------------------------------------------------
# Queue lag in the header


def lag_span(html: str) -> str:
    start = html.index('id="queue-lag"')
    return html[start : html.index("</span>", start)]


def test_no_lag_renders_a_hidden_warning(host):
    QueueSource.objects.create(
        url="https://sqs.us-east-1.amazonaws.com/1/q",
        backlog=3,
        oldest_age_seconds=2.0,
        last_poll_at=timezone.now(),
    )
    span = lag_span(host.get("/").content.decode())
    assert " hidden" in span and "lag" not in span.split(">", 1)[1]
    data = host.get("/api/queue-lag").json()
    assert data["warn"] is False and data["lag_seconds"] == 2.0 and data["backlog"] == 3


def test_lag_over_the_threshold_is_shown(host):
    QueueSource.objects.create(
        url="https://sqs.us-east-1.amazonaws.com/1/secret-queue-name",
        backlog=120,
        oldest_age_seconds=45.4,
        last_poll_at=timezone.now(),
    )
    QueueSource.objects.create(
        url="https://sqs.us-east-1.amazonaws.com/1/other",
        backlog=5,
        oldest_age_seconds=1,
        last_poll_at=timezone.now(),
    )
    QueueSource.objects.create(
        url="https://sqs.us-east-1.amazonaws.com/1/off", enabled=False, backlog=9999, oldest_age_seconds=999
    )
    html = host.get("/").content.decode()
    span = lag_span(html)
    assert " hidden" not in span
    assert span.endswith("Queue lag 45 s · 125 waiting")
    assert "secret-queue-name" not in html  # hosts see the lag, not the queues
    data = host.get("/api/queue-lag").json()
    assert (data["warn"], data["lag_seconds"], data["backlog"]) == (True, 45.4, 125)
    with override_settings(QUEUE_LAG_WARN_SECONDS=60):
        assert " hidden" in lag_span(host.get("/").content.decode())


def test_waiting_messages_nobody_drains_are_shown(host):
    QueueSource.objects.create(
        url="https://sqs.us-east-1.amazonaws.com/1/q",
        backlog=40,
        oldest_age_seconds=0.0,
        last_poll_at=timezone.now() - timedelta(minutes=10),
    )
    span = lag_span(host.get("/").content.decode())
    assert " hidden" not in span
    assert re.search(r">Queue not drained for 60[01] s · 40 waiting$", span), span
    data = host.get("/api/queue-lag").json()
    assert data["stalled"] is True and data["warn"] is True


def test_queue_lag_json_needs_a_login(client):
    assert client.get("/api/queue-lag").status_code == 401
    assert b"queue-lag" not in client.get("/admin/login/").content
