"""Draining a real local SQS endpoint (moto server over HTTP): delete only after commit, poison
quarantined then deleted (and once per message, however often SQS redelivers it), transient
failures delete nothing, two queues apply once, and a drain killed with SIGKILL mid-batch loses
nothing and applies or quarantines nothing twice."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
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
def test_a_poison_message_redelivered_after_a_crash_before_its_delete_is_quarantined_once(
    sqs, make_queue, monkeypatch
):
    """The crash window: the quarantine committed, the delete never happened, the message came
    back after its visibility timeout. One row per message, its deliveries counted; two messages
    with the same body are two messages (two MessageIds)."""
    from roster.sources import sqs as sqs_source

    queue = make_queue(visibility_timeout=2)
    poison = ['{"meetingId": "x" "eventType": 1}', "[]", "[]"]
    send_bodies(sqs, queue, poison)
    real_delete = sqs_source.queue_delete
    monkeypatch.setattr(sqs_source, "queue_delete", lambda **kwargs: None)  # dies before its delete
    first = queue_drain_once(client=sqs, queue_url=queue, wait_seconds=1)
    assert (first.received, first.quarantined) == (3, 3)
    assert queue_depth(sqs, queue) == (0, 3)  # in flight, not deleted
    monkeypatch.setattr(sqs_source, "queue_delete", real_delete)

    time.sleep(2.2)  # the visibility timeout: SQS delivers all three again
    again = queue_drain_once(client=sqs, queue_url=queue, wait_seconds=2)
    assert (again.received, again.quarantined) == (3, 3)  # messages, as drain_sqs prints them
    assert queue_depth(sqs, queue) == (0, 0)
    rows = list(Quarantine.objects.order_by("reason_code", "sqs_message_id"))
    assert [(q.reason_code, q.deliveries) for q in rows] == [
        ("not_json", 2),
        ("not_object", 2),
        ("not_object", 2),
    ]
    assert len({q.sqs_message_id for q in rows}) == 3
    assert all(q.queue == queue and q.last_received_at > q.received_at for q in rows)


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
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    _wait_for(lambda: any("nothing deleted" in line for line in lines))  # a batch failed
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    reader.join(10)
    assert "nothing deleted" in "".join(lines)
    _wait_for(lambda: queue_depth(sqs, queue)[1] == 0)  # the visibility timeout
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
    # A message left in flight means a batch failed transiently (it is kept, and comes back after
    # the visibility timeout): the drain's log says which failure it was.
    assert queue_depth(sqs, eventbridge) == (0, 0) and queue_depth(sqs, sns) == (0, 0), run.stderr


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


class SwallowingProxy:
    """A TCP proxy to the SQS endpoint. Once ``swallow`` is set, whatever a client sends is dropped
    unanswered (the client waits for an answer that never comes); on leaving, every connection is
    closed. A request swallowed is never carried out."""

    def __init__(self, endpoint: str) -> None:
        host, port = endpoint.rsplit("/", 1)[-1].rsplit(":", 1)
        self.target = (host, int(port))
        self.swallow = threading.Event()
        self.swallowed = threading.Event()  # a request was dropped
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.sockets: list[socket.socket] = [self.server]

    def __enter__(self) -> SwallowingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        try:
            while data := source.recv(65536):
                if not (requests and self.swallow.is_set()):
                    sink.sendall(data)
                elif b"DeleteMessage" in data:
                    self.swallowed.set()
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_sigkill_mid_batch_loses_nothing_and_applies_nothing_twice(
    subprocess_env, sqs, make_queue, sqs_endpoint
):
    queue = make_queue(visibility_timeout=3)
    details = meeting_stream(seed=40, attendees=6)
    meeting_id = details[0]["meetingId"]
    # Poison first: every batch of this test carries it (moto hands out messages in order).
    poison = ['{"meetingId": "x" "eventType": 1}', "[]", "[]"]
    send_bodies(sqs, queue, poison + bodies(details, seed=40))

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
    assert Event.objects.count() == 0 and Quarantine.objects.count() == 0  # its transaction died with it

    # 2. Killed between commit and delete. Once every message is visible again (so the first
    # receive is not the poison alone, which would commit and be deleted without waiting on the
    # lock), the drain, talking to SQS through the proxy, waits on the meeting's lock with its
    # batch (poison quarantined in it) in hand; the proxy freezes, the lock goes, the batch
    # commits and its delete is swallowed: then SIGKILL. (SIGSTOP on the endpoint would not do:
    # the delete waits in its socket and is carried out when it resumes.)
    _wait_for(lambda: queue_depth(sqs, queue) == (len(poison) + len(details), 0))
    with _test_db_connect() as blocker, SwallowingProxy(sqs_endpoint) as proxy:
        blocker.execute("SELECT 1 FROM roster_meeting WHERE meeting_id = %s FOR UPDATE", [meeting_id])
        drain = _drain_process(queue, dict(subprocess_env, AWS_ENDPOINT_URL_SQS=proxy.url))
        _wait_for(waiting_on_lock)
        proxy.swallow.set()
        blocker.rollback()
        _wait_for(lambda: Event.objects.count() > 0)
        assert proxy.swallowed.wait(30)  # the delete was sent (and swallowed)
        drain.send_signal(signal.SIGKILL)
        drain.wait(10)
    assert sum(queue_depth(sqs, queue)) == len(poison) + len(details)  # nothing deleted
    committed_before_restart = Event.objects.count()
    assert committed_before_restart > 0
    assert Quarantine.objects.count() == len(poison)  # committed, not deleted: they come back

    # 3. Restart after the visibility timeout: everything arrives, nothing twice.
    _wait_for(lambda: queue_depth(sqs, queue) == (len(poison) + len(details), 0))
    done = manage("drain_sqs", "--queue-url", queue, "--until-empty", env=subprocess_env)
    assert done.returncode == 0, done.stderr
    assert Event.objects.count() == len(details)
    assert stored(meeting_id) == expected(details)
    assert queue_depth(sqs, queue) == (0, 0)
    assert summary(done.stdout)[1] == len(details) - committed_before_restart
    # Redelivered poison is counted on its row: one row per poison message, never one per delivery.
    assert summary(done.stdout)[3] == len(poison)  # quarantined= counts the messages received
    assert Quarantine.objects.count() == len(poison)
    assert sorted(Quarantine.objects.values_list("deliveries", flat=True)) == [2] * len(poison)


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
