"""The ingest service against a real database (SQLite or PostgreSQL): dedupe, quarantine, the
incremental fold held to the whole fold, seq, and the after-commit broadcast hook."""

from __future__ import annotations

import json
import random

import pytest

from roster.dev.chime import (
    BASE_TS,
    as_bare,
    as_envelope,
    as_json,
    as_sns,
    bodies,
    detail,
    envelope,
    meeting_stream,
    shuffled_with_duplicates,
)
from roster.ingest import IncomingMessage, hooks, messages_ingest, messages_ingest_isolating
from roster.live.broadcast import changes_committed
from roster.models import Attendee, Event, Meeting, Quarantine, VoiceConnectorStream
from roster.ops.metrics import ingest_committed
from tests.conftest import expected, ingest, stored

pytestmark = pytest.mark.django_db


def ingest_in_random_batches(raw: list[str], *, seed: int, sizes: list[int]) -> None:
    """Ingest ``raw`` in order, in consecutive batches of (seeded) random sizes from ``sizes``."""
    rng = random.Random(seed)
    position = 0
    while position < len(raw):
        size = rng.choice(sizes)
        ingest(raw[position : position + size])
        position += size


def test_ordered_stream_builds_the_roster():
    details = meeting_stream(seed=1)
    result = ingest(bodies(details, seed=1))
    meeting_id = details[0]["meetingId"]
    assert result.applied == len(details)
    assert result.duplicates == result.quarantined == 0
    assert stored(meeting_id) == expected(details)
    meeting = Meeting.objects.get(pk=meeting_id)
    assert meeting.status == "ended" and meeting.transcription == "resumed"
    assert meeting.pipelines == {"pipe-1": "deleted"} and not meeting.recording
    assert meeting.peak_joined == 6


@pytest.mark.parametrize("seed", range(12))
def test_any_arrival_order_and_batching_gives_the_whole_fold(seed):
    """Random order, duplicates and batch sizes: the incremental path equals the whole fold."""
    details = meeting_stream(seed=seed, attendees=5, end=seed % 3 != 0)
    raw = shuffled_with_duplicates(bodies(details, seed=seed), seed=seed)
    ingest_in_random_batches(raw, seed=seed, sizes=[1, 2, 3, 10, 25])
    assert stored(details[0]["meetingId"]) == expected(details)
    assert Event.objects.count() == len(details)


@pytest.mark.parametrize("seed", range(4))
def test_batches_spanning_meetings_that_end_and_go_on_give_each_its_whole_fold(seed):
    """One meeting's end and another's touched rows in the same batches: the row loading reads
    every row of the one and only the touched rows of the other, and each equals its whole fold."""
    streams = [
        meeting_stream(seed=seed, attendees=5, end=True),
        meeting_stream(seed=seed + 50, attendees=8, end=seed % 2 == 0),
    ]
    raw = shuffled_with_duplicates(bodies(streams[0], seed=seed) + bodies(streams[1], seed=seed), seed=seed)
    ingest_in_random_batches(raw, seed=seed, sizes=[4, 10, 25])
    for details in streams:
        assert stored(details[0]["meetingId"]) == expected(details)
    assert Event.objects.count() == sum(len(details) for details in streams)


def attendee_joins(meeting_id: str, offsets: range | list[int]) -> list[str]:
    return [
        as_json(envelope(detail("AttendeeJoined", meeting_id, f"att-{n}", BASE_TS + n * 10))) for n in offsets
    ]


@pytest.mark.parametrize("seed", range(3))
def test_a_join_burst_out_of_order_into_a_full_meeting_gives_the_whole_fold(seed):
    """250 joins (Chime's cap), shuffled, in drain-sized batches: peak and count exact."""
    meeting_id = f"m-burst-{seed}"
    joins = attendee_joins(meeting_id, range(250))
    random.Random(seed).shuffle(joins)
    ingest_in_random_batches(joins, seed=seed, sizes=[10, 30, 100])
    meeting = Meeting.objects.get(pk=meeting_id)
    assert (meeting.peak_joined, meeting.joined_count, meeting.seq > 0) == (250, 250, True)


def test_a_meeting_stored_before_its_peak_marks_is_swept_once_then_counted():
    meeting_id = "m-before-marks"
    ingest(attendee_joins(meeting_id, range(1, 41)))
    Meeting.objects.filter(pk=meeting_id).update(peak_marks=None)  # as migration 0007 leaves it
    left = as_json(envelope(detail("AttendeeLeft", meeting_id, "att-5", BASE_TS + 5 * 10 + 1)))
    ingest([left, *attendee_joins(meeting_id, [41])])
    meeting = Meeting.objects.get(pk=meeting_id)
    assert (meeting.peak_joined, meeting.joined_count) == (40, 40)  # att-5 left before att-41 joined
    assert meeting.peak_marks == {"last": [BASE_TS + 410, 3], "at": [BASE_TS + 410, 3]}
    ingest(attendee_joins(meeting_id, [42]))
    meeting = Meeting.objects.get(pk=meeting_id)
    assert (meeting.peak_joined, meeting.joined_count) == (41, 41)
    assert meeting.peak_marks == {"last": [BASE_TS + 420, 3], "at": [BASE_TS + 420, 3]}


def test_in_order_one_by_one_equals_whole_fold():
    """Each event alone, in time order: the advance-in-place path for every row."""
    details = meeting_stream(seed=99, attendees=4)
    for body in bodies(details, seed=99):
        ingest([body])
    assert stored(details[0]["meetingId"]) == expected(details)


def test_duplicates_across_envelopes_are_counted_not_applied():
    details = meeting_stream(seed=3, attendees=3)
    first = ingest([as_envelope(d) for d in details])
    again = ingest([as_sns(d) for d in details] + [as_bare(d) for d in details])
    assert first.applied == len(details)
    assert again.applied == 0 and again.duplicates == 2 * len(details)
    assert Event.objects.count() == len(details)
    assert set(Event.objects.values_list("duplicate_count", flat=True)) == {2}
    assert stored(details[0]["meetingId"]) == expected(details)


def test_duplicates_within_one_batch():
    detail = meeting_stream(seed=4, attendees=1)[3]
    result = ingest([as_envelope(detail), as_sns(detail), as_bare(detail)])
    assert (result.applied, result.duplicates) == (1, 2)
    assert Event.objects.get().duplicate_count == 2


BAD_BODIES = {
    "not_json": '{"meetingId": "m" "eventType": "chime:AttendeeJoined"}',
    "not_object": "[1, 2]",
    "wrong_source": json.dumps({"source": "aws.s3", "detail-type": "x", "detail": {}}),
    "missing_field": json.dumps({"eventType": "chime:AttendeeJoined", "timestamp": 1}),
    "bad_field": json.dumps({"meetingId": "m", "eventType": "chime:AttendeeJoined", "timestamp": "1"}),
    "unrecognised": json.dumps({"hello": "world"}),
}


def test_every_rejection_is_quarantined_and_valid_messages_in_the_batch_are_kept(settings):
    settings.MAX_MESSAGE_BYTES = 4096
    settings.CHIME_ALLOWED_ACCOUNTS = ["111122223333"]
    details = meeting_stream(seed=5, attendees=2)
    bad = dict(BAD_BODIES)
    bad["too_large"] = json.dumps({"meetingId": "m", "pad": "x" * 5000})
    bad["account_not_allowed"] = as_envelope(details[0], account="999999999999")
    raw = [*bad.values(), *bodies(details, seed=5, wrap=as_envelope)]
    random.Random(5).shuffle(raw)
    result = messages_ingest(
        messages=[IncomingMessage(body=b, queue="q", message_id=f"m{i}") for i, b in enumerate(raw)]
        + [IncomingMessage(body=b"\xff\xfe not utf-8", queue="q", message_id="bytes")]
    )
    assert result.quarantined == len(bad) + 1
    assert result.applied == len(details)
    codes = sorted(Quarantine.objects.values_list("reason_code", flat=True))
    assert codes == sorted([*bad, "not_utf8"])
    large = Quarantine.objects.get(reason_code="too_large")
    assert large.body_size > 4096 and bytes(large.body).startswith(b'{"meetingId"')
    assert Quarantine.objects.get(reason_code="not_utf8").body == b"\xff\xfe not utf-8"
    assert all(q.reason and q.queue == "q" and q.sqs_message_id for q in Quarantine.objects.all())
    assert stored(details[0]["meetingId"]) == expected(details)


def test_oversize_body_keeps_its_first_64_kib(settings):
    settings.MAX_MESSAGE_BYTES = 1024
    body = "y" * (100 * 1024)
    ingest([body])
    row = Quarantine.objects.get()
    assert row.truncated and row.body_size == 100 * 1024 and len(bytes(row.body)) == 64 * 1024


POISON = '{"meetingId": "x" "eventType": 1}'
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/chime-events"


def quarantined() -> dict[tuple[str, str], int]:
    """(queue, message id) -> deliveries of each quarantine row."""
    return {(q.queue, q.sqs_message_id): q.deliveries for q in Quarantine.objects.all()}


def test_a_redelivered_sqs_message_is_one_quarantine_row_counting_its_deliveries():
    """Quarantined, then the delete lost (a crash): SQS delivers the same MessageId again. A
    second message with the same body is another message: its own row."""
    message = IncomingMessage(body=POISON, queue=QUEUE_URL, message_id="id-1", keyed_by_id=True)
    twin = IncomingMessage(body=POISON, queue=QUEUE_URL, message_id="id-2", keyed_by_id=True)
    assert messages_ingest(messages=[message]).quarantined == 1
    assert messages_ingest(messages=[message, twin]).quarantined == 2  # messages, not rows
    assert messages_ingest(messages=[message, message]).quarantined == 2  # twice in one batch
    assert quarantined() == {(QUEUE_URL, "id-1"): 4, (QUEUE_URL, "id-2"): 1}
    row = Quarantine.objects.get(sqs_message_id="id-1")
    assert row.last_received_at > row.received_at and row.reason_code == "not_json"


def test_without_a_delivery_id_a_message_is_its_source_and_body():
    """A file (or the SNS endpoint) has no id that survives a retry: the body's digest, within its
    source, is the message. A file ingested twice is one row per bad body."""
    lines = [
        IncomingMessage(body=POISON, queue="file:a.jsonl", message_id="line:1"),
        IncomingMessage(body="[]", queue="file:a.jsonl", message_id="line:2"),
    ]
    assert messages_ingest(messages=lines).quarantined == 2
    assert messages_ingest(messages=lines).quarantined == 2
    messages_ingest(messages=[IncomingMessage(body=POISON, queue="file:b.jsonl", message_id="line:1")])
    assert quarantined() == {
        ("file:a.jsonl", "line:1"): 2,
        ("file:a.jsonl", "line:2"): 2,
        ("file:b.jsonl", "line:1"): 1,
    }


def test_the_digest_is_of_the_whole_body_not_of_the_kept_64_kib(settings):
    settings.MAX_MESSAGE_BYTES = 1024
    head = "y" * (100 * 1024)
    ingest([head + "a", head + "b", head + "a"])
    assert sorted(Quarantine.objects.values_list("deliveries", flat=True)) == [1, 2]


def test_a_message_the_database_refuses_again_after_a_redelivery_is_one_row(database_refuses_boom):
    details = meeting_stream(seed=77, attendees=1, end=False)[:2]
    poison = IncomingMessage(
        body=as_bare({**details[0], "boom": 1}).encode(), queue=QUEUE_URL, message_id="p", keyed_by_id=True
    )
    batch = [
        IncomingMessage(
            body=as_bare(details[0]).encode(), queue=QUEUE_URL, message_id="ok", keyed_by_id=True
        ),
        poison,
    ]
    assert messages_ingest_isolating(messages=batch).quarantined == 1
    assert messages_ingest_isolating(messages=batch).quarantined == 1
    row = Quarantine.objects.get()
    assert (row.reason_code, row.deliveries) == ("ingest_failed", 2)


def test_seq_rises_once_per_changing_batch_and_marks_changed_rows():
    details = meeting_stream(seed=6, attendees=3, end=False)
    meeting_id = details[0]["meetingId"]
    ingest(bodies(details, seed=6))
    meeting = Meeting.objects.get(pk=meeting_id)
    assert meeting.seq == 1
    # att-6-2 is still in the meeting (the stream removes only the first half).
    assert Attendee.objects.get(meeting=meeting, attendee_id="att-6-2").presence == "joined"
    later = {
        "meetingId": meeting_id,
        "attendeeId": "att-6-2",
        "eventType": "chime:AttendeeDropped",
        "timestamp": details[-1]["timestamp"] + 1000,
    }
    ingest([as_bare(later)])
    meeting.refresh_from_db()
    assert meeting.seq == 2
    changed = Attendee.objects.filter(meeting=meeting, seq=2).values_list("attendee_id", flat=True)
    assert list(changed) == ["att-6-2"]
    # A duplicate-only batch changes nothing and raises nothing.
    ingest([as_bare(later)])
    meeting.refresh_from_db()
    assert meeting.seq == 2
    # An unknown event type is stored but changes no state, so seq stays.
    ingest(
        [as_bare({**later, "eventType": "chime:AttendeeFutureThing", "timestamp": later["timestamp"] + 1})]
    )
    meeting.refresh_from_db()
    assert meeting.seq == 2
    assert Event.objects.filter(event_type="chime:AttendeeFutureThing").exists()


def test_changes_reach_the_after_commit_hooks_only_after_commit(
    django_capture_on_commit_callbacks, committed_batches
):
    details = meeting_stream(seed=7, attendees=2, end=False)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ingest(bodies(details, seed=7))
    assert committed_batches == []  # nothing before commit
    # One callback per hook, in registration order: the broadcaster, the metrics, then this test's.
    assert [c.func for c in callbacks] == [*hooks.after_commit]
    assert hooks.after_commit[:2] == [changes_committed, ingest_committed]
    callbacks[-1]()
    (batch,) = committed_batches
    (change,) = batch.changes
    assert change.meeting.meeting_id == details[0]["meetingId"] and change.meeting.seq == 1
    assert {a.attendee_id for a in change.changed_rows} == {"att-7-0", "att-7-1"}
    assert all(a.seq == 1 for a in change.changed_rows)
    assert sum(batch.tallies.values()) == len(details) and batch.seconds > 0


def test_a_failing_in_transaction_hook_rolls_the_batch_back():
    def refuse(changes) -> None:
        raise RuntimeError("the outbox could not be written")

    hooks.in_transaction.append(refuse)
    try:
        with pytest.raises(RuntimeError):
            ingest(bodies(meeting_stream(seed=8, attendees=2), seed=8))
    finally:
        hooks.in_transaction.remove(refuse)
    assert not Event.objects.exists() and not Meeting.objects.exists()


def test_content_attendee_creates_parent_row_and_external_id_precedence():
    meeting_id = "m-content"
    content = {
        "meetingId": meeting_id,
        "attendeeId": "p1#content",
        "externalUserId": "alice#content",
        "eventType": "chime:AttendeeContentVideoStarted",
        "timestamp": 10,
    }
    ingest([as_bare(content)])
    row = Attendee.objects.get(meeting_id=meeting_id)
    assert (row.attendee_id, row.presence, row.content_video, row.external_user_id) == (
        "p1",
        None,
        True,
        "alice#content",
    )
    own = {
        "meetingId": meeting_id,
        "attendeeId": "p1",
        "externalUserId": "alice",
        "eventType": "chime:AttendeeJoined",
        "timestamp": 5,
    }
    ingest([as_bare(own)])  # earlier than what is folded: re-derived from the log
    row.refresh_from_db()
    assert (row.external_user_id, row.presence, row.content_video) == ("alice", "joined", True)
    assert Attendee.objects.filter(meeting_id=meeting_id).count() == 1


def test_late_meeting_end_and_late_events_after_it():
    details = meeting_stream(seed=8, attendees=3, end=False)
    meeting_id = details[0]["meetingId"]
    end = {
        "meetingId": meeting_id,
        "eventType": "chime:MeetingEnded",
        "timestamp": details[-1]["timestamp"] + 5,
    }
    ingest([as_bare(end)])
    ingest(bodies(details, seed=8))
    assert stored(meeting_id) == expected([*details, end])
    assert not Attendee.objects.filter(meeting_id=meeting_id, presence="joined").exists()


def test_voice_connector_stream_status_any_order():
    vc = {
        "voiceConnectorId": "vc-1",
        "transactionId": "tx-1",
        "callId": "call-1",
        "direction": "Inbound",
        "fromNumber": "+15550100",
        "toNumber": "+15550199",
        "streamArn": "arn:aws:kinesisvideo:s",
    }
    started = {**vc, "streamingStatus": "STARTED", "startTime": "2024-01-01T10:00:00.000Z"}
    updated = {**vc, "streamingStatus": "UPDATED", "updateTime": "2024-01-01T10:00:30.000Z"}
    ended = {**vc, "streamingStatus": "ENDED", "endTime": "2024-01-01T10:01:00.000Z"}
    ingest([as_bare(ended)])
    ingest([as_bare(updated), as_bare(started), as_bare(started)])
    stream = VoiceConnectorStream.objects.get()
    assert (stream.status, stream.call_id, stream.start_time, stream.end_time) == (
        "ENDED",
        "call-1",
        "2024-01-01T10:00:00.000Z",
        "2024-01-01T10:01:00.000Z",
    )
    assert (stream.direction, stream.from_number, stream.to_number) == ("Inbound", "+15550100", "+15550199")
    failed = {
        **vc,
        "transactionId": "tx-2",
        "streamingStatus": "FAILED",
        "failureTime": "2024-01-01T10:00:05Z",
        "failureReason": "no media",
    }
    ingest([as_bare(failed), as_bare({**updated, "transactionId": "tx-2"})])
    stream2 = VoiceConnectorStream.objects.get(transaction_id="tx-2")
    assert (stream2.status, stream2.failure_reason) == ("FAILED", "no media")
    assert Event.objects.filter(kind="voice_connector").count() == 5


def test_unknown_detail_type_is_stored_never_dropped():
    body = json.dumps(
        {"source": "aws.chime", "detail-type": "Chime Something New", "account": "1", "detail": {"a": 1}}
    )
    result = ingest([body, body])
    assert (result.applied, result.duplicates, result.quarantined) == (1, 1, 0)
    event = Event.objects.get()
    assert (event.kind, event.detail_type, event.detail) == ("unknown", "Chime Something New", {"a": 1})


def test_a_detail_is_logged_as_it_read_whatever_its_values():
    """The log's batch document is written by orjson, and by json for what orjson cannot write (an
    integer beyond 64 bits): every value comes back as the parser read it."""
    values = {
        "big": 2**70,
        "negative_big": -(2**64),
        "float": 1.5e-7,
        "text": 'Zoë "ü" \u2028',
        "nested": [{"n": None}],
    }
    plain = detail("AttendeeJoined", "m-values", "a-1", ts=BASE_TS)
    big = detail("AttendeeJoined", "m-values", "a-2", ts=BASE_TS + 1, **values)
    result = ingest([as_json(envelope(plain)), as_json(envelope(big))])
    assert result.applied == 2
    logged = Event.objects.get(attendee_id="a-2").detail
    assert {name: logged[name] for name in values} == values
    assert Event.objects.get(attendee_id="a-1").detail == plain


def test_unprefixed_meeting_end_is_found_when_rows_are_re_derived():
    """The fold accepts "MeetingEnded" without "chime:"; ingest's stored-event query must too."""
    meeting = "m-unprefixed"
    joined = {"meetingId": meeting, "attendeeId": "a", "eventType": "chime:AttendeeJoined", "timestamp": 1}
    ended = {"meetingId": meeting, "eventType": "MeetingEnded", "timestamp": 5}
    late = {"meetingId": meeting, "attendeeId": "b", "eventType": "chime:AttendeeJoined", "timestamp": 2}
    ingest([as_bare(joined)])
    ingest([as_bare(ended)])
    ingest([as_bare(late)])  # a new row in an ended meeting: re-derived with the stored end
    assert stored(meeting) == expected([joined, ended, late])
    assert set(Attendee.objects.filter(meeting_id=meeting).values_list("presence", flat=True)) == {"left"}


def test_tallies_count_each_message_once_by_queue_type_and_outcome():
    """Metrics read these: every message is counted once, as applied, duplicate or quarantined."""
    joined = as_json(envelope(detail("AttendeeJoined", meeting_id="m-t", attendee_id="a1", ts=1000)))
    left = as_json(envelope(detail("AttendeeLeft", meeting_id="m-t", attendee_id="a1", ts=2000)))
    first = messages_ingest(
        messages=[
            IncomingMessage(body=joined, queue="q1"),
            IncomingMessage(body=joined, queue="q2"),
            IncomingMessage(body="{", queue="q2"),
        ]
    )
    assert first.tallies == {
        ("q1", "chime:AttendeeJoined", "applied", "chime"): 1,
        ("q2", "chime:AttendeeJoined", "duplicate", "chime"): 1,
        ("q2", "not_json", "quarantined", "chime"): 1,
    }
    second = messages_ingest(
        messages=[IncomingMessage(body=joined, queue="q1"), IncomingMessage(body=left, queue="q1")]
    )
    assert second.tallies == {
        ("q1", "chime:AttendeeJoined", "duplicate", "chime"): 1,
        ("q1", "chime:AttendeeLeft", "applied", "chime"): 1,
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_sharing_keys_apply_each_event_once():
    """Threads ingest overlapping batches of one meeting at once (the same events through several
    queues): the log rows are written before the meeting lock, so this is where two batches with
    the same keys meet. Nothing deadlocks, nothing is applied twice, the roster is the whole fold."""
    import threading

    from django.db import connection

    details = meeting_stream(seed=21, attendees=12)
    wrappers = (as_envelope, as_sns, as_bare)
    rng = random.Random(21)
    deliveries = [wrap(d) for d in details for wrap in wrappers]  # every event through 3 "queues"
    rng.shuffle(deliveries)
    chunks = [deliveries[i : i + 10] for i in range(0, len(deliveries), 10)]
    position, lock, results, errors = [0], threading.Lock(), [], []
    start = threading.Barrier(4)

    def worker() -> None:
        try:
            start.wait()
            while True:
                with lock:
                    if position[0] >= len(chunks):
                        return
                    chunk = chunks[position[0]]
                    position[0] += 1
                results.append(ingest(chunk))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sum(r.applied for r in results) == len(details)
    assert sum(r.duplicates for r in results) == 2 * len(details)
    assert Event.objects.count() == len(details)
    assert set(Event.objects.values_list("duplicate_count", flat=True)) == {2}
    assert stored(details[0]["meetingId"]) == expected(details)
