"""roster.ingest.stream: a long stream (``ingest_file``) on worker processes split by meeting, each
window in fold order. Same answers as one batch after another; a failure stops the stream."""

from __future__ import annotations

import multiprocessing
import os
import random
import time

import pytest
from django.db import transaction

from roster.dev.chime import (
    as_bare,
    as_envelope,
    as_json,
    as_sns,
    bodies,
    envelope,
    meeting_stream,
    vc_detail,
)
from roster.ingest import IncomingMessage, messages_stream_ingest
from roster.ingest import stream as stream_module
from roster.ingest.store import Store
from roster.models import Event, Meeting, Quarantine, VoiceConnectorStream
from tests.conftest import expected, stored


def _file(*, meetings: int, seed: int) -> tuple[list[list[dict]], list[IncomingMessage]]:
    """Several meetings' bodies interleaved, some twice, with a bad line, a Voice Connector event
    and an unknown detail type among them: what a file of JSON lines holds."""
    rng = random.Random(seed)
    details = [meeting_stream(seed=seed + n, attendees=4) for n in range(meetings)]
    lines = [body for n, meeting in enumerate(details) for body in bodies(meeting, seed=seed + n)]
    lines += rng.sample(lines, len(lines) // 5)  # the same occurrence through a second target
    lines += [
        '{"broken": ',
        as_json(envelope(vc_detail("STARTED"))),
        as_json(envelope({"thing": 1}, detail_type="Chime Something New")),
    ]
    rng.shuffle(lines)
    return details, [
        IncomingMessage(body=line.encode(), queue="file:t", message_id=f"line:{number}")
        for number, line in enumerate(lines, start=1)
    ]


def _answers(result, details) -> tuple:
    return (
        result.summary(),
        Event.objects.count(),
        list(Quarantine.objects.values_list("reason_code", "deliveries")),
        VoiceConnectorStream.objects.count(),
        [stored(meeting[0]["meetingId"]) == expected(meeting) for meeting in details],
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_split_by_meeting_give_the_answers_of_one_batch_after_another():
    details, messages = _file(meetings=7, seed=300)
    result = messages_stream_ingest(messages=messages, workers=3, batch_size=40)
    split = _answers(result, details)
    assert split[0] == (
        f"received={len(messages)} applied={sum(map(len, details)) + 2} "
        f"duplicates={len(messages) - sum(map(len, details)) - 3} quarantined=1"
    )
    assert all(split[4]) and split[1] == sum(map(len, details)) + 2

    # The same file again, one worker: every event is a duplicate now, and nothing moves.
    again = messages_stream_ingest(messages=messages, workers=1, batch_size=40)
    assert again.applied == 0 and again.duplicates == len(messages) - 1
    assert _answers(again, details)[1:] == (split[1], [("not_json", 2)], 1, split[4])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_failing_worker_stops_the_stream_and_its_error_is_raised(monkeypatch):
    details, messages = _file(meetings=6, seed=310)
    doomed = details[2][0]["meetingId"]
    real = stream_module.parsed_ingest
    forked = multiprocessing.get_context("fork")
    # Seen across the workers' fork: the failure, the failing worker, its batches.
    failed, failing_pid, doomed_batches = forked.Event(), forked.Value("i", 0), forked.Value("i", 0)

    def refusing(*, parsed):
        if any(getattr(event, "meeting_id", "") == doomed for _, event in parsed):
            with doomed_batches.get_lock():
                doomed_batches.value += 1
            failing_pid.value = os.getpid()
            failed.set()
            raise RuntimeError("the database refused it")
        return real(parsed=parsed)

    def file_lines():
        """No more than half the file before the failure happened: after it, the stream stops."""
        for number, message in enumerate(messages):
            if number == len(messages) // 2:
                assert failed.wait(30)
                deadline = time.monotonic() + 30  # its error sent back: the worker has exited
                while failing_pid.value in {p.pid for p in multiprocessing.active_children()}:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
            consumed.append(message)
            yield message

    consumed: list[IncomingMessage] = []
    monkeypatch.setattr(stream_module, "parsed_ingest", refusing)  # the workers fork with it
    monkeypatch.setattr(stream_module, "CHUNK", 2)
    with pytest.raises(RuntimeError, match="refused"):
        messages_stream_ingest(messages=file_lines(), workers=3, batch_size=10, window=6)
    # No further than the next writes to the failed worker (a worker gets about a third of them).
    assert len(consumed) <= len(messages) // 2 + 3 * 2 * 3
    # Its worker took no batch after the failure; what it did not store, nobody did.
    assert doomed_batches.value == 1
    assert not Event.objects.filter(meeting_id=doomed).exists()


@pytest.mark.django_db
def test_inside_a_transaction_the_stream_is_ingested_in_it_and_rolls_back_with_it():
    """A worker's own connection could neither see the caller's uncommitted rows nor be undone
    by its rollback: inside a transaction the stream is ingested in the caller's connection."""
    details = meeting_stream(seed=320, attendees=3)
    messages = [IncomingMessage(body=as_bare(d), queue="file:t") for d in details]

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        result = messages_stream_ingest(messages=messages, workers=4, batch_size=7)
        assert result.applied == len(details)
        assert stored(details[0]["meetingId"]) == expected(details)
        raise Undo
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_each_window_is_handed_out_in_fold_order_and_copies_keep_theirs(monkeypatch):
    """By meeting, then event time, window by window; the first copy of an event is the one
    logged, as it was in arrival order."""
    details, messages = _file(meetings=4, seed=330)
    real, batches = stream_module.parsed_ingest, []

    def recording(*, parsed):
        batches.append(list(parsed))
        return real(parsed=parsed)

    monkeypatch.setattr(stream_module, "parsed_ingest", recording)
    window = 25
    messages_stream_ingest(messages=messages, workers=1, batch_size=10, window=window)
    handed = [pair for batch in batches for pair in batch]
    assert sorted(m.message_id for m, _ in handed) == sorted(m.message_id for m in messages)
    for start in range(0, len(handed), window):
        order = [stream_module._fold_order(pair) for pair in handed[start : start + window]]
        assert order == sorted(order)
    assert [m.message_id for m, _ in handed] != [m.message_id for m in messages]  # it did reorder

    first_line: dict[str, int] = {}
    for message, event in handed:
        if hasattr(event, "key"):
            line = int(message.message_id.removeprefix("line:"))
            first_line[event.key] = min(first_line.get(event.key, line), line)
    logged = dict(Event.objects.values_list("key", "sqs_message_id"))
    assert logged == {key: f"line:{line}" for key, line in first_line.items()}
    assert all(stored(meeting[0]["meetingId"]) == expected(meeting) for meeting in details)


@pytest.mark.django_db
def test_a_meeting_whole_in_one_window_reads_history_back_only_at_its_end(monkeypatch):
    """Why the window: in arrival order an event older than one already folded sends the fold
    back to the attendee's history; in fold order that cannot happen within a window, and the
    one read left is MeetingEnded's, which re-derives every row by design (roster.domain.plan)."""
    details = meeting_stream(seed=340, attendees=6)
    rng = random.Random(340)
    arrival = rng.sample(details, len(details))
    messages = [IncomingMessage(body=as_bare(d), queue="file:t") for d in arrival]
    reads = []
    real = Store.attendee_histories

    def counting(self, **kwargs):
        reads.append(kwargs)
        return real(self, **kwargs)

    monkeypatch.setattr(Store, "attendee_histories", counting)
    messages_stream_ingest(messages=messages, workers=1, batch_size=5, window=1)  # arrival order
    assert len(reads) > 1  # the shuffle does send the fold back: the test below could fail
    Event.objects.all().delete()
    Meeting.objects.all().delete()
    reads.clear()
    messages_stream_ingest(messages=messages, workers=1, batch_size=5, window=len(messages))
    every_row = {d["attendeeId"] for d in details if d.get("attendeeId") and "#" not in d["attendeeId"]}
    assert reads == [{"refold": {details[0]["meetingId"]: every_row}}]
    assert stored(details[0]["meetingId"]) == expected(details)


@pytest.mark.once
def test_the_split_reads_one_meeting_alike_in_every_form_a_body_takes():
    """The reader does not parse: it reads the first meetingId value as written. EventBridge,
    SNS (the event as an escaped string) and bare bodies of one meeting go to one worker."""
    first, second = meeting_stream(seed=350, attendees=2), meeting_stream(seed=351, attendees=2)
    for meeting in (first, second):
        forms = {
            stream_module._meeting_hash(render(doc).encode())
            for doc in meeting
            for render in (as_envelope, as_sns, as_bare)
        }
        assert len(forms) == 1
    assert stream_module._meeting_hash(as_bare(first[0])) != stream_module._meeting_hash(as_bare(second[0]))
    assert stream_module._meeting_hash(as_json(envelope(vc_detail("STARTED")))) == 0
    assert stream_module._meeting_hash(b'{"broken": ') == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_that_cannot_start_ends_the_ones_started(monkeypatch):
    real, started = stream_module._Worker.__init__, []

    def third_fails(self, **kwargs):
        if len(started) == 2:
            raise OSError("fork refused")
        real(self, **kwargs)
        started.append(self._process)

    monkeypatch.setattr(stream_module._Worker, "__init__", third_fails)
    _, messages = _file(meetings=2, seed=360)
    with pytest.raises(OSError, match="fork refused"):
        messages_stream_ingest(messages=messages, workers=4)
    assert len(started) == 2 and not any(process.is_alive() for process in started)
    assert not Event.objects.exists()
