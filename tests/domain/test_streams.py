"""roster.domain.streams: Voice Connector streaming transactions, any order, final is final."""

from __future__ import annotations

import itertools

import pytest

from roster.dev.chime import vc_event
from roster.domain.streams import StreamState, stream_apply, stream_key, streams_fold

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)


def stream(*events) -> StreamState:
    state = StreamState(voice_connector_id="vc-1", transaction_id="tx-1")
    for event in events:
        stream_apply(state, event)
    return state


def at(second: int) -> str:
    return f"2022-08-30T19:06:{second:02d}.000Z"


START = "2022-08-30T19:06:00.000Z"


def test_stream_latest_by_time_wins():
    started = vc_event("STARTED", at=at(0))
    updated = vc_event("UPDATED", at=at(5), startTime=START)
    updated_later = vc_event("UPDATED", at=at(9), startTime=START)
    for order in itertools.permutations([started, updated, updated_later]):
        state = stream(*order)
        assert state.status == "UPDATED"
        assert state.status_at == updated_later.timestamp
    assert stream(started).status == "STARTED"


def test_stream_ended_is_final():
    state = stream(
        vc_event("STARTED", at=at(0)),
        vc_event("ENDED", at=at(10), startTime=START),
        vc_event("UPDATED", at=at(20), startTime=START),
    )
    assert state.status == "ENDED"
    assert state.end_time == at(10)
    assert state.start_time == START


def test_stream_failed_is_final():
    state = stream(
        vc_event("FAILED", at=at(10), failureReason="Kinesis throttled"),
        vc_event("UPDATED", at=at(20)),
        vc_event("STARTED", at=at(0)),
    )
    assert state.status == "FAILED"
    assert state.failure_time == at(10)
    assert state.failure_reason == "Kinesis throttled"


def test_stream_first_final_status_stays():
    ended = vc_event("ENDED", at=at(10))
    failed = vc_event("FAILED", at=at(20), failureReason="late")
    assert stream(failed, ended).status == "ENDED"
    assert stream(ended, failed).status == "ENDED"


def test_stream_fields_from_the_events():
    state = stream(vc_event("STARTED", at=START))
    assert state.call_id == "1112-2222-4333"
    assert state.direction == "Outbound"
    assert (state.from_number, state.to_number) == ("+12065550100", "+12065550200")
    assert state.stream_arn.startswith("arn:aws:kinesisvideo:")
    assert state.start_time == START


def test_stream_any_order_with_duplicates_gives_the_same_state():
    events = [
        vc_event("STARTED", at=at(0)),
        vc_event("UPDATED", at=at(3), startTime=START),
        vc_event("UPDATED", at=at(3), startTime=START),  # duplicate delivery
        vc_event("UPDATED", at=at(6), startTime=START),
        vc_event("ENDED", at=at(8), startTime=START),
        vc_event("UPDATED", at=at(9), startTime=START),
    ]
    states = {repr(stream(*order)) for order in itertools.permutations(events)}
    assert len(states) == 1
    (only,) = {stream(*events).status}
    assert only == "ENDED"


def test_streams_fold_applies_a_batch_to_the_stored_states_it_touches():
    first = vc_event("STARTED", at=at(0), transaction_id="tx-1")
    other = vc_event("STARTED", at=at(1), transaction_id="tx-2")
    ended = vc_event("ENDED", at=at(9), transaction_id="tx-1", startTime=START)
    stored = {stream_key(e): StreamState(*stream_key(e)) for e in (first, other)}
    touched = streams_fold(streams=stored, events=[ended, first])
    assert [(s.transaction_id, s.status) for s in touched] == [("tx-1", "ENDED")]
    assert stored[stream_key(other)].status == ""  # not in the batch: untouched
