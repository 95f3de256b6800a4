"""Delivering the outbox (roster.hooks.delivery) to real receivers: an HTTP server on loopback
that checks signatures with docs/hooks.md's own example, and SNS and SQS on the local endpoint
(moto server over HTTP). Retries, order, the circuit breaker, dead deliveries, SSRF refusals."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from roster.dev.chime import as_bare, detail
from roster.hooks.delivery import deliveries_run, delivery_redeliver
from roster.hooks.services import HookRefused, hook_create, hook_secret_rotate
from roster.hooks.targets import TargetRefused, target_parse
from roster.models import Hook, HookDelivery, HookPayload
from tests.conftest import ingest

pytestmark = pytest.mark.django_db


def changes(meeting_id: str, n: int, *, start: int = 0) -> None:
    """``n`` committed changes of one meeting (seq 1..n from a fresh meeting): one join each."""
    for i in range(start, start + n):
        events = [as_bare(detail("MeetingStarted", meeting_id, ts=1))] if i == 0 else []
        ingest([*events, as_bare(detail("AttendeeJoined", meeting_id, f"a{i}", ts=10 + i))])


def run_until(predicate, *, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "deliveries did not settle"
        deliveries_run(seconds=1.0)
        time.sleep(0.02)


def settled() -> bool:
    """Nothing left to fan out, nothing pending."""
    waiting = HookPayload.objects.filter(fanned=False)
    return not (waiting.exists() or HookDelivery.objects.filter(status="pending").exists())


def test_a_signed_delivery_verifies_with_the_documented_example(hook_settings, receiver):
    hook, secret = hook_create(name="h", target=receiver.url)
    receiver.secrets = [secret]
    changes("m-sig", 2)
    run_until(settled)
    assert [r.json["meeting"]["seq"] for r in receiver.received] == [1, 2]
    assert all(r.verified for r in receiver.received)
    rows = list(HookDelivery.objects.filter(hook=hook).order_by("seq"))
    assert [r.delivery_id for r in rows] == [r.delivery_id for r in receiver.received]
    assert [r.json["id"] for r in receiver.received] == [r.delivery_id for r in rows]
    assert all(r.status == "delivered" and r.last_status_code == 200 and r.attempts == 1 for r in rows)
    receiver.secrets = ["whsec_someone-else"]
    changes("m-sig", 1, start=2)
    run_until(
        lambda: receiver.received[-1].json["meeting"]["seq"] == 3 and not receiver.received[-1].verified
    )
    assert HookDelivery.objects.get(hook=hook, seq=3).last_status_code == 401  # refused: retried


def test_during_a_rotation_both_secrets_sign(hook_settings, receiver):
    hook, old = hook_create(name="h", target=receiver.url)
    new = hook_secret_rotate(hook=hook)
    changes("m-rot", 1)
    for secrets in ([old], [new]):  # a receiver that knows either one accepts
        receiver.secrets = secrets
        before = len(receiver.received)
        run_until(lambda before=before: len(receiver.received) > before)
        assert receiver.received[-1].verified
        HookDelivery.objects.update(status="pending")
    assert receiver.received[-1].signature.count("v1=") == 2
    hook_secret_rotate(hook=hook, hours=0)
    hook.refresh_from_db()
    assert not hook.previous_secret


def test_a_receiver_that_fails_for_a_while_gets_everything_in_order(hook_settings, receiver):
    hook, secret = hook_create(name="h", target=receiver.url)
    receiver.secrets = [secret]
    receiver.status = lambda n: 503 if n <= 4 or n % 3 == 0 else 204
    changes("m-1", 5)
    changes("m-2", 3)
    run_until(settled, seconds=20)
    for meeting_id, n in (("m-1", 5), ("m-2", 3)):
        got = [r for r in receiver.received if r.json["meeting"]["meeting_id"] == meeting_id]
        seqs = [r.json["meeting"]["seq"] for r in got]
        assert seqs == sorted(seqs) and set(seqs) == set(range(1, n + 1))  # in order, every one
        ids = {}
        for r in got:  # a repeat carries the same delivery id
            assert ids.setdefault(r.json["meeting"]["seq"], r.delivery_id) == r.delivery_id
    assert len(receiver.received) > 8
    rows = HookDelivery.objects.filter(hook=hook)
    assert all(r.status == "delivered" for r in rows) and max(r.attempts for r in rows) > 1


def test_the_breaker_opens_probes_and_mends(hook_settings, receiver):
    hook_settings.HOOKS_BREAKER_FAILURES = 2
    hook_settings.HOOKS_BREAKER_COOLDOWN_SECONDS = 0.5
    hook, secret = hook_create(name="h", target=receiver.url)
    receiver.secrets = [secret]
    failing = True
    receiver.status = lambda n: 500 if failing else 200
    changes("m-b", 1)
    changes("m-c", 1)
    run_until(lambda: Hook.objects.get(pk=hook.pk).broken_at is not None)
    hook.refresh_from_db()
    assert "HTTP 500" in hook.broken_reason and hook.consecutive_failures >= 2
    tried = len(receiver.received)
    deliveries_run(seconds=0.2)
    assert len(receiver.received) == tried  # broken: nothing until the cool-down ends
    time.sleep(0.55)
    deliveries_run(seconds=0.2)
    assert len(receiver.received) == tried + 1  # one probe
    failing = False
    time.sleep(0.55)
    run_until(settled)
    hook.refresh_from_db()
    assert hook.broken_at is None and hook.consecutive_failures == 0
    assert {r.json["meeting"]["meeting_id"] for r in receiver.received[-2:]} == {"m-b", "m-c"}


def test_a_dead_delivery_is_kept_and_can_be_redelivered(hook_settings, receiver):
    hook_settings.HOOKS_RETRY_HOURS = 0  # the first failure is the last
    hook, secret = hook_create(name="h", target=receiver.url)
    receiver.secrets = [secret]
    receiver.status = lambda n: 500 if n == 1 else 200
    changes("m-d", 2)
    run_until(settled)
    first, second = HookDelivery.objects.filter(hook=hook).order_by("seq")
    assert (first.status, second.status) == ("dead", "delivered") and first.last_status_code == 500
    hook_settings.HOOKS_RETRY_HOURS = 24
    assert delivery_redeliver(delivery=first)
    run_until(settled)
    first.refresh_from_db()
    assert first.status == "delivered" and first.attempts == 2
    assert receiver.received[-1].delivery_id == first.delivery_id


def test_paused_hooks_queue_and_send_on_resume(hook_settings, receiver):
    hook, secret = hook_create(name="h", target=receiver.url)
    receiver.secrets = [secret]
    Hook.objects.filter(pk=hook.pk).update(enabled=False)
    changes("m-p", 2)
    deliveries_run(seconds=0.2)
    assert not receiver.received and HookDelivery.objects.filter(status="pending").count() == 2
    Hook.objects.filter(pk=hook.pk).update(enabled=True)
    run_until(settled)
    assert [r.json["meeting"]["seq"] for r in receiver.received] == [1, 2]


@pytest.mark.parametrize(
    "target",
    [
        "http://hooks.example.com/in",  # plain http off loopback
        "https://10.0.0.7/in",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/in",
        "https://user:pw@hooks.example.com/in",
        "ftp://hooks.example.com/in",
    ],
)
def test_forged_targets_are_refused_when_set(settings, target):
    settings.HOOKS_ALLOW_HTTP_LOOPBACK = False
    with pytest.raises(HookRefused):
        hook_create(name="x", target=target)


def test_aws_targets_are_for_operators_only(settings):
    with pytest.raises(TargetRefused, match="operators"):
        target_parse(target="sns:arn:aws:sns:us-east-1:123456789012:t", operator=False)
    assert target_parse(target="sqs:https://sqs.eu-west-1.amazonaws.com/1/q", operator=True).kind == "sqs"


def test_a_name_that_resolves_to_loopback_is_refused_at_delivery(hook_settings, receiver):
    hook, secret = hook_create(name="h", target=receiver.url.replace("127.0.0.1", "localhost"))
    hook_settings.HOOKS_ALLOW_HTTP_LOOPBACK = False  # set while it was allowed, refused now
    Hook.objects.filter(pk=hook.pk).update(target=hook.target.replace("http://", "https://"))
    changes("m-s", 1)
    deliveries_run(seconds=0.5)
    row = HookDelivery.objects.get()
    assert row.status == "pending" and row.attempts == 1 and "loopback" in row.last_error
    assert not receiver.received


def test_sns_topic_to_sqs_subscription_and_an_sqs_target(
    hook_settings, sqs_endpoint, make_queue, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", sqs_endpoint)
    sns = boto3.client("sns", region_name="us-east-1", endpoint_url=sqs_endpoint)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=sqs_endpoint)
    topic = sns.create_topic(Name="roster-hooks-test")["TopicArn"]
    subscribed, direct = make_queue(), make_queue()
    arn = sqs.get_queue_attributes(QueueUrl=subscribed, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"events": ["attendee.left"]})},
    )
    hook_create(name="topic", target=f"sns:{topic}")
    hook_create(name="queue", target=f"sqs:{direct}")
    changes("m-aws", 2)
    ingest([as_bare(detail("AttendeeLeft", "m-aws", "a0", ts=50))])
    run_until(settled)
    got = sqs.receive_message(QueueUrl=subscribed, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert [json.loads(m["Body"])["events"] for m in got] == [["attendee.left"]]  # the filter policy
    seqs = []
    while len(seqs) < 3:
        answer = sqs.receive_message(
            QueueUrl=direct, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        for m in answer.get("Messages", []):
            body = json.loads(m["Body"])
            assert json.loads(m["MessageAttributes"]["events"]["StringValue"]) == body["events"]
            assert m["MessageAttributes"]["delivery_id"]["StringValue"] == body["id"]
            seqs.append(body["meeting"]["seq"])
    assert sorted(seqs) == [1, 2, 3]


def test_deliveries_to_one_receiver_share_one_keep_alive_connection(hook_settings, receiver):
    hook, secret = hook_create(name="h", target=receiver.url)
    receiver.secrets = [secret]
    changes("m-ka", 3)
    run_until(settled)
    assert [r.json["meeting"]["seq"] for r in receiver.received] == [1, 2, 3]
    assert len({r.peer for r in receiver.received}) == 1


def test_a_connection_the_receiver_closed_while_idle_is_replaced_not_counted_as_a_failure(
    hook_settings, receiver
):
    hook, secret = hook_create(name="h", target=receiver.url)
    receiver.secrets = [secret]
    receiver.hang_up = True  # each pooled connection is dead by the next delivery
    changes("m-idle", 3)
    run_until(settled)
    assert [r.json["meeting"]["seq"] for r in receiver.received] == [1, 2, 3]
    assert len({r.peer for r in receiver.received}) == 3
    rows = HookDelivery.objects.filter(hook=hook)
    assert {(r.status, r.attempts, r.last_error) for r in rows} == {("delivered", 1, "")}


def test_while_a_kick_waits_in_the_broker_more_kicks_send_no_task(hook_settings):
    """However fast batches commit, one delivery task waits at most; a run starting takes the
    mark down, so the next batch kicks again (its run is the one that will see it)."""
    from celery import current_app

    from roster.hooks.delivery import deliveries_kick

    def queued() -> int:
        with current_app.connection_for_write() as connection:
            return connection.default_channel.queue_declare(queue="celery").message_count

    def wait_for_queued(count: int) -> None:
        deadline = time.monotonic() + 5
        while queued() != count:
            assert time.monotonic() < deadline, f"{queued()} tasks queued, not {count}"
            time.sleep(0.02)

    with current_app.connection_for_write() as connection:
        connection.default_channel.queue_purge("celery")
    for _ in range(5):
        deliveries_kick()
        time.sleep(0.05)
    wait_for_queued(1)
    time.sleep(0.3)
    assert queued() == 1
    deliveries_run(seconds=0.1)  # what the queued task does first: the mark comes down
    deliveries_kick()
    wait_for_queued(2)


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(hook_settings, receiver):
    """No DNS rebinding window: the name is never resolved again after the check (``.invalid``
    never resolves at all), and the request still names it in ``Host``."""
    from roster.hooks.delivery import _PinnedHTTPConnection

    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    connection = _PinnedHTTPConnection("rebind.invalid", port, address="127.0.0.1", timeout=2)
    try:
        connection.request("POST", "/hook", body=b"{}", headers={"X-Roster-Delivery": "d"})
        assert connection.getresponse().status == 401  # reached the receiver (unsigned: refused)
    finally:
        connection.close()
    assert (receiver.received[-1].delivery_id, receiver.received[-1].host) == ("d", f"rebind.invalid:{port}")


def test_a_receiver_that_drips_its_answer_is_cut_off_before_the_lease_ends(hook_settings):
    """Each byte comes within the timeout, so only the attempt's own deadline (twice the timeout,
    inside the lease) ends it: no other worker can take the delivery while it still runs."""
    import socket
    import threading

    from roster.hooks.delivery import lease_seconds

    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            if stop.wait(0.3):
                break
            try:
                conn.send(bytes([byte]))
            except OSError:
                break
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    hook_create(name="h", target=f"http://127.0.0.1:{server.getsockname()[1]}/")
    changes("m-drip", 1)
    started = time.monotonic()
    deliveries_run(seconds=0.5)
    took = time.monotonic() - started
    stop.set()
    server.close()
    row = HookDelivery.objects.get()
    assert row.status == "pending" and row.attempts == 1 and row.last_error
    assert 2 * hook_settings.HOOKS_TIMEOUT_SECONDS <= took < lease_seconds()
