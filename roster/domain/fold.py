"""The roster fold (shared/ROSTER.md, to the letter). Pure Python: no Django, no I/O.

State is a fold of a meeting's events in *fold order*: ``detail.timestamp``, then the rank table,
then event type and natural key (so distinct events always have one order). Any permutation of
the same events, with any duplicates, gives the same roster.

Two ways in:

- :func:`roster_fold` folds every event of a meeting at once. It is the specification, and the
  oracle the tests hold the incremental path to.
- The incremental pieces ingest uses (through roster.domain.plan): :func:`attendee_fold` (re-derive
  one row from its events, or apply events that sort after everything already folded into a stored
  row) and :func:`meeting_fold` (meeting-level fields); ``peak_joined`` is roster.domain.peak.

Choices where ROSTER.md is silent:

- ``removed`` is final: later Left/Dropped/Joined change nothing, and Dropped adds no drop.
- ``external_user_id``: the first known in fold order from the parent's own events; a
  ``#content`` event's value is used only while the parent has none of its own.
- ``external_meeting_id`` / ``media_region``: the first non-empty value known (Chime sends the
  same on every event of a meeting).
- ``started_at`` / ``ended_at``: the first MeetingStarted / MeetingEnded in fold order.
- ``transcription`` is the status word; ``transcription_message`` carries that event's message.
- Event types of a ``#content`` attendee other than AttendeeContent* create the parent row but
  change no flag. Unknown types rank with the rank-4 group.
- Superseding (ROSTER.md "Repairs"): a synthesized (``reconcile``) MeetingEnded is dropped when a
  real one is known; a synthesized AttendeeAdded / AttendeeDeleted when a real one of the same
  type and attendee id is known. The rule reads the set of events, not their order, so it keeps
  order independence; :func:`sorted_unique` applies it, so every fold path does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from roster.domain.events import (
    CONTENT_SUFFIX,
    KIND_MEETING,
    KIND_PIPELINE,
    SOURCE_CHIME,
    SOURCE_RECONCILE,
    parent_attendee_id,
)

PREFIX = "chime:"

RANK: dict[str, int] = {
    "MeetingStarted": 0,
    "AttendeeAdded": 1,
    "AttendeeAuthorized": 2,
    "AttendeeJoined": 3,
    "AttendeeContentJoined": 3,
    "AttendeeVideoStarted": 4,
    "AttendeeScreenShareStarted": 4,
    "AttendeeContentVideoStarted": 4,
    "AttendeeCapabilitiesUpdated": 4,
    "AttendeeVideoStopped": 5,
    "AttendeeScreenShareStopped": 5,
    "AttendeeContentVideoStopped": 5,
    "AttendeeDropped": 6,
    "AttendeeContentDropped": 6,
    "AttendeeLeft": 7,
    "AttendeeContentLeft": 7,
    "AttendeeDeleted": 8,
    "MeetingEnded": 9,
}
DEFAULT_RANK = 4  # Transcription*, MediaPipeline* and unknown types

JOIN_RANK = RANK["AttendeeJoined"]

# Attendee event types that change a row (or create one): the rank table's; anything else is
# timeline-only. A ``#content`` attendee's AttendeeContent* events set its parent's share flags.
CONTENT_TYPES = frozenset(name for name in RANK if name.startswith("AttendeeContent"))
OWN_TYPES = frozenset(name for name in RANK if name.startswith("Attendee")) - CONTENT_TYPES
ATTENDEE_TYPES = OWN_TYPES | CONTENT_TYPES

TRANSCRIPTION_STATUS = {
    "TranscriptionStarted": "started",
    "TranscriptionStopped": "stopped",
    "TranscriptionInterrupted": "interrupted",
    "TranscriptionResumed": "resumed",
    "TranscriptionFailed": "failed",
}
PIPELINE_STATUS = {
    "MediaPipelineInProgress": "in_progress",
    "MediaPipelineDeleted": "deleted",
    "MediaPipelineTemporaryFailure": "temporary_failure",
    "MediaPipelineResumed": "resumed",
    "MediaPipelinePermanentFailure": "permanent_failure",
}
RECORDING_STATUSES = frozenset({"in_progress", "resumed"})

PRESENCE_ADDED = "added"
PRESENCE_AUTHORIZED = "authorized"
PRESENCE_JOINED = "joined"
PRESENCE_DROPPED = "dropped"
PRESENCE_LEFT = "left"
PRESENCE_REMOVED = "removed"

Position = tuple[int, int]  # (timestamp, rank): the grain at which presence changes are counted


class FoldableEvent(Protocol):
    """What the fold reads of an event (roster.domain.events.ChimeEvent and stored rows both fit)."""

    key: str
    kind: str
    event_type: str
    attendee_id: str
    timestamp: int
    detail: Mapping[str, Any]
    source: str


class StoredEvent(NamedTuple):
    """An event read back from the log, in the shape the fold reads (a FoldableEvent)."""

    key: str
    kind: str
    event_type: str
    attendee_id: str
    timestamp: int
    detail: dict[str, Any]
    source: str = SOURCE_CHIME


STORED_EVENT_FIELDS = ("key", "kind", "event_type", "attendee_id", "timestamp", "detail", "source")

# Attendee types whose synthesized events a real event of the same type and attendee supersedes.
SUPERSEDED_ATTENDEE_TYPES = frozenset({"AttendeeAdded", "AttendeeDeleted"})


@lru_cache(maxsize=1024)  # a handful of types, asked a dozen times an event by the fold
def type_name(event_type: str) -> str:
    """``chime:AttendeeJoined`` -> ``AttendeeJoined``."""
    return event_type[len(PREFIX) :] if event_type.startswith(PREFIX) else event_type


def rank_of(event_type: str) -> int:
    return RANK.get(type_name(event_type), DEFAULT_RANK)


def fold_order(event: FoldableEvent) -> tuple[int, int, str, str]:
    """Total order of distinct events: timestamp, rank, type, natural key."""
    return (event.timestamp, rank_of(event.event_type), event.event_type, event.key)


def position_of(event: FoldableEvent) -> Position:
    return (event.timestamp, rank_of(event.event_type))


def is_meeting_level(event: FoldableEvent) -> bool:
    """Meeting-level events change meeting fields; only MeetingEnded also changes attendees."""
    return event.kind == KIND_PIPELINE or (event.kind == KIND_MEETING and not event.attendee_id)


def is_meeting_end(event: FoldableEvent) -> bool:
    return event.kind == KIND_MEETING and type_name(event.event_type) == "MeetingEnded"


def changes_attendee(event: FoldableEvent) -> bool:
    """True for events that fold into an attendee row (creating it if needed)."""
    return (
        event.kind == KIND_MEETING
        and bool(event.attendee_id)
        and type_name(event.event_type) in ATTENDEE_TYPES
    )


parent_of = parent_attendee_id  # the roster row an attendee's events fold into


def is_synthesized(event: FoldableEvent) -> bool:
    """An event reconcile made from the Chime API rather than one Chime sent."""
    return event.source == SOURCE_RECONCILE


def supersedable(event: FoldableEvent) -> bool:
    """A synthesized event that a real one can make void (MeetingEnded, AttendeeAdded/Deleted)."""
    return is_synthesized(event) and _superseding_slot(event) is not None


def supersedes_repairs(event: FoldableEvent) -> bool:
    """A real event that makes void the synthesized events of its slot."""
    return not is_synthesized(event) and _superseding_slot(event) is not None


def _superseding_slot(event: FoldableEvent) -> tuple[str, str] | None:
    """What a real event and its synthesized twins share: (attendee id, type), or None."""
    if event.kind != KIND_MEETING:
        return None
    name = type_name(event.event_type)
    if name == "MeetingEnded" and not event.attendee_id:
        return ("", name)
    if name in SUPERSEDED_ATTENDEE_TYPES and event.attendee_id:
        return (event.attendee_id, name)
    return None


def superseded_drop(events: Iterable[FoldableEvent]) -> list[FoldableEvent]:
    """The events less the synthesized ones a real event of their slot supersedes. A set rule
    (which slots have a real event), so the result does not depend on the events' order."""
    events = list(events)
    if not any(event.source == SOURCE_RECONCILE for event in events):
        return events  # no repair (the usual case): nothing to look up
    real = {_superseding_slot(event) for event in events if supersedes_repairs(event)}
    real.discard(None)
    if not real:
        return events
    return [event for event in events if not (is_synthesized(event) and _superseding_slot(event) in real)]


def sorted_unique(events: Iterable[FoldableEvent]) -> list[FoldableEvent]:
    """Drop duplicates by natural key (the first seen is kept) and superseded repairs, and put the
    rest in fold order."""
    unique: dict[str, FoldableEvent] = {}
    for event in events:
        unique.setdefault(event.key, event)
    return sorted(superseded_drop(unique.values()), key=fold_order)


@dataclass(slots=True)
class AttendeeState:
    """One roster row. The fields after ``capabilities`` are fold bookkeeping, never shown."""

    attendee_id: str
    external_user_id: str | None = None
    presence: str | None = None
    network_type: str | None = None
    video: bool = False
    screen_share: bool = False
    content_share: bool = False
    content_video: bool = False
    first_joined_at: int | None = None
    joined_since: int | None = None
    joined_ms: int = 0
    drop_count: int = 0
    capabilities: dict[str, Any] | None = None
    # Join intervals [start_ts, end_ts, end_rank] (end null while open): peak_joined needs them.
    intervals: list[list[int | None]] = field(default_factory=list)
    # Position of the last event folded in: later events can be applied without re-folding.
    folded_ts: int = -1
    folded_rank: int = -1
    external_user_id_own: bool = False
    # A synthesized event is folded in: a later real AttendeeAdded/Deleted may void it (re-derive).
    repaired: bool = False
    # The meeting's seq when this row last changed in what a client sees: kept by ingest (a change
    # feed's resume point), never by the fold, and not part of the row's state (not compared).
    seq: int = field(default=0, compare=False)

    PUBLIC_FIELDS = (
        "attendee_id",
        "external_user_id",
        "presence",
        "network_type",
        "video",
        "screen_share",
        "content_share",
        "content_video",
        "first_joined_at",
        "joined_since",
        "joined_ms",
        "drop_count",
        "capabilities",
    )

    def public(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.PUBLIC_FIELDS}

    def copy(self) -> AttendeeState:
        clone = AttendeeState(**{name: getattr(self, name) for name in self.__dataclass_fields__})
        clone.intervals = [list(interval) for interval in self.intervals]
        clone.capabilities = dict(self.capabilities) if self.capabilities is not None else None
        return clone


@dataclass(slots=True)
class MeetingState:
    """Meeting-level fields (roster.domain.plan.MeetingRecord adds the counters, peak and seq)."""

    meeting_id: str
    external_meeting_id: str = ""
    media_region: str = ""
    status: str = "unknown"
    started_at: int | None = None
    ended_at: int | None = None
    transcription: str | None = None
    transcription_message: str | None = None
    pipelines: dict[str, str] = field(default_factory=dict)

    @property
    def recording(self) -> bool:
        return any(status in RECORDING_STATUSES for status in self.pipelines.values())


@dataclass(slots=True)
class Roster:
    meeting: MeetingState
    peak_joined: int
    attendees: dict[str, AttendeeState]


# --- attendee transitions -------------------------------------------------------------------


def _close_interval(state: AttendeeState, ts: int, rank: int) -> None:
    if state.joined_since is not None:
        state.joined_ms += ts - state.joined_since
        state.joined_since = None
        state.intervals[-1][1] = ts
        state.intervals[-1][2] = rank


def _flags_off(state: AttendeeState) -> None:
    state.video = state.screen_share = state.content_share = state.content_video = False


def _capabilities(detail: Mapping[str, Any]) -> dict[str, Any] | None:
    if detail.get("success") not in ("1", True):
        return None
    source = detail.get("attendeeCapabilities") or detail.get("capabilities") or detail
    if not isinstance(source, Mapping):
        return None
    lowered = {str(key).lower(): value for key, value in source.items()}
    return {name: lowered.get(name) for name in ("audio", "video", "content")}


def attendee_apply(state: AttendeeState, event: FoldableEvent) -> None:
    """Apply one event (already known to belong to this row, in fold order) to the row."""
    name = type_name(event.event_type)
    ts = event.timestamp
    rank = RANK.get(name, DEFAULT_RANK)
    state.folded_ts, state.folded_rank = ts, rank
    if supersedable(event):
        state.repaired = True
    if name == "MeetingEnded":
        if state.presence in (PRESENCE_JOINED, PRESENCE_AUTHORIZED):
            state.presence = PRESENCE_LEFT
            _close_interval(state, ts, rank)
        _flags_off(state)
        return

    detail = event.detail
    from_content = event.attendee_id.endswith(CONTENT_SUFFIX)
    external = detail.get("externalUserId")
    if isinstance(external, str) and external:
        if not from_content and not state.external_user_id_own:
            state.external_user_id, state.external_user_id_own = external, True
        elif from_content and state.external_user_id is None:
            state.external_user_id = external

    if name in CONTENT_TYPES:
        if name == "AttendeeContentJoined":
            state.content_share = True
        elif name in ("AttendeeContentLeft", "AttendeeContentDropped"):
            state.content_share = state.content_video = False
        elif name == "AttendeeContentVideoStarted":
            state.content_video = True
        elif name == "AttendeeContentVideoStopped":
            state.content_video = False
        return
    if from_content:
        return  # a #content attendee's other events only create the parent row

    if name == "AttendeeAdded":
        if state.presence is None:
            state.presence = PRESENCE_ADDED
    elif name == "AttendeeAuthorized":
        if state.presence in (None, PRESENCE_ADDED, PRESENCE_LEFT, PRESENCE_DROPPED):
            state.presence = PRESENCE_AUTHORIZED
    elif name == "AttendeeJoined":
        if state.presence == PRESENCE_REMOVED:
            return
        if state.presence != PRESENCE_JOINED:
            state.joined_since = ts
            if state.first_joined_at is None:
                state.first_joined_at = ts
            state.intervals.append([ts, None, None])
        state.presence = PRESENCE_JOINED
        network_type = detail.get("networkType")
        if isinstance(network_type, str) and network_type:
            state.network_type = network_type
    elif name in ("AttendeeLeft", "AttendeeDropped", "AttendeeDeleted"):
        if state.presence == PRESENCE_REMOVED:
            return
        _close_interval(state, ts, rank)
        _flags_off(state)
        if name == "AttendeeDropped":
            state.drop_count += 1
            state.presence = PRESENCE_DROPPED
        else:
            state.presence = PRESENCE_LEFT if name == "AttendeeLeft" else PRESENCE_REMOVED
    elif name == "AttendeeVideoStarted":
        state.video = True
    elif name == "AttendeeVideoStopped":
        state.video = False
    elif name == "AttendeeScreenShareStarted":
        state.screen_share = True
    elif name == "AttendeeScreenShareStopped":
        state.screen_share = False
    elif name == "AttendeeCapabilitiesUpdated":
        capabilities = _capabilities(detail)
        if capabilities is not None:
            state.capabilities = capabilities


def can_advance(state: AttendeeState, events: Sequence[FoldableEvent]) -> bool:
    """True when every event sorts strictly after everything already folded into ``state``."""
    folded = (state.folded_ts, state.folded_rank)
    return all(position_of(event) > folded for event in events)


def attendee_fold(
    attendee_id: str,
    events: Iterable[FoldableEvent],
    *,
    initial: AttendeeState | None = None,
) -> AttendeeState | None:
    """Fold events into one row: from scratch, or onto ``initial`` when :func:`can_advance`.

    ``events`` are the row's own events, its ``#content`` events and the meeting's MeetingEnded
    events; anything else is ignored. Returns None when no event creates the row.
    """
    state = initial.copy() if initial is not None else None
    for event in sorted_unique(events):
        if is_meeting_end(event):
            if state is not None:
                attendee_apply(state, event)
        elif changes_attendee(event) and parent_of(event.attendee_id) == attendee_id:
            if state is None:
                state = AttendeeState(attendee_id=attendee_id)
            attendee_apply(state, event)
    return state


# --- meeting --------------------------------------------------------------------------------


def meeting_identify(state: MeetingState, detail: Mapping[str, Any]) -> None:
    """Fill external meeting id and media region from any event, first known wins."""
    for attr, key in (("external_meeting_id", "externalMeetingId"), ("media_region", "mediaRegion")):
        value = detail.get(key)
        if not getattr(state, attr) and isinstance(value, str) and value:
            setattr(state, attr, value)


def meeting_apply(state: MeetingState, event: FoldableEvent) -> None:
    """Apply one meeting-level event (in fold order) to the meeting fields."""
    detail = event.detail
    meeting_identify(state, detail)
    name = type_name(event.event_type)
    if event.kind == KIND_PIPELINE:
        status = PIPELINE_STATUS.get(name)
        pipeline_id = detail.get("mediaPipelineId")
        if status is not None and isinstance(pipeline_id, str) and pipeline_id:
            state.pipelines[pipeline_id] = status
    elif name == "MeetingStarted":
        if state.status != "ended":
            state.status = "active"
        if state.started_at is None:
            state.started_at = event.timestamp
    elif name == "MeetingEnded":
        state.status = "ended"
        if state.ended_at is None:
            state.ended_at = event.timestamp
    elif name in TRANSCRIPTION_STATUS:
        state.transcription = TRANSCRIPTION_STATUS[name]
        message = detail.get("message")
        state.transcription_message = message if isinstance(message, str) and message else None


def meeting_fold(meeting_id: str, events: Iterable[FoldableEvent]) -> MeetingState:
    """Meeting fields from the meeting-level events (others only lend external id and region)."""
    state = MeetingState(meeting_id=meeting_id)
    for event in sorted_unique(events):
        if is_meeting_level(event):
            meeting_apply(state, event)
    return state


# --- the whole fold (specification and oracle) ----------------------------------------------


def roster_fold(meeting_id: str, events: Iterable[FoldableEvent]) -> Roster:
    """Fold every event of one meeting, one event at a time, exactly as ROSTER.md reads."""
    meeting = MeetingState(meeting_id=meeting_id)
    attendees: dict[str, AttendeeState] = {}
    joined = peak = 0
    for event in sorted_unique(events):
        if event.kind not in (KIND_MEETING, KIND_PIPELINE):
            continue
        meeting_identify(meeting, event.detail)
        if is_meeting_level(event):
            meeting_apply(meeting, event)
            if is_meeting_end(event):
                for state in attendees.values():
                    attendee_apply(state, event)
        elif changes_attendee(event):
            parent = parent_of(event.attendee_id)
            state = attendees.get(parent)
            if state is None:
                state = attendees[parent] = AttendeeState(attendee_id=parent)
            attendee_apply(state, event)
        joined = sum(1 for state in attendees.values() if state.presence == PRESENCE_JOINED)
        peak = max(peak, joined)
    return Roster(meeting=meeting, peak_joined=peak, attendees=attendees)
