"""The roster fold (shared/ROSTER.md, to the letter). Pure Python: no Django, no I/O.

State is a fold of a meeting's events in *fold order*: ``detail.timestamp``, then the rank table,
then event type and natural key (so distinct events always have one order). Any permutation of
the same events, with any duplicates, gives the same roster.

Two ways in:

- :func:`roster_fold` folds every event of a meeting at once. It is the specification, and the
  oracle the tests hold the incremental path to.
- The incremental pieces used by ingest: :func:`attendee_fold` (re-derive one row from its events,
  or apply events that sort after everything already folded into a stored row), :func:`meeting_fold`
  (meeting-level fields) and :class:`PeakLedger` (``peak_joined`` from join intervals, stored as
  a head and a :class:`PeakTail` so most batches touch only the newest steps).

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
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from roster.domain.events import CONTENT_SUFFIX, KIND_MEETING, KIND_PIPELINE

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

# Attendee event types that change a row (or create one); anything else is timeline-only.
OWN_TYPES = frozenset(
    {
        "AttendeeAdded",
        "AttendeeAuthorized",
        "AttendeeJoined",
        "AttendeeLeft",
        "AttendeeDropped",
        "AttendeeDeleted",
        "AttendeeVideoStarted",
        "AttendeeVideoStopped",
        "AttendeeScreenShareStarted",
        "AttendeeScreenShareStopped",
        "AttendeeCapabilitiesUpdated",
    }
)
CONTENT_TYPES = frozenset(
    {
        "AttendeeContentJoined",
        "AttendeeContentLeft",
        "AttendeeContentDropped",
        "AttendeeContentVideoStarted",
        "AttendeeContentVideoStopped",
    }
)
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


class StoredEvent(NamedTuple):
    """An event read back from the log, in the shape the fold reads (a FoldableEvent)."""

    key: str
    kind: str
    event_type: str
    attendee_id: str
    timestamp: int
    detail: dict[str, Any]


STORED_EVENT_FIELDS = ("key", "kind", "event_type", "attendee_id", "timestamp", "detail")


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


def parent_of(attendee_id: str) -> str:
    return attendee_id[: -len(CONTENT_SUFFIX)] if attendee_id.endswith(CONTENT_SUFFIX) else attendee_id


def sorted_unique(events: Iterable[FoldableEvent]) -> list[FoldableEvent]:
    """Drop duplicates by natural key (the first seen is kept) and put the rest in fold order."""
    unique: dict[str, FoldableEvent] = {}
    for event in events:
        unique.setdefault(event.key, event)
    return sorted(unique.values(), key=fold_order)


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
    """Meeting-level fields. ``peak_joined`` and ``seq`` are kept by the caller."""

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


# --- peak_joined ----------------------------------------------------------------------------


def presence_deltas(intervals: Iterable[Sequence[int | None]]) -> Counter[tuple[int, int, int]]:
    """Join intervals as counted steps: +1 at (start, join rank), -1 at (end, end rank)."""
    deltas: Counter[tuple[int, int, int]] = Counter()
    for start, end, end_rank in intervals:
        deltas[(start, JOIN_RANK, 1)] += 1
        if end is not None:
            deltas[(end, end_rank, -1)] += 1
    return deltas


def peak_sweep(deltas: Counter[tuple[int, int, int]]) -> tuple[int, int, Position]:
    """(peak, joined at the end, position of the last step) over every attendee's steps.

    Within one (timestamp, rank) every step has the same sign (joins are rank 3, ends rank >= 6),
    so the running count after each event peaks where this per-step sweep does.
    """
    running = peak = 0
    last: Position = (-1, -1)
    for (ts, rank, sign), count in sorted(deltas.items()):
        running += sign * count
        peak = max(peak, running)
        last = (ts, rank)
    return peak, running, last


Step = tuple[int, int, int]  # (timestamp, rank, +1 join / -1 end)
PEAK_LEDGER_STEPS = 512


def _steps_totals(steps: Iterable[Sequence[int]], *, joined: int, peak: int) -> tuple[int, int]:
    """(peak, joined) after counted steps [timestamp, rank, sign, count], from the counts before them."""
    for _ts, _rank, sign, count in steps:
        joined += sign * count
        peak = max(peak, joined)
    return peak, joined


@dataclass(slots=True)
class PeakLedger:
    """What keeps ``peak_joined`` exact without re-reading every attendee.

    The meeting's most recent join/end steps (at most ``keep``, in order, each with its count) and
    the joined count and peak before the first of them. Chime delivers late more often than not,
    but rarely very late, so a batch's steps usually land inside the kept window and are merged
    there; a step before the window needs a sweep over every attendee (:func:`peak_ledger_build`).
    """

    steps: list[list[int]] = field(default_factory=list)  # [timestamp, rank, sign, count], sorted
    before_joined: int = 0
    before_peak: int = 0
    complete: bool = True  # nothing folded into before_*: a step anywhere can be merged

    def totals(self) -> tuple[int, int]:
        """(peak_joined, joined now)."""
        return _steps_totals(self.steps, joined=self.before_joined, peak=self.before_peak)

    def as_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "before": [self.before_joined, self.before_peak],
            "complete": self.complete,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> PeakLedger | None:
        """None for a meeting that has no ledger yet (a sweep builds one)."""
        if not doc:
            return None
        before_joined, before_peak = doc["before"]
        return cls(
            steps=doc["steps"],  # read only: merging and trimming build new lists
            before_joined=before_joined,
            before_peak=before_peak,
            complete=doc["complete"],
        )


Intervals = Iterable[Sequence[int | None]]


def steps_moved(changes: Iterable[tuple[Intervals, Intervals]]) -> Counter[Step]:
    """The steps that appeared (+) or vanished (-) when attendees' intervals went from old to new."""
    diff: Counter[Step] = Counter()
    for old, new in changes:
        diff.update(presence_deltas(new))
        diff.subtract(presence_deltas(old))
    return Counter({step: count for step, count in diff.items() if count})


def peak_ledger_build(deltas: Counter[Step], *, keep: int = PEAK_LEDGER_STEPS) -> PeakLedger:
    """A ledger from every attendee's steps (the sweep)."""
    ledger = PeakLedger(steps=[[*step, count] for step, count in sorted(deltas.items()) if count])
    return _ledger_trim(ledger, keep)


def peak_ledger_merge(
    ledger: PeakLedger, moved: Counter[Step], *, keep: int = PEAK_LEDGER_STEPS
) -> PeakLedger | None:
    """The ledger with ``moved`` merged in, or None when the ledger cannot tell (a count would go
    below zero: the ledger does not match the rows; or a step before the kept window that is not
    a join of a meeting still at its peak), so the caller sweeps every row."""
    if not moved:
        return ledger
    before_joined, before_peak = ledger.before_joined, ledger.before_peak
    if not ledger.complete:
        first = _step_of(ledger.steps[0]) if ledger.steps else None
        early = {step: count for step, count in moved.items() if first is None or step < first}
        if early:
            # A join that appears before the window adds one to the count at every later point.
            # If the count where the window starts is the peak so far (a meeting that has only
            # grown, as in a join burst), every earlier count was at most that, so the peak before
            # the window rises by one too, exactly. Anything else needs the folded steps.
            if before_peak != before_joined or any(
                sign != 1 or count < 0 for (_, _, sign), count in early.items()
            ):
                return None
            before_joined += sum(early.values())
            before_peak = before_joined
            moved = Counter({step: count for step, count in moved.items() if step not in early})
    steps = _steps_merged(ledger.steps, moved)
    if steps is None:
        return None
    merged = PeakLedger(
        steps=steps,
        before_joined=before_joined,
        before_peak=before_peak,
        complete=ledger.complete,
    )
    return _ledger_trim(merged, keep)


def _steps_merged(kept: list[list[int]], moved: Counter[Step]) -> list[list[int]] | None:
    """``kept`` with the moved counts added (None if a count would go below zero).

    Work in proportion to the steps that moved, not the window: binary search per step on a
    shallow copy (the kept step lists are shared with the stored document, never changed).
    """
    steps = list(kept)
    for step, count in sorted(moved.items()):
        at = bisect.bisect_left(steps, step, key=_step_of)
        found = at < len(steps) and _step_of(steps[at]) == step
        total = (steps[at][3] if found else 0) + count
        if total < 0:
            return None
        if found and total:
            steps[at] = [*step, total]
        elif found:
            del steps[at]
        elif total:
            steps.insert(at, [*step, total])
    return steps


# The ledger is stored in two parts: the head (older steps, ``Meeting.peak_ledger``) and the tail
# (the newest steps, ``Meeting.peak_tail``). Most batches move only steps after the head's last
# one, so they read and write the tail alone: about a kilobyte instead of the whole window.
PEAK_TAIL_STEPS = 64  # a tail longer than this spills into the head
PEAK_TAIL_KEEP = 32  # steps left in the tail after a spill: how late a step may come and stay cheap


@dataclass(slots=True)
class PeakTail:
    """The newest steps of a meeting's :class:`PeakLedger`, with what they need of the rest.

    A moved step after ``floor`` (the head's last step) belongs to the tail whatever the head
    holds, so merging it needs neither the head's steps nor its size.
    """

    steps: list[list[int]] = field(default_factory=list)  # [timestamp, rank, sign, count], sorted
    base_joined: int = 0  # joined count and peak after every step before the tail
    base_peak: int = 0
    floor: list[int] | None = None  # the head's last step; None when the head keeps no step
    head_complete: bool = True  # nothing folded away before the tail's steps

    def totals(self) -> tuple[int, int]:
        """(peak_joined, joined now)."""
        return _steps_totals(self.steps, joined=self.base_joined, peak=self.base_peak)

    def as_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "base": [self.base_joined, self.base_peak],
            "floor": self.floor,
            "complete": self.head_complete,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> PeakTail | None:
        """None for a meeting whose ledger is not split yet (or has no ledger)."""
        if not doc:
            return None
        base_joined, base_peak = doc["base"]
        return cls(
            steps=doc["steps"],  # read only, as PeakLedger.from_json
            base_joined=base_joined,
            base_peak=base_peak,
            floor=doc["floor"],
            head_complete=doc["complete"],
        )


def peak_tail_merge(tail: PeakTail, moved: Counter[Step], *, limit: int = PEAK_TAIL_STEPS) -> PeakTail | None:
    """The tail with ``moved`` merged in, or None when that needs the head: a step at or before
    ``floor`` (or anywhere, if the head folded steps away and keeps none), a count below zero, or
    a tail grown past ``limit``. None is never wrong, only slower: the caller merges the whole."""
    if not moved:
        return tail
    if tail.floor is None:
        if not tail.head_complete:
            return None
    elif min(moved) <= _step_of(tail.floor):
        return None
    steps = _steps_merged(tail.steps, moved)
    if steps is None or len(steps) > limit:
        return None
    return PeakTail(
        steps=steps,
        base_joined=tail.base_joined,
        base_peak=tail.base_peak,
        floor=tail.floor,
        head_complete=tail.head_complete,
    )


def peak_ledger_split(ledger: PeakLedger, *, keep: int = PEAK_TAIL_KEEP) -> tuple[PeakLedger, PeakTail]:
    """(head, tail): the ledger's last ``keep`` steps go to the tail, the rest stay in the head.

    A ledger that folded steps away keeps at least one step in its head, so the tail has a floor
    below which it sends merges to the whole ledger (whose window then decides about a sweep).
    """
    cut = max(len(ledger.steps) - keep, 0)
    if not cut and not ledger.complete and ledger.steps:
        cut = 1
    head = PeakLedger(
        steps=ledger.steps[:cut],
        before_joined=ledger.before_joined,
        before_peak=ledger.before_peak,
        complete=ledger.complete,
    )
    peak, joined = head.totals()
    tail = PeakTail(
        steps=ledger.steps[cut:],
        base_joined=joined,
        base_peak=peak,
        floor=list(_step_of(head.steps[-1])) if head.steps else None,
        head_complete=ledger.complete,
    )
    return head, tail


def peak_ledger_join(head: PeakLedger, tail: PeakTail | None) -> PeakLedger:
    """The whole ledger again (a ledger stored before the split has no tail: the head is whole)."""
    if tail is None:
        return head
    return PeakLedger(
        steps=[*head.steps, *tail.steps],
        before_joined=head.before_joined,
        before_peak=head.before_peak,
        complete=head.complete,
    )


def _step_of(entry: Sequence[int]) -> Step:
    return (entry[0], entry[1], entry[2])


def _ledger_trim(ledger: PeakLedger, keep: int) -> PeakLedger:
    """Fold all but the last ``keep`` steps into the counts before the window."""
    if len(ledger.steps) <= keep:
        return ledger
    head, ledger.steps = ledger.steps[:-keep], ledger.steps[-keep:]
    ledger.before_peak, ledger.before_joined = _steps_totals(
        head, joined=ledger.before_joined, peak=ledger.before_peak
    )
    ledger.complete = False
    return ledger


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


# --- Voice Connector streams ----------------------------------------------------------------

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


_STREAM_FIELDS = (
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
    for attr, key in _STREAM_FIELDS:
        value = detail.get(key)
        if not getattr(state, attr) and isinstance(value, str) and value:
            setattr(state, attr, value)
    if _stream_wins(state, event.event_type, event.timestamp):
        state.status, state.status_at = event.event_type, event.timestamp
