"""Draining a real local SQS endpoint (moto server over HTTP): delete only after commit, poison
quarantined then deleted, transient failures delete nothing, two queues apply once, and a drain
killed with SIGKILL mid-batch loses nothing and applies nothing twice."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from django.conf import settings

from roster.dev.chime import as_envelope, as_sns, bodies, meeting_stream, shuffled_with_duplicates
from roster.models import Event, Quarantine
from roster.sources.sqs import queue_drain_once
from tests.conftest import ROOT, expected, manage, queue_depth, send_bodies, stored

pytestmark = pytest.mark.sqs

SUMMARY = re.compile(r"^received=(\d+) applied=(\d+) duplicates=(\d+) quarantined=(\d+)$", re.M)


def summary(output: str) -> tuple[int, int, int, int]:
    matches = SUMMARY.findall(output)
    assert matches, output
    return tuple(int(x) for x in matches[-1])  # type: ignore[return-value]


@pytest.mark.django_db(transaction=True)
def test_drain_ingests_commits_then_deletes_and_quarantines_poison(sqs, make_queue):
    queue = make_queue()
    details = meeting_stream(seed=20, attendees=3)
    raw = bodies(details, seed=20) + ['{"meetingId": "x" "eventType": 1}', "[]"]
    send_bodies(sqs, queue, raw)
    received = applied = 0
    for _ in range(50):
        result = queue_drain_once(client=sqs, queue_url=queue, wait_seconds=1)
        if not result.received:
            break
        received += result.received
        applied += result.applied
    assert received == len(raw) and applied == len(details)
    assert queue_depth(sqs, queue) == (0, 0)  # every message handled was deleted
    assert stored(details[0]["meetingId"]) == expected(details)
    poison = Quarantine.objects.order_by("reason_code")
    assert [q.reason_code for q in poison] == ["not_json", "not_object"]
    assert all(q.queue == queue and q.sqs_message_id for q in poison)


@pytest.mark.django_db(transaction=True)
def test_a_backlog_is_gathered_into_one_transaction_and_a_fresh_full_receive_is_not(
    sqs, make_queue, settings
):
    """Behind (the messages waited), one transaction takes up to SQS_BATCH_MESSAGES; keeping up
    (they are fresh), one receive is one transaction, with no receive that would come back empty."""
    details = meeting_stream(seed=21, attendees=12)[:25]
    raw = bodies(details, seed=21)
    settings.SQS_BATCH_MESSAGES = 20
    settings.SQS_GATHER_AFTER_SECONDS = 3600.0  # nothing has waited that long: keeping up
    fresh = make_queue()
    send_bodies(sqs, fresh, raw)
    assert queue_drain_once(client=sqs, queue_url=fresh, wait_seconds=1).received == 10
    assert queue_depth(sqs, fresh) == (15, 0)

    settings.SQS_GATHER_AFTER_SECONDS = 0.0  # everything counts as waiting: behind
    behind = make_queue()
    send_bodies(sqs, behind, raw)
    assert queue_drain_once(client=sqs, queue_url=behind, wait_seconds=1).received == 20  # the cap
    assert queue_drain_once(client=sqs, queue_url=behind, wait_seconds=1).received == 5  # the rest
    assert queue_depth(sqs, behind) == (0, 0)
    assert Event.objects.count() == len(details)  # each once, whichever queue brought it first


@pytest.mark.postgres
def test_database_down_deletes_nothing_then_everything_arrives(subprocess_env, sqs, make_queue):
    queue = make_queue(visibility_timeout=1)
    details = meeting_stream(seed=21, attendees=2)
    send_bodies(sqs, queue, bodies(details, seed=21))
    down = dict(subprocess_env, DATABASE_URL="postgres://postgres@127.0.0.1:9/nowhere")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "drain_sqs", "--queue-url", queue, "--wait-seconds", "1"],
        env=down,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert "nothing deleted" in err
    time.sleep(1.2)  # visibility timeout
    visible, in_flight = queue_depth(sqs, queue)
    assert visible + in_flight == len(details)
    assert Event.objects.count() == 0

    done = manage("drain_sqs", "--queue-url", queue, "--until-empty", env=subprocess_env)
    assert done.returncode == 0, done.stderr
    assert summary(done.stdout)[1] == len(details)
    assert stored(details[0]["meetingId"]) == expected(details)
    assert queue_depth(sqs, queue) == (0, 0)


@pytest.mark.postgres
def test_two_queues_shuffled_and_duplicated_give_the_ordered_roster(subprocess_env, sqs, make_queue):
    """The EventBridge queue and the SNS queue carry the same occurrences: applied once."""
    streams = [meeting_stream(seed=s, attendees=4) for s in (30, 31, 32)]
    details = [d for stream in streams for d in stream]
    eventbridge, sns = make_queue(), make_queue()
    raw_a = shuffled_with_duplicates([as_envelope(d) for d in details], seed=1)
    raw_b = shuffled_with_duplicates([as_sns(d) for d in details], seed=2)
    send_bodies(sqs, eventbridge, raw_a)
    send_bodies(sqs, sns, raw_b)
    run = manage(
        "drain_sqs",
        "--queue-url",
        eventbridge,
        "--queue-url",
        sns,
        "--until-empty",
        "--concurrency",
        "2",
        env=subprocess_env,
    )
    assert run.returncode == 0, run.stderr
    received, applied, duplicates, quarantined = summary(run.stdout)
    # SQS delivers at least once: concurrent consumers may receive a message twice. Every body
    # sent is received; any extra receipt is a duplicate, never a second application.
    assert received >= len(raw_a) + len(raw_b)
    assert applied == len(details) and quarantined == 0
    assert duplicates == received - applied
    assert Event.objects.count() == len(details)
    for stream in streams:
        assert stored(stream[0]["meetingId"]) == expected(stream)
    assert queue_depth(sqs, eventbridge) == (0, 0) and queue_depth(sqs, sns) == (0, 0)


def _drain_process(queue: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "drain_sqs", "--queue-url", queue, "--wait-seconds", "1"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _test_db_connect() -> psycopg.Connection:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]
    )


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.postgres
@pytest.mark.slow
def test_sigkill_mid_batch_loses_nothing_and_applies_nothing_twice(
    subprocess_env, sqs, make_queue, sqs_endpoint
):
    queue = make_queue(visibility_timeout=2)
    details = meeting_stream(seed=40, attendees=6)
    meeting_id = details[0]["meetingId"]
    send_bodies(sqs, queue, bodies(details, seed=40))

    # 1. Killed inside its transaction: hold the meeting row lock so the drain blocks mid-batch.
    from roster.models import Meeting

    Meeting.objects.create(meeting_id=meeting_id)
    with _test_db_connect() as blocker:
        blocker.execute("SELECT 1 FROM roster_meeting WHERE meeting_id = %s FOR UPDATE", [meeting_id])
        drain = _drain_process(queue, subprocess_env)

        def waiting_on_lock() -> bool:
            with _test_db_connect() as probe:
                row = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = %s",
                    [settings.DATABASES["default"]["NAME"]],
                ).fetchone()
                return row[0] > 0

        _wait_for(waiting_on_lock)
        drain.send_signal(signal.SIGKILL)
        drain.wait(10)
        blocker.rollback()
    assert Event.objects.count() == 0  # its transaction died with it

    # 2. Killed between commit and delete: freeze the SQS endpoint once a batch has committed.
    moto_pid = int(
        subprocess.run(
            ["pgrep", "-f", f"roster.dev.local_sqs -H 127.0.0.1 -p {sqs_endpoint.rsplit(':', 1)[1]}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[0]
    )
    drain = _drain_process(queue, subprocess_env)
    _wait_for(lambda: Event.objects.count() > 0)
    os.kill(moto_pid, signal.SIGSTOP)
    try:
        drain.send_signal(signal.SIGKILL)
        drain.wait(10)
    finally:
        os.kill(moto_pid, signal.SIGCONT)
    committed_before_restart = Event.objects.count()
    assert committed_before_restart > 0

    # 3. Restart after the visibility timeout: everything arrives, nothing twice.
    time.sleep(2.5)
    done = manage("drain_sqs", "--queue-url", queue, "--until-empty", env=subprocess_env)
    assert done.returncode == 0, done.stderr
    assert Event.objects.count() == len(details)
    assert stored(meeting_id) == expected(details)
    assert queue_depth(sqs, queue) == (0, 0)
    assert summary(done.stdout)[1] == len(details) - committed_before_restart


def test_background_deleter_deletes_after_close_and_survives_a_failing_delete(sqs, make_queue, caplog):
    """Deletes run off the drain thread: close() waits for them; a failure is logged (the message
    comes back and dedupes) and frees its place, so later deletes still go through."""
    from botocore.exceptions import ClientError

    from roster.sources.sqs import BackgroundDeleter, queue_receive

    queue = make_queue()
    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(10)])
    received = queue_receive(client=sqs, queue_url=queue, wait_seconds=1, max_messages=10)
    assert len(received) == 10

    class Refusing:
        def delete_message_batch(self, **kwargs):
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "DeleteMessageBatch"
            )

    deleter = BackgroundDeleter(threads=1, pending=1)
    deleter.submit(client=Refusing(), queue_url=queue, messages=received[:5])
    for message in received[5:]:  # one place only: each waits for the one before
        deleter.submit(client=sqs, queue_url=queue, messages=[message])
    deleter.close()
    assert "will be redelivered" in caplog.text
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "5"  # the refused five
