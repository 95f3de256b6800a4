"""Celery workers drain SQS: a real worker (start_worker) puts a queued message in the roster,
consumer slots are capped across workers through Redis, and SIGTERM stops a worker cleanly."""

from __future__ import annotations

import time

import pytest
import redis
from django.conf import settings

from roster.dev.chime import as_envelope, bodies, meeting_stream
from roster.models import Attendee, Event, QueueSource
from roster.sources.slots import DrainSupervisor, slot_key
from tests.conftest import (
    celery_worker_start,
    embedded_worker,
    expected,
    manage,
    queue_depth,
    send_bodies,
    stored,
)

pytestmark = [pytest.mark.postgres, pytest.mark.sqs]


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def fast_polls(settings):
    settings.SQS_WAIT_SECONDS = 1


@pytest.mark.django_db(transaction=True)
def test_celery_worker_drains_a_queue_into_the_roster(sqs, make_queue, fast_polls):
    queue = make_queue()
    QueueSource.objects.create(url=queue, consumers=1)
    details = meeting_stream(seed=50, attendees=3)
    meeting_id = details[0]["meetingId"]
    with embedded_worker():
        send_bodies(sqs, queue, [as_envelope(details[0])])
        wait_for(lambda: Event.objects.filter(meeting_id=meeting_id).exists())
        started = time.monotonic()
        join = {
            "meetingId": meeting_id,
            "attendeeId": "late-joiner",
            "externalUserId": "late@example.com",
            "eventType": "chime:AttendeeJoined",
            "timestamp": details[0]["timestamp"] + 1,
        }
        send_bodies(sqs, queue, [as_envelope(join)])
        wait_for(lambda: Attendee.objects.filter(meeting_id=meeting_id, presence="joined").exists())
        latency = time.monotonic() - started
        send_bodies(sqs, queue, bodies(details[1:], seed=50))
        wait_for(lambda: Event.objects.filter(meeting_id=meeting_id).count() == len(details) + 1)
    assert latency < 3.0  # long poll: the idle worker picks the message up at once
    assert stored(meeting_id) == expected([*details, join])
    assert queue_depth(sqs, queue) == (0, 0)
    source = QueueSource.objects.get(url=queue)
    assert source.last_poll_at is not None and source.messages_received == len(details) + 1


@pytest.mark.django_db(transaction=True)
def test_consumer_slots_are_capped_across_workers(sqs, make_queue, fast_polls):
    queue = make_queue()
    source = QueueSource.objects.create(url=queue, consumers=1)
    first = DrainSupervisor(slots_per_worker=2, wait_seconds=1)
    second = DrainSupervisor(slots_per_worker=2, wait_seconds=1)
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        first.tick()
        second.tick()
        assert list(first.held) == [(queue, 0)] and second.held == {}
        assert client.get(slot_key(queue, 0)).decode().startswith(first.owner)

        source.consumers = 3
        source.save()
        first.tick()  # takes slot 1 (its limit is 2 per queue)
        second.tick()  # takes the last one
        assert sorted(first.held) == [(queue, 0), (queue, 1)] and list(second.held) == [(queue, 2)]

        source.enabled = False
        source.save()
        first.tick()
        second.tick()
        assert first.held == {} and second.held == {}
        assert client.get(slot_key(queue, 0)) is None  # released for other workers
    finally:
        first.stop(timeout=30)
        second.stop(timeout=30)


@pytest.mark.slow
def test_sigterm_finishes_the_batch_in_hand_and_loses_nothing(subprocess_env, sqs, make_queue, processes):
    queue = make_queue(visibility_timeout=60)  # nothing may come back by timeout: the stop must be clean
    QueueSource.objects.create(url=queue, consumers=1)
    details = meeting_stream(seed=51, attendees=8)
    send_bodies(sqs, queue, bodies(details, seed=51))
    worker = celery_worker_start(processes, subprocess_env, loglevel="INFO")
    wait_for(lambda: Event.objects.exists(), timeout=60)
    processes.stop(worker)  # SIGTERM, up to 60 s to finish, else SIGKILL
    output = worker.log_path.read_text()
    assert worker.process.returncode == 0, output
    assert "finishing the batches in hand" in output
    handled = Event.objects.count()
    visible, in_flight = queue_depth(sqs, queue)
    assert in_flight == 0  # no batch was abandoned half-done
    assert handled + visible == len(details)
    rest = manage("drain_sqs", "--queue-url", queue, "--until-empty", env=subprocess_env)
    assert rest.returncode == 0, rest.stderr
    assert stored(details[0]["meetingId"]) == expected(details)
