"""The operators' admin, driven through its real pages: quarantine (read, reprocess, delete),
queue health against a moto SQS server, derived rows that cannot be edited, feed tokens shown
once. Staff only."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User

from config.celery import app as celery_app
from roster.dev.chime import as_bare, as_envelope, as_json, envelope, meeting_stream, vc_detail
from roster.ingest import IncomingMessage, messages_ingest
from roster.models import (
    AccessRule,
    Attendee,
    Event,
    FeedToken,
    HostLink,
    Meeting,
    Quarantine,
    QueueSource,
    VoiceConnectorStream,
)
from roster.read.access import access_for_token, feed_token_create, token_hash
from roster.read.host_links import host_link_create, host_link_live, host_link_verify
from roster.sources.sqs import _QueueHealth, queue_drain_once, queue_health_refresh
from roster.tasks import queue_health_refresh as queue_health_refresh_task
from tests.conftest import celery_worker_start, send_bodies

ADMIN = "/admin/roster"
HOSTILE = "<script>alert(1)</script>"
OTHER_ACCOUNT = "999988887777"


@pytest.fixture
def operator(client):
    user = User.objects.create_user("operator", password="pw-operator-1", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def outsider(client):
    client.force_login(User.objects.create_user("outsider", password="pw-outsider-1"))
    return client


def ingest(*bodies: str | bytes, queue: str = "q-test") -> None:
    messages_ingest(
        messages=[IncomingMessage(body=b, queue=queue, message_id=f"m-{i}") for i, b in enumerate(bodies)]
    )


def action(client, model: str, name: str, ids, **extra):
    return client.post(
        f"{ADMIN}/{model}/",
        {"action": name, "_selected_action": [str(i) for i in ids], **extra},
        follow=True,
    )


def page_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def field_names(html: str) -> set[str]:
    """Names of the form controls a user can change on a page (not hidden inputs)."""
    controls = re.findall(r"<(?:input|select|textarea)\b[^>]*>", html)
    return {
        re.search(r'\bname="([^"]+)"', c).group(1)
        for c in controls
        if 'type="hidden"' not in c and 'name="' in c
    }


# --- Quarantine ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_quarantine_list_filters_and_search(operator):
    ingest('{"meetingId": "x" "eventType": 1}', queue="q-one")
    ingest("[]", queue="q-two")
    response = operator.get(f"{ADMIN}/quarantine/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "not_json" in body and "not_object" in body and "q-one" in body and "q-two" in body
    only_json = operator.get(f"{ADMIN}/quarantine/", {"reason_code": "not_json"})
    assert [q.reason_code for q in only_json.context["cl"].result_list] == ["not_json"]
    by_queue = operator.get(f"{ADMIN}/quarantine/", {"queue": "q-two"})
    assert [q.queue for q in by_queue.context["cl"].result_list] == ["q-two"]
    pending = operator.get(f"{ADMIN}/quarantine/", {"reprocessed__exact": "0"})
    assert len(pending.context["cl"].result_list) == 2
    by_id = operator.get(f"{ADMIN}/quarantine/", {"q": "m-0"})
    assert len(by_id.context["cl"].result_list) == 2  # both were message m-0 of their batch
    by_reason = operator.get(f"{ADMIN}/quarantine/", {"q": "but not an object"})
    assert [q.reason_code for q in by_reason.context["cl"].result_list] == ["not_object"]


@pytest.mark.django_db
def test_quarantine_detail_pretty_prints_sns_message_and_escapes(operator):
    detail = meeting_stream(seed=3, attendees=1)[1]
    detail["externalMeetingId"] = HOSTILE
    inner = json.loads(as_envelope(detail))
    inner["source"] = "aws.other"
    topic = "arn:aws:sns:us-east-1:1:t"
    ingest(json.dumps({"Type": "Notification", "TopicArn": topic, "Message": json.dumps(inner)}))
    row = Quarantine.objects.get()
    assert row.reason_code == "wrong_source"
    html = operator.get(f"{ADMIN}/quarantine/{row.pk}/change/").content.decode()
    assert "SNS Message (JSON)" in html
    assert "\n  &quot;Type&quot;: &quot;Notification&quot;" in html  # the wrapper, indented
    assert (
        "\n  &quot;detail&quot;: {\n    &quot;meetingId&quot;" in html
        or '\n  "detail": {\n    "meetingId"' in html
    )
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert field_names(html) <= {"csrfmiddlewaretoken"}  # nothing to edit


@pytest.mark.django_db
def test_quarantine_detail_shows_text_and_truncation(operator):
    ingest(b"<b>not json</b> \xff", "x" * (Quarantine.KEEP_BYTES + 100))
    bad_utf8, big = Quarantine.objects.order_by("body_size")
    html = operator.get(f"{ADMIN}/quarantine/{bad_utf8.pk}/change/").content.decode()
    assert "Body (text)" in html and "&lt;b&gt;not json&lt;/b&gt; \\xff" in html
    html = operator.get(f"{ADMIN}/quarantine/{big.pk}/change/").content.decode()
    assert f"only the first {Quarantine.KEEP_BYTES} of {Quarantine.KEEP_BYTES + 100} bytes" in html


@pytest.mark.django_db
def test_reprocess_applies_dedupes_and_marks_without_new_quarantine_rows(operator, settings):
    settings.CHIME_ALLOWED_ACCOUNTS = ["111122223333"]
    stream = meeting_stream(seed=5, attendees=1, end=False)
    joined = next(d for d in stream if d["eventType"] == "chime:AttendeeJoined")
    started = stream[0]
    other = json.loads(as_envelope(joined))
    other["account"] = OTHER_ACCOUNT
    inner = json.loads(as_envelope(joined))
    inner["account"] = OTHER_ACCOUNT
    sns_copy = json.dumps({"Type": "Notification", "TopicArn": "arn:t", "Message": json.dumps(inner)})
    started_other = json.loads(as_envelope(started))
    started_other["account"] = OTHER_ACCOUNT
    ingest(json.dumps(other), sns_copy, json.dumps(started_other), "not json", "y" * 70000)
    rows = list(Quarantine.objects.order_by("pk"))
    assert [r.reason_code for r in rows] == ["account_not_allowed"] * 3 + ["not_json", "not_json"]
    assert Event.objects.count() == 0

    settings.CHIME_ALLOWED_ACCOUNTS = ["111122223333", OTHER_ACCOUNT]  # the fix the operator made
    response = action(operator, "quarantine", "reprocess", [r.pk for r in rows])
    assert page_messages(response) == [
        "Reprocessed: 2 applied, 1 duplicate, 1 still rejected, 1 truncated (not reprocessed), "
        "0 failed, 0 already done."
    ]
    outcomes = {r.pk: (r.reprocessed, r.reprocess_outcome) for r in Quarantine.objects.all()}
    assert [outcomes[r.pk] for r in rows] == [
        (True, "applied"),
        (True, "duplicate"),
        (True, "applied"),
        (True, "rejected"),
        (False, "truncated"),
    ]
    still = Quarantine.objects.get(pk=rows[3].pk)
    assert still.reprocess_detail.startswith("not_json:") and still.reprocessed_at is not None
    assert "cannot be rebuilt" in Quarantine.objects.get(pk=rows[4].pk).reprocess_detail
    assert Quarantine.objects.count() == 5  # no second row for the body still rejected
    assert Event.objects.count() == 2
    attendee = Attendee.objects.get(attendee_id=joined["attendeeId"])
    assert attendee.presence == "joined" and attendee.meeting.status == "active"
    assert Event.objects.get(event_type="chime:AttendeeJoined").queue == "q-test"

    again = action(operator, "quarantine", "reprocess", [r.pk for r in rows])
    assert page_messages(again) == [
        "Reprocessed: 0 applied, 0 duplicate, 1 still rejected, 1 truncated (not reprocessed), "
        "0 failed, 3 already done."
    ]
    assert Quarantine.objects.count() == 5 and Event.objects.count() == 2
    listed = operator.get(f"{ADMIN}/quarantine/", {"reprocess_outcome": "duplicate"})
    assert [q.pk for q in listed.context["cl"].result_list] == [rows[1].pk]


@pytest.mark.django_db
def test_quarantine_shows_how_often_a_message_was_delivered(operator):
    redelivered = IncomingMessage(body="[]", queue="q-test", message_id="id-1", keyed_by_id=True)
    for _ in range(3):
        messages_ingest(messages=[redelivered])
    ingest("{")
    listed = operator.get(f"{ADMIN}/quarantine/")
    assert "column-deliveries" in listed.content.decode()
    assert {q.sqs_message_id: q.deliveries for q in listed.context["cl"].result_list} == {"id-1": 3, "m-0": 1}
    row = Quarantine.objects.get(sqs_message_id="id-1")
    html = operator.get(f"{ADMIN}/quarantine/{row.pk}/change/").content.decode()
    assert re.search(r"Deliveries:</label>\s*<div[^>]*>3</div>", html), html
    assert "Last received at:" in html and "Source key:" in html


@pytest.mark.django_db
def test_quarantine_rows_can_be_deleted(operator):
    ingest("[]")
    row = Quarantine.objects.get()
    response = operator.post(f"{ADMIN}/quarantine/{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Quarantine.objects.exists()


@pytest.mark.django_db
def test_outsiders_and_view_only_staff_cannot_reprocess(client):
    ingest("[]")
    row = Quarantine.objects.get()
    outsider = User.objects.create_user("outsider", password="pw-outsider-1")
    client.force_login(outsider)
    response = client.get(f"{ADMIN}/quarantine/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    response = client.post(f"{ADMIN}/quarantine/", {"action": "reprocess", "_selected_action": [row.pk]})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")

    viewer = User.objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_quarantine"))
    client.force_login(viewer)
    page = client.get(f"{ADMIN}/quarantine/")
    assert page.status_code == 200 and "Reprocess selected" not in page.content.decode()
    action(client, "quarantine", "reprocess", [row.pk])
    row.refresh_from_db()
    assert not row.reprocessed and row.reprocess_outcome == ""
    assert client.post(f"{ADMIN}/quarantine/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Quarantine.objects.filter(pk=row.pk).exists()


# --- Derived rows -------------------------------------------------------------------------------


@pytest.fixture
def derived():
    stream = meeting_stream(seed=7, attendees=2, end=False)
    ingest(*[as_bare(d) for d in stream])
    ingest(as_json(envelope(vc_detail("STARTED"))), as_json(envelope(vc_detail("FAILED", failureReason="x"))))
    return stream[0]["meetingId"]


DERIVED = [
    ("meeting", lambda: Meeting.objects.get()),
    ("attendee", lambda: Attendee.objects.order_by("pk").first()),
    ("event", lambda: Event.objects.order_by("pk").first()),
    ("voiceconnectorstream", lambda: VoiceConnectorStream.objects.get()),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "get"), DERIVED, ids=[m for m, _ in DERIVED])
def test_derived_rows_are_never_editable(operator, derived, model, get):
    obj = get()
    before = {f.name: getattr(obj, f.name) for f in obj._meta.concrete_fields}
    url = f"{ADMIN}/{model}/{obj.pk}/change/"
    page = operator.get(url)
    assert page.status_code == 200
    assert field_names(page.content.decode()) <= {"csrfmiddlewaretoken"}
    edits = {"status": "ended", "presence": "left", "seq": "999", "event_type": "x", "joined_count": "99"}
    assert operator.post(url, edits).status_code == 403
    assert operator.post(f"{ADMIN}/{model}/{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    assert operator.get(f"{ADMIN}/{model}/add/").status_code == 403
    listing = operator.get(f"{ADMIN}/{model}/").content.decode()
    assert "delete_selected" not in listing
    obj.refresh_from_db()
    assert {f.name: getattr(obj, f.name) for f in obj._meta.concrete_fields} == before


@pytest.mark.django_db
def test_meeting_admin_links_dashboard_lists_attendees_and_searches(operator, derived):
    meeting = Meeting.objects.get()
    html = operator.get(f"{ADMIN}/meeting/{meeting.pk}/change/").content.decode()
    assert f'href="/meetings/{meeting.pk}/"' in html
    assert f'href="/admin/roster/event/?meeting_id={meeting.pk}"' in html
    assert all(a.attendee_id in html for a in meeting.attendees.all()) and meeting.attendees.count() == 2
    assert "intervals" not in html and "folded_ts" not in html  # fold bookkeeping stays out
    found = operator.get(f"{ADMIN}/meeting/", {"q": "room-7"}).context["cl"].result_list
    assert [m.pk for m in found] == [meeting.pk]
    assert not operator.get(f"{ADMIN}/meeting/", {"q": "room-8"}).context["cl"].result_list
    assert operator.get(f"{ADMIN}/meeting/", {"status": "active"}).context["cl"].result_list
    assert not operator.get(f"{ADMIN}/meeting/", {"status": "ended"}).context["cl"].result_list


@pytest.mark.django_db
def test_event_admin_filters_and_searches_ids(operator, derived):
    joined = Event.objects.filter(event_type="chime:AttendeeJoined").order_by("pk").first()
    unprefixed = {"meetingId": derived, "attendeeId": "bare", "eventType": "AttendeeJoined", "timestamp": 5}
    ingest(as_json(unprefixed))  # the same type without "chime:"
    listing = operator.get(f"{ADMIN}/event/")
    choices = [c["display"] for c in listing.context["cl"].filter_specs[0].choices(listing.context["cl"])]
    assert "AttendeeJoined" in choices and "chime:AttendeeJoined" not in choices  # one type, one form
    for value in ("AttendeeJoined", "chime:AttendeeJoined"):
        by_type = operator.get(f"{ADMIN}/event/", {"event_type": value}).context["cl"]
        assert (
            by_type.result_count == Event.objects.filter(event_type="chime:AttendeeJoined").count() + 1 >= 3
        )
    by_kind = operator.get(f"{ADMIN}/event/", {"kind": "voice_connector"}).context["cl"]
    assert by_kind.result_count == 2
    assert (
        operator.get(f"{ADMIN}/event/", {"queue": "q-test"}).context["cl"].result_count
        == Event.objects.count()
    )
    by_meeting = operator.get(f"{ADMIN}/event/", {"meeting_id": derived}).context["cl"]
    assert by_meeting.result_count == Event.objects.filter(meeting_id=derived).count() > 0
    for term in (joined.key, joined.attendee_id):
        found = operator.get(f"{ADMIN}/event/", {"q": term}).context["cl"].result_list
        assert joined.pk in [e.pk for e in found]
    assert list(operator.get(f"{ADMIN}/event/", {"q": joined.key}).context["cl"].result_list) == [joined]
    html = operator.get(f"{ADMIN}/event/{joined.pk}/change/").content.decode()
    assert '\n  "eventType": "chime:AttendeeJoined"' in html or "&quot;eventType&quot;" in html


@pytest.mark.django_db
def test_times_are_dates_and_names_stand_next_to_ids(operator, derived, settings):
    settings.TIME_ZONE = "UTC"
    meeting = Meeting.objects.get()
    event = Event.objects.filter(event_type="chime:AttendeeJoined").order_by("pk").first()
    listing = operator.get(f"{ADMIN}/event/", {"q": event.key}).content.decode()
    moment = datetime.fromtimestamp(event.timestamp / 1000, tz=UTC)
    assert moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{event.timestamp % 1000:03d} UTC" in listing
    assert f'title="{event.timestamp} ms"' in listing  # the number is still there, in a tooltip
    assert "room-7 <span" in listing and "user-" in listing  # names next to the ids
    page = operator.get(f"{ADMIN}/meeting/{meeting.pk}/change/").content.decode()
    started = datetime.fromtimestamp(meeting.started_at / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert started in page and f">{meeting.started_at}<" not in page
    assert "time in meeting" in page.lower() and 'rel="icon"' in page


@pytest.mark.django_db
def test_voice_connector_streams_filter_by_status(operator, derived):
    failed = operator.get(f"{ADMIN}/voiceconnectorstream/", {"status": "FAILED"}).context["cl"]
    assert [s.status for s in failed.result_list] == ["FAILED"]
    assert not operator.get(f"{ADMIN}/voiceconnectorstream/", {"status": "STARTED"}).context["cl"].result_list


# --- Queue sources and health -------------------------------------------------------------------


@pytest.mark.django_db
def test_queue_health_reads_backlog_and_in_flight_from_sqs(sqs, make_queue, sqs_endpoint):
    busy, empty, off = make_queue(), make_queue(), make_queue()
    send_bodies(sqs, busy, [f"body-{i}" for i in range(7)])
    taken = sqs.receive_message(QueueUrl=busy, MaxNumberOfMessages=3, VisibilityTimeout=60)["Messages"]
    assert len(taken) == 3
    send_bodies(sqs, off, ["x"])
    missing = busy.rsplit("/", 1)[0] + "/no-such-queue"
    sources = {
        url: QueueSource.objects.create(url=url, enabled=enabled, oldest_age_seconds=12.5)
        for url, enabled in ((busy, True), (empty, True), (off, False), (missing, True))
    }
    refreshed = queue_health_refresh()
    assert sorted(s.url for s in refreshed) == sorted([busy, empty, missing])
    for source in sources.values():
        source.refresh_from_db()
    assert (sources[busy].backlog, sources[busy].in_flight) == (4, 3)
    assert sources[busy].oldest_age_seconds == 12.5  # the drain's figure: messages are waiting
    assert (sources[empty].backlog, sources[empty].in_flight, sources[empty].oldest_age_seconds) == (
        0,
        0,
        0.0,
    )
    assert sources[busy].health_checked_at is not None and sources[busy].last_error == ""
    assert sources[off].backlog is None and sources[off].health_checked_at is None  # disabled: left alone
    assert sources[missing].backlog is None and sources[missing].health_checked_at is not None
    assert sources[missing].last_error.startswith("GetQueueAttributes:") and sources[missing].last_error_at


@pytest.mark.django_db
def test_queue_health_task_and_beat_schedule(sqs, make_queue):
    queue = make_queue()
    send_bodies(sqs, queue, ["a", "b"])
    QueueSource.objects.create(url=queue)
    entry = settings.CELERY_BEAT_SCHEDULE["queue-health-refresh"]
    assert entry["schedule"] == settings.QUEUE_HEALTH_SECONDS == 30.0
    celery_app.loader.import_default_modules()
    registered = celery_app.tasks[entry["task"]]
    assert registered.name == queue_health_refresh_task.name
    assert registered.apply().get() == 1
    assert QueueSource.objects.get().backlog == 2


@pytest.mark.postgres
def test_beat_schedules_the_refresh_and_a_worker_runs_it(
    subprocess_env, sqs, make_queue, tmp_path, processes
):
    queue = make_queue()
    send_bodies(sqs, queue, ["a", "b", "c", "d"])
    QueueSource.objects.create(url=queue)
    env = dict(
        subprocess_env,
        CELERY_BROKER_URL="redis://127.0.0.1:6379/14",  # not the broker other tests' workers read
        QUEUE_HEALTH_SECONDS="1",
        SQS_DRAIN_IN_WORKER="false",  # the queue must keep its four messages
    )
    celery_worker_start(processes, env, loglevel="WARNING")  # both stopped when the test ends
    processes.spawn(
        "beat",
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING"]
        + ["--schedule", str(tmp_path / "beat-schedule")],
        env=env,
    )
    deadline = time.monotonic() + 60
    while QueueSource.objects.get().backlog is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first = QueueSource.objects.get()
    assert (first.backlog, first.in_flight) == (4, 0)
    deadline = time.monotonic() + 2.5  # and again, every QUEUE_HEALTH_SECONDS
    while (
        QueueSource.objects.get().health_checked_at == first.health_checked_at and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert QueueSource.objects.get().health_checked_at > first.health_checked_at


@pytest.mark.django_db
def test_unreachable_endpoint_is_recorded_quickly_never_raised(settings):
    settings.AWS_ENDPOINT_URL_SQS = "http://127.0.0.1:9"  # nothing listens on the discard port
    source = QueueSource.objects.create(url="http://127.0.0.1:9/000000000000/gone")
    started = time.monotonic()
    queue_health_refresh()
    assert time.monotonic() - started < 10
    source.refresh_from_db()
    assert "EndpointConnectionError" in source.last_error and source.backlog is None


@pytest.mark.django_db(transaction=True)
def test_drain_records_age_of_oldest_message_received(sqs, make_queue):
    queue = make_queue()
    QueueSource.objects.create(url=queue)
    send_bodies(sqs, queue, [as_bare(d) for d in meeting_stream(seed=8, attendees=1)[:3]])
    time.sleep(1.5)
    health = _QueueHealth(queue)
    result = queue_drain_once(client=sqs, queue_url=queue, wait_seconds=1, health=health)
    health.polled(result.received)
    health.flush()
    source = QueueSource.objects.get()
    assert result.received == 3 and 1.5 <= source.oldest_age_seconds < 60
    queue_drain_once(client=sqs, queue_url=queue, wait_seconds=1, health=health)
    health.polled(0)
    health.flush()
    assert QueueSource.objects.get().oldest_age_seconds == 0.0  # an empty poll: nothing waits


@pytest.mark.django_db
def test_queue_source_admin_edits_switches_and_refreshes(operator, sqs, make_queue):
    queue = make_queue()
    send_bodies(sqs, queue, ["a", "b", "c"])
    source = QueueSource.objects.create(url=queue, messages_received=42, oldest_age_seconds=7.5)
    page = operator.get(f"{ADMIN}/queuesource/{source.pk}/change/").content.decode()
    assert field_names(page) >= {"region", "enabled", "consumers"}
    assert not field_names(page) & {"url", "backlog", "in_flight", "messages_received", "last_error"}
    response = operator.post(
        f"{ADMIN}/queuesource/{source.pk}/change/",
        {"region": "us-east-1", "enabled": "on", "consumers": "3", "messages_received": "0", "backlog": "9"},
    )
    assert response.status_code == 302
    source.refresh_from_db()
    assert (source.consumers, source.messages_received, source.backlog) == (3, 42, None)

    listing = operator.post(
        f"{ADMIN}/queuesource/",
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(source.pk),
            "form-0-consumers": "2",
            "_save": "Save",
        },
    )
    assert listing.status_code == 302
    source.refresh_from_db()
    assert (source.enabled, source.consumers) == (False, 2)

    response = action(operator, "queuesource", "refresh_health", [source.pk])
    assert page_messages(response)[-1] == "Health refreshed for 1 queue(s)."
    source.refresh_from_db()
    assert (source.backlog, source.in_flight) == (3, 0)
    html = operator.get(f"{ADMIN}/queuesource/").content.decode()
    assert '<td class="field-oldest_age">7.5 s</td>' in html  # from the drain: 3 still wait


# --- Feed tokens and access rules ---------------------------------------------------------------


@pytest.mark.django_db
def test_feed_token_is_created_through_the_form_and_shown_once(operator):
    form = operator.get(f"{ADMIN}/feedtoken/add/").content.decode()
    assert field_names(form) >= {"name", "meetings"} and "token_hash" not in field_names(form)
    response = operator.post(f"{ADMIN}/feedtoken/add/", {"name": "wallboard", "meetings": "sales-*"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    raw = re.search(r'id="feed-token"[^>]*>(crt_[A-Za-z0-9_-]+)<', response.content.decode()).group(1)
    token = FeedToken.objects.get()
    assert (token.name, token.meetings, token.token_hash) == ("wallboard", "sales-*", token_hash(raw))
    assert access_for_token(raw=raw).globs == ("sales-*",)
    for url in (f"{ADMIN}/feedtoken/", f"{ADMIN}/feedtoken/{token.pk}/change/"):
        html = operator.get(url).content.decode()
        assert raw not in html and token.token_hash not in html and token.prefix in html

    response = action(operator, "feedtoken", "revoke", [token.pk])
    assert page_messages(response) == ["Revoked 1 token(s)."]
    assert access_for_token(raw=raw) is None


@pytest.mark.django_db
def test_feed_token_form_can_allow_minting_host_links(operator):
    assert "can_mint_host_links" in field_names(operator.get(f"{ADMIN}/feedtoken/add/").content.decode())
    operator.post(
        f"{ADMIN}/feedtoken/add/", {"name": "crm", "meetings": "sales-*", "can_mint_host_links": "on"}
    )
    operator.post(f"{ADMIN}/feedtoken/add/", {"name": "wallboard", "meetings": "*"})
    assert dict(FeedToken.objects.values_list("name", "can_mint_host_links")) == {
        "crm": True,
        "wallboard": False,
    }


@pytest.mark.django_db
def test_host_link_is_minted_through_the_form_shown_once_listed_and_revoked(operator):
    form = field_names(operator.get(f"{ADMIN}/hostlink/add/").content.decode())
    assert form - {"_save", "_continue", "_addanother"} == {"meetings", "hours", "label"}
    too_long = operator.post(f"{ADMIN}/hostlink/add/", {"meetings": "sales-emea", "hours": "25", "label": ""})
    assert too_long.status_code == 200 and "HOST_LINK_MAX_HOURS" in too_long.content.decode()
    assert not HostLink.objects.exists()

    response = operator.post(
        f"{ADMIN}/hostlink/add/", {"meetings": "sales-emea", "hours": "2", "label": HOSTILE}
    )
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    url = re.search(r'id="host-link-url"[^>]*>(http[^<]+)<', response.content.decode()).group(1)
    link = HostLink.objects.get()
    assert host_link_verify(value=url.partition("#")[2]) == link
    assert (link.meetings, link.label, link.created_by_user.username) == ("sales-emea", HOSTILE, "operator")
    _, minted_by_command = host_link_create(meetings="board")
    minter, _ = feed_token_create(name="crm", meetings="*", can_mint_host_links=True)
    host_link_create(meetings="sales-*", created_by_token=minter)

    listing = operator.get(f"{ADMIN}/hostlink/").content.decode()
    for column in ("label", "meetings", "creator", "created_at", "expires_at", "last_used_at", "revoked_at"):
        assert f'column-{column}"' in listing, column
    assert "user operator" in listing and "manage.py host_link" in listing and "token crm (crt_" in listing
    assert 'value="revoke"' in listing
    assert HOSTILE not in listing and "&lt;script&gt;" in listing
    detail = operator.get(f"{ADMIN}/hostlink/{link.pk}/change/").content.decode()
    for page in (listing, detail):
        for secret in (url.partition("#")[2], minted_by_command.partition("#")[2], link.secret_hash):
            assert secret not in page
    assert field_names(detail) == set()  # never edited: revoke and mint again

    response = action(operator, "hostlink", "revoke", [link.pk])
    assert page_messages(response) == ["Revoked 1 link(s)."]
    assert (
        host_link_live(link_id=link.pk) is None
        and HostLink.objects.filter(revoked_at__isnull=True).count() == 2
    )


@pytest.mark.django_db
def test_revoking_host_links_needs_the_change_permission(client):
    viewer = User.objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_hostlink"))
    client.force_login(viewer)
    link, _ = host_link_create(meetings="sales-emea")
    listing = client.get(f"{ADMIN}/hostlink/")
    assert listing.status_code == 200 and 'value="revoke"' not in listing.content.decode()
    action(client, "hostlink", "revoke", [link.pk])
    assert host_link_live(link_id=link.pk) is not None


@pytest.mark.django_db
def test_access_rules_are_managed_in_admin(operator):
    host = User.objects.create_user("host", password="pw-host-1")
    response = operator.post(f"{ADMIN}/accessrule/add/", {"user": host.pk, "meetings": "sales-*"})
    assert response.status_code == 302
    assert AccessRule.objects.get().meetings == "sales-*"


@pytest.mark.django_db
def test_admin_pages_refuse_non_staff(outsider):
    for model in ("meeting", "event", "quarantine", "queuesource", "feedtoken", "accessrule", "hostlink"):
        response = outsider.get(f"{ADMIN}/{model}/")
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), model
    response = outsider.post(f"{ADMIN}/feedtoken/add/", {"name": "x", "meetings": "*"})
    assert response.status_code == 302 and not FeedToken.objects.exists()
