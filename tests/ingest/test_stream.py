"""roster.ingest.stream: a long stream (``ingest_file``) on worker threads split by meeting. Same
answers as one batch after another; a worker's failure stops the stream and is raised."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import transaction

from roster.dev.chime import as_bare, as_json, bodies, envelope, meeting_stream, vc_detail
from roster.ingest import IncomingMessage, messages_stream_ingest
from roster.ingest import stream as stream_module
from roster.models import Event, Quarantine, VoiceConnectorStream
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
    threaded = _answers(result, details)
    assert threaded[0] == (
        f"received={len(messages)} applied={sum(map(len, details)) + 2} "
        f"duplicates={len(messages) - sum(map(len, details)) - 3} quarantined=1"
    )
    assert all(threaded[4]) and threaded[1] == sum(map(len, details)) + 2

    # The same file again, one worker: every event is a duplicate now, and nothing moves.
    again = messages_stream_ingest(messages=messages, workers=1, batch_size=40)
    assert again.applied == 0 and again.duplicates == len(messages) - 1
    assert _answers(again, details)[1:] == (threaded[1], [("not_json", 2)], 1, threaded[4])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_failing_worker_stops_the_stream_and_its_error_is_raised(monkeypatch):
    details, messages = _file(meetings=6, seed=310)
    doomed = details[2][0]["meetingId"]
    real = stream_module.parsed_ingest
    attempted, failed = [], threading.Event()

    def refusing(*, parsed):
        attempted.append(parsed)
        if any(getattr(event, "meeting_id", "") == doomed for _, event in parsed):
            failed.set()
            raise RuntimeError("the database refused it")
        return real(parsed=parsed)

    def file_lines():
        """No more than half the file before the failure happened: after it, the stream stops."""
        for number, message in enumerate(messages):
            if number == len(messages) // 2:
                assert failed.wait(30)
            consumed.append(message)
            yield message

    consumed: list[IncomingMessage] = []
    monkeypatch.setattr(stream_module, "parsed_ingest", refusing)
    with pytest.raises(RuntimeError, match="refused"):
        messages_stream_ingest(messages=file_lines(), workers=3, batch_size=10)
    assert len(consumed) <= len(messages) // 2 + 1  # no further than the line after the failure
    # Its worker took no batch after the failure; what it did not store, nobody did.
    assert sum(any(getattr(e, "meeting_id", "") == doomed for _, e in b) for b in attempted) == 1
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
