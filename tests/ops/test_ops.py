"""/healthz and /metrics with real parts: the database, Redis, a moto server over HTTP as SQS, a
drain in another process and websockets through the real ASGI app."""

from __future__ import annotations

import time
import uuid

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from roster.dev.chime import as_bare, as_envelope, as_sns, meeting_stream
from roster.dev.processes import free_port
from roster.domain.repairs import Repairs, meeting_ended_repair
from roster.ingest import IncomingMessage, messages_ingest, repairs_ingest
from roster.models import QueueSource
from roster.ops import health, metrics
from tests.conftest import manage, send_bodies

MOTO_ACCOUNT = "123456789012"


@pytest.fixture(autouse=True)
def fresh_state():
    """No cached queue checks or Redis pause carried from one test to the next."""
    health.health_cache_clear()
    metrics._redis.reset()
    yield
    health.health_cache_clear()
    metrics._redis.reset()


def closed_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the exposition, None when absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def events(text: str, queue: str, type_: str, outcome: str) -> float | None:
    return sample(text, "chime_roster_events_total", queue=queue, type=type_, outcome=outcome)


# ---------------------------------------------------------------------------------------------
# /healthz

OPERATOR_TOKEN = "healthz-operator-token"


def healthz(client, *, operator: bool = True):
    """/healthz as an operator (the metrics token: the details) or as anyone (ok or fail per part)."""
    if not operator:
        return client.get("/healthz")
    with override_settings(METRICS_TOKEN=OPERATOR_TOKEN):
        return client.get("/healthz", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})


@pytest.mark.django_db
def test_healthz_tells_anyone_only_ok_or_fail_per_part(client, sqs, make_queue):
    good = make_queue()
    missing = good.rsplit("/", 1)[0] + f"/roster-test-missing-{uuid.uuid4().hex[:8]}"
    QueueSource.objects.create(url=good)
    assert healthz(client, operator=False).json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "queues": "ok"},
    }
    QueueSource.objects.create(url=missing)
    response = healthz(client, operator=False)
    assert response.status_code == 503
    assert response.json() == {
        "status": "fail",
        "checks": {"database": "ok", "redis": "ok", "queues": "fail"},
    }
    raw = response.content.decode()
    assert good.rsplit("/", 1)[-1] not in raw and "roster-test-missing" not in raw and "Error" not in raw
    with override_settings(METRICS_TOKEN=OPERATOR_TOKEN):  # a wrong token is anyone
        wrong = client.get("/healthz", headers={"Authorization": "Bearer nope"}).json()
    assert wrong["checks"]["queues"] == "fail"


@pytest.mark.django_db
def test_healthz_details_for_staff(client, sqs, make_queue, django_user_model):
    url = make_queue()
    QueueSource.objects.create(url=url)
    staff = django_user_model.objects.create_user("op", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get("/healthz").json()["checks"]["queues"] == [
        {"queue": url.rsplit("/", 1)[-1], "status": "ok"}
    ]


@pytest.mark.django_db
def test_healthz_all_good_names_queues_without_urls(client, sqs, make_queue):
    url = make_queue()
    QueueSource.objects.create(url=url)
    QueueSource.objects.create(url=f"{url}-disabled", enabled=False)  # not checked: not drained
    response = healthz(client)
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"status": "ok"}
    assert body["checks"]["redis"] == {"status": "ok"}
    assert body["checks"]["queues"] == [{"queue": url.rsplit("/", 1)[-1], "status": "ok"}]
    raw = response.content.decode()
    assert MOTO_ACCOUNT not in raw and "http" not in raw
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_healthz_missing_queue_is_503_with_a_class_name_only(client, sqs, make_queue):
    good = make_queue()
    missing = good.rsplit("/", 1)[0] + f"/roster-test-missing-{uuid.uuid4().hex[:8]}"
    QueueSource.objects.create(url=good)
    QueueSource.objects.create(url=missing)
    response = healthz(client)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    by_name = {q["queue"]: q for q in body["checks"]["queues"]}
    assert by_name[good.rsplit("/", 1)[-1]]["status"] == "ok"
    failed = by_name[missing.rsplit("/", 1)[-1]]
    assert failed["status"] == "fail"
    assert failed["error"].isidentifier()  # an exception class name, no message text
    assert MOTO_ACCOUNT not in response.content.decode()


@pytest.mark.django_db
def test_healthz_unreachable_endpoint_is_503(client):
    QueueSource.objects.create(url=f"https://sqs.us-east-1.amazonaws.com/{MOTO_ACCOUNT}/chime-events")
    with override_settings(AWS_ENDPOINT_URL_SQS=f"http://127.0.0.1:{free_port()}"):
        started = time.monotonic()
        response = healthz(client)
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    (queue,) = response.json()["checks"]["queues"]
    assert queue == {"queue": "chime-events", "status": "fail", "error": "EndpointConnectionError"}
    assert elapsed < 10  # short timeouts, one attempt


@pytest.mark.django_db
def test_healthz_redis_down_is_503(client):
    with override_settings(REDIS_URL=closed_redis_url()):
        response = healthz(client)
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"] == {"status": "fail", "error": "ConnectionError"}
    assert checks["database"] == {"status": "ok"}


@pytest.mark.django_db
def test_healthz_caches_queue_checks_for_a_few_seconds(client, sqs, make_queue):
    url = make_queue()
    QueueSource.objects.create(url=url)
    assert client.get("/healthz").status_code == 200
    sqs.delete_queue(QueueUrl=url)
    assert client.get("/healthz").status_code == 200  # cached: SQS was not asked again
    with override_settings(HEALTH_QUEUE_CACHE_SECONDS=0):
        assert client.get("/healthz").status_code == 503


# ---------------------------------------------------------------------------------------------
# /metrics: access


@pytest.mark.django_db
def test_metrics_needs_the_token_or_a_staff_session(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    with override_settings(METRICS_TOKEN=""):  # no token configured: no token works
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 401
    with override_settings(METRICS_TOKEN="s3cret-scrape-token"):
        refused = client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")
        assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
        ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
        assert ok.status_code == 200 and ok["Content-Type"].startswith("text/plain")
        assert b"chime_roster_metrics_store_up 1.0" in ok.content
    User.objects.create_user("host", password="pw-host-123456")
    client.login(username="host", password="pw-host-123456")
    assert client.get("/metrics").status_code == 401  # logged in, not staff
    User.objects.create_user("ops", password="pw-ops-123456", is_staff=True)
    client.login(username="ops", password="pw-ops-123456")
    assert client.get("/metrics").status_code == 200


# ---------------------------------------------------------------------------------------------
# /metrics: ingest counters, latency, backlog, sockets


def scrape(client) -> str:
    with override_settings(METRICS_TOKEN="t0ken"):
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken")
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_ingest_counters_and_latency_reach_metrics(client):
    """After each committed batch: applied / duplicate / quarantined by queue and type."""
    name = f"metrics-{uuid.uuid4().hex[:10]}"
    queue = f"https://sqs.eu-west-1.amazonaws.com/{MOTO_ACCOUNT}/{name}"
    details = meeting_stream(seed=300, attendees=2, end=False)
    joined = [d for d in details if d["eventType"] == "chime:AttendeeJoined"]
    before = sample(scrape(client), "chime_roster_ingest_batch_seconds_count") or 0.0

    first = [IncomingMessage(body=as_envelope(d), queue=queue) for d in details]
    poison = [IncomingMessage(body=b"{not json", queue=queue), IncomingMessage(body="[]", queue=queue)]
    messages_ingest(messages=first + poison)
    again = [IncomingMessage(body=as_sns(d), queue=queue) for d in joined]  # the same events, wrapped
    messages_ingest(messages=again)

    text = scrape(client)
    assert events(text, name, "AttendeeJoined", "applied") == len(joined)
    assert events(text, name, "AttendeeJoined", "duplicate") == len(joined)
    assert sample(text, "chime_roster_events_received_total", queue=name, type="AttendeeJoined") == 2 * len(
        joined
    )
    assert events(text, name, "MeetingStarted", "applied") == 1
    assert events(text, name, "not_json", "quarantined") == 1
    assert events(text, name, "not_object", "quarantined") == 1
    applied = sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "chime_roster_events_total" and s.labels.get("queue") == name
    )
    assert applied == len(details) + len(poison) + len(joined)
    after = sample(text, "chime_roster_ingest_batch_seconds_count")
    assert after >= before + 2  # other processes may ingest too; ours added two batches
    assert sample(text, "chime_roster_ingest_batch_seconds_bucket", le="+Inf") == after
    assert MOTO_ACCOUNT not in text


@pytest.mark.django_db(transaction=True)
def test_a_process_sends_its_counts_to_redis_by_itself_within_the_flush_interval():
    """No scrape in this process: its thread sends the batch's counts (the ingest does not wait on
    Redis), so a scrape served by another process (Daphne) sees them within the interval."""
    name = f"metrics-{uuid.uuid4().hex[:10]}"
    queue = f"https://sqs.eu-west-1.amazonaws.com/{MOTO_ACCOUNT}/{name}"
    details = meeting_stream(seed=304, attendees=1, end=False)[:2]
    messages_ingest(messages=[IncomingMessage(body=as_bare(d), queue=queue) for d in details])
    field = f"{name}\tMeetingStarted\tapplied\tchime"
    deadline = time.monotonic() + 10 * metrics.pending.FLUSH_SECONDS
    while (sent := metrics._redis.client().hget(metrics._key("events"), field)) is None:
        assert time.monotonic() < deadline, "the counts were not sent"
        time.sleep(0.05)
    assert int(sent) == 1


@pytest.mark.django_db(transaction=True)
def test_event_type_labels_are_bounded(client):
    """A producer inventing event types cannot create new series: they count as "other"."""
    name = f"metrics-{uuid.uuid4().hex[:10]}"
    hostile = [
        {"meetingId": "m-other", "eventType": f"chime:Invented{i}<x>", "timestamp": 1_700_000_000_000 + i}
        for i in range(5)
    ]
    before = events(scrape(client), "file", "other", "applied") or 0
    messages_ingest(messages=[IncomingMessage(body=as_bare(d), queue=f"file:{name}") for d in hostile])
    messages_ingest(messages=[IncomingMessage(body=as_bare(hostile[0]), queue=f"sns:arn:aws:sns:x:1:{name}")])
    text = scrape(client)
    assert "Invented" not in text
    assert events(text, f"sns:{name}", "other", "duplicate") == 1
    assert events(text, "file", "other", "applied") >= before + 5  # "file": one label for every file


@pytest.mark.django_db(transaction=True)
def test_a_message_the_database_refuses_counts_as_ingest_failed(client, database_refuses_boom):
    """The drain isolates a poison message by splitting the batch; the culprit counts once."""
    from roster.ingest import service

    name = f"metrics-{uuid.uuid4().hex[:10]}"
    queue = f"https://sqs.us-east-1.amazonaws.com/{MOTO_ACCOUNT}/{name}"
    details = meeting_stream(seed=303, attendees=1, end=False)[:3]
    batch = [IncomingMessage(body=as_bare(d).encode(), queue=queue) for d in details]
    batch.insert(1, IncomingMessage(body=as_bare({**details[0], "boom": 1}).encode(), queue=queue))
    result = service.messages_ingest_isolating(messages=batch)
    assert (result.applied, result.quarantined) == (3, 1)
    text = scrape(client)
    assert events(text, name, "ingest_failed", "quarantined") == 1
    assert events(text, name, "MeetingStarted", "applied") == 1


@pytest.mark.django_db(transaction=True)
def test_redis_down_never_fails_an_ingest_and_the_scrape_says_so(client):
    details = meeting_stream(seed=301, attendees=1, end=False)
    with override_settings(REDIS_URL=closed_redis_url()):
        result = messages_ingest(messages=[IncomingMessage(body=as_bare(d), queue="q") for d in details])
        assert result.applied == len(details)
        text = scrape(client)
    assert sample(text, "chime_roster_metrics_store_up") == 0
    assert sample(text, "chime_roster_events_total") is None
    assert sample(text, "chime_roster_websockets_connected", endpoint="feed") is not None  # rest answers


@pytest.mark.django_db
def test_queue_backlog_per_queue(client):
    name = f"backlog-{uuid.uuid4().hex[:8]}"
    QueueSource.objects.create(
        url=f"https://sqs.us-east-1.amazonaws.com/{MOTO_ACCOUNT}/{name}",
        backlog=42,
        in_flight=7,
        oldest_age_seconds=12.5,
    )
    QueueSource.objects.create(url=f"https://sqs.us-east-1.amazonaws.com/{MOTO_ACCOUNT}/{name}-new")
    text = scrape(client)
    assert sample(text, "chime_roster_queue_backlog_messages", queue=name) == 42
    assert sample(text, "chime_roster_queue_in_flight_messages", queue=name) == 7
    assert sample(text, "chime_roster_queue_oldest_message_age_seconds", queue=name) == 12.5
    assert sample(text, "chime_roster_queue_enabled", queue=f"{name}-new") == 1
    # not measured yet: no sample rather than a made-up 0
    assert sample(text, "chime_roster_queue_backlog_messages", queue=f"{name}-new") is None


@pytest.mark.postgres
@pytest.mark.sqs
def test_a_drain_in_another_process_is_counted(client, subprocess_env, sqs, make_queue):
    """The cross-process path: a drain_sqs process ingests, this process serves /metrics."""
    url = make_queue()
    name = url.rsplit("/", 1)[-1]
    details = meeting_stream(seed=302, attendees=2, end=False)
    send_bodies(sqs, url, [as_envelope(d) for d in details] + ["poison"])
    done = manage("drain_sqs", "--queue-url", url, "--until-empty", env=subprocess_env)
    assert done.returncode == 0, done.stderr
    text = scrape(client)
    total = sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "chime_roster_events_received_total" and s.labels.get("queue") == name
    )
    assert total == len(details) + 1
    assert events(text, name, "not_json", "quarantined") == 1
    assert events(text, name, "MeetingStarted", "applied") == 1


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_open_websockets_are_counted_until_they_close():
    from channels.db import database_sync_to_async

    from config.asgi import application

    def connected(endpoint: str) -> float | None:
        text = metrics.metrics_render().decode()
        return sample(text, "chime_roster_websockets_connected", endpoint=endpoint)

    render = database_sync_to_async(connected)
    base = await render("feed")
    sockets = []
    for _ in range(2):
        communicator = WebsocketCommunicator(application, "/ws/feed/")  # waits for an auth message
        ok, _ = await communicator.connect(timeout=5)
        assert ok
        sockets.append(communicator)
    assert await render("feed") == base + 2
    await sockets[0].disconnect()
    assert await render("feed") == base + 1
    for headers in (
        [(b"origin", b"https://evil.example")],  # refused by the Origin check
        [(b"authorization", b"Bearer crt_not-a-token")],  # refused by the consumer
    ):
        refused = WebsocketCommunicator(application, "/ws/feed/", headers=headers)
        ok, _ = await refused.connect(timeout=5)
        assert not ok
    assert await render("feed") == base + 1  # refused handshakes are never counted
    await sockets[1].disconnect()
    assert await render("feed") == base


@pytest.mark.django_db(transaction=True)
def test_repairs_count_as_applied_with_their_source(client):
    """A synthesized event is counted as applied under source "reconcile" (queue "reconcile");
    Chime's events under "chime"; a count stored before the source label reads as "chime"."""
    meeting_id = f"m-{uuid.uuid4().hex[:10]}"
    ingest_file_queue = f"file:{meeting_id}"
    text = scrape(client)
    before = sample(
        text, "chime_roster_events_total", queue="reconcile", type="MeetingEnded", source="reconcile"
    )
    messages_ingest(
        messages=[
            IncomingMessage(
                body=as_bare({"meetingId": meeting_id, "eventType": "chime:MeetingStarted", "timestamp": 5}),
                queue=ingest_file_queue,
            )
        ]
    )
    repairs_ingest(
        repairs=[
            Repairs(meeting_id=meeting_id, bodies=(meeting_ended_repair(meeting_id=meeting_id, timestamp=5),))
        ]
    )
    legacy = f"legacy-{uuid.uuid4().hex[:8]}"
    metrics._redis.client().hincrby(metrics._key("events"), f"{legacy}\tMeetingStarted\tapplied", 3)
    text = scrape(client)
    after = sample(
        text, "chime_roster_events_total", queue="reconcile", type="MeetingEnded", source="reconcile"
    )
    assert after == (before or 0) + 1
    assert sample(text, "chime_roster_events_total", queue="file", type="MeetingStarted", source="chime") >= 1
    assert sample(text, "chime_roster_events_total", queue=legacy, source="chime") == 3
