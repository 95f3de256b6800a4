"""Voice Connector streaming transactions (shared/ROSTER.md "Voice Connector streams"). Pure Python.

One row per (voiceConnectorId, transactionId); any arrival order of its events gives one state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from roster.domain.fold import FoldableEvent

STREAM_FINAL = frozenset({"ENDED", "FAILED"})
STREAM_RANK = {"STARTED": 0, "UPDATED": 1, "ENDED": 2, "FAILED": 3}


@dataclass(slots=True)
class StreamState:
    """One (voiceConnectorId, transactionId): the latest status by its own time; final is final."""

    voice_connector_id: str
    transaction_id: str
    status: str = ""
    status_at: int = -1
    call_id: str = ""
    direction: str = ""
    from_number: str = ""
    to_number: str = ""
    stream_arn: str = ""
    start_time: str = ""
    end_time: str = ""
    failure_time: str = ""
    failure_reason: str = ""


STREAM_FIELDS = tuple(f.name for f in fields(StreamState))  # as stored, key first

_DETAIL_FIELDS = (
    ("call_id", "callId"),
    ("direction", "direction"),
    ("from_number", "fromNumber"),
    ("to_number", "toNumber"),
    ("stream_arn", "streamArn"),
    ("start_time", "startTime"),
    ("end_time", "endTime"),
    ("failure_time", "failureTime"),
    ("failure_reason", "failureReason"),
)


def _stream_wins(state: StreamState, status: str, at: int) -> bool:
    """Whether a status at ``at`` replaces the current one, whatever the arrival order.

    Folded in time order, the result is the first final status if there is one, else the latest.
    """
    if not state.status:
        return True
    new_order = (at, STREAM_RANK[status])
    old_order = (state.status_at, STREAM_RANK[state.status])
    if status in STREAM_FINAL:
        return state.status not in STREAM_FINAL or new_order < old_order
    return state.status not in STREAM_FINAL and new_order > old_order


def stream_apply(state: StreamState, event: FoldableEvent) -> None:
    """Merge one streaming event; fields are first-known, so any arrival order gives one state."""
    detail = event.detail
    for attr, key in _DETAIL_FIELDS:
        value = detail.get(key)
        if not getattr(state, attr) and isinstance(value, str) and value:
            setattr(state, attr, value)
    if _stream_wins(state, event.event_type, event.timestamp):
        state.status, state.status_at = event.event_type, event.timestamp


StreamKey = tuple[str, str]  # (voiceConnectorId, transactionId)


def stream_key(event: FoldableEvent) -> StreamKey:
    return event.detail["voiceConnectorId"], event.detail["transactionId"]


def streams_fold(
    *, streams: Mapping[StreamKey, StreamState], events: Iterable[FoldableEvent]
) -> list[StreamState]:
    """Apply a batch's streaming events to their stored states; returns the states that took one."""
    touched: dict[StreamKey, StreamState] = {}
    for event in events:
        key = stream_key(event)
        state = touched.setdefault(key, streams[key])
        stream_apply(state, event)
    return list(touched.values())
