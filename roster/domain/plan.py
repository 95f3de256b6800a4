"""The fold plan of one ingest batch: what its new events do to each meeting they touch. Pure.

A touched row is advanced in place when its new events sort after everything folded into it,
else re-derived from its stored events; meeting fields are re-derived for a meeting-level event,
and MeetingEnded re-derives every row. ``seq`` rises by one for a batch that changed what a
client sees. The stored state comes through :class:`FoldReads` (roster.ingest.store; dicts in
the property tests, which so run this very code), read batch-wide: one query per kind of read,
whatever the number of meetings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from roster.domain.fold import (
    PRESENCE_DROPPED,
    AttendeeState,
    FoldableEvent,
    MeetingState,
    attendee_fold,
    can_advance,
    changes_attendee,
    fold_order,
    is_meeting_end,
    is_meeting_level,
    is_synthesized,
    meeting_fold,
    meeting_identify,
    parent_of,
    supersedes_repairs,
)
from roster.domain.peak import Intervals, PeakState, peak_advance, peak_sweep, steps_moved

STATUS_ENDED = "ended"

# What a client sees of a meeting (shared/ROSTER.md "Meeting state"), ``recording`` derived.
MEETING_PUBLIC_FIELDS = (
    "meeting_id",
    "external_meeting_id",
    "media_region",
    "status",
    "started_at",
    "ended_at",
    "peak_joined",
    "joined_count",
    "dropped_count",
    "video_count",
    "sharing_count",
    "transcription",
    "transcription_message",
    "pipelines",
    "primary_meeting_id",
    "seq",
)
# The meeting fields meeting_fold derives from meeting-level events.
_FOLDED_FIELDS = ("status", "started_at", "ended_at", "transcription", "transcription_message", "pipelines")


@dataclass(slots=True)
class MeetingRecord(MeetingState):
    """A meeting's stored row as ingest reads and writes it: the folded fields, the counters and
    ``seq``, and the fold's bookkeeping (``peak_marks``: :meth:`PeakState.marks`, None for a row
    stored before them)."""

    peak_joined: int = 0
    joined_count: int = 0
    dropped_count: int = 0
    video_count: int = 0
    sharing_count: int = 0
    seq: int = 0
    peak_marks: dict[str, Any] | None = None
    # A replica's primary (ROSTER.md "Meeting families"), from the Chime API (reconcile).
    primary_meeting_id: str | None = None
    # The Chime control region: the ``region`` of the meeting's first EventBridge envelope.
    control_region: str = ""
    # Attendee ids the last reconcile check found missing from ListAttendees (the two-miss rule).
    reconcile_missed: list[str] = field(default_factory=list)

    @classmethod
    def new(cls, meeting_id: str) -> MeetingRecord:
        """A meeting with no event yet (its peak state is known: nothing counted)."""
        return cls(meeting_id=meeting_id, peak_marks=PeakState().marks())

    def public(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in MEETING_PUBLIC_FIELDS)

    def private(self) -> tuple[Any, ...]:
        """The stored columns a client never sees: they move without a seq."""
        return (self.peak_marks, self.control_region, list(self.reconcile_missed))


@dataclass(frozen=True, slots=True)
class MeetingFacts:
    """What reconcile learned of a meeting from the Chime API (roster.domain.reconcile), stored in
    the transaction of its repairs: ``primary_meeting_id`` is set when given, external id and media
    region fill blanks only, ``reconcile_missed`` replaces the stored list when given."""

    primary_meeting_id: str | None = None
    external_meeting_id: str = ""
    media_region: str = ""
    reconcile_missed: tuple[str, ...] | None = None


MEETING_RECORD_FIELDS = tuple(f.name for f in fields(MeetingRecord))
ATTENDEE_RECORD_FIELDS = tuple(f.name for f in fields(AttendeeState))


class FoldReads(Protocol):
    """The stored state a batch's fold reads, batch-wide (see the module docstring)."""

    def attendee_rows(
        self, *, every: Sequence[str], touched: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, AttendeeState]]:
        """By meeting, then attendee id: every row of the ``every`` meetings and the ``touched`` rows
        (meeting -> attendee ids) that exist."""

    def attendee_histories(
        self, *, refold: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, list[FoldableEvent]]]:
        """By meeting, then row (parent attendee id): the stored events of the ``refold`` rows; under
        "" each meeting's stored MeetingEnded events."""

    def meeting_histories(self, *, meeting_ids: Sequence[str]) -> dict[str, list[FoldableEvent]]:
        """By meeting: every stored meeting-level event."""

    def joined_intervals(self, *, others_than: Mapping[str, Collection[str]]) -> dict[str, list[Intervals]]:
        """By meeting: the join intervals of every stored row except the given attendee ids."""


@dataclass(slots=True)
class MeetingFolded:
    """One meeting after the batch."""

    meeting: MeetingRecord  # seq raised when ``changed``
    written: list[AttendeeState]  # rows to store (anything moved, bookkeeping included)
    changed_rows: list[AttendeeState]  # rows whose public fields changed: their seq is the meeting's
    changed: bool  # what a client sees changed: seq raised, broadcast
    meeting_written: bool  # some column of the meeting row moved
    # What a client saw before the batch (outbound hooks name the change: roster.domain.hook_events):
    # the meeting's :meth:`MeetingRecord.public` and, by attendee id, each changed row's stored
    # state (absent: the row is new).
    before: tuple[Any, ...] = ()
    rows_before: dict[str, AttendeeState] = field(default_factory=dict)
    # What a client sees of the change once committed, made by the first that needs it (the hook
    # outbox in the transaction, else the broadcaster after commit): roster.read.serializers.
    shown: Any = None


@dataclass(slots=True)
class _Work:
    """What the batch does to one meeting, gathered so that the reads can be batch-wide."""

    meeting: MeetingRecord
    events: list[FoldableEvent]
    meeting_level: bool  # a meeting-level event: the meeting fields are re-derived
    ended: bool  # a MeetingEnded: every row is re-derived
    by_parent: dict[str, list[FoldableEvent]] = field(default_factory=lambda: defaultdict(list))
    rows: dict[str, AttendeeState] = field(default_factory=dict)
    refold: set[str] = field(default_factory=set)
    new_states: dict[str, AttendeeState] = field(default_factory=dict)
    peak: PeakState | None = None  # after the batch; None until known (a sweep is due)
    before: tuple[Any, ...] = ()
    before_private: tuple[Any, ...] = ()
    facts: MeetingFacts | None = None


def meetings_fold(
    *,
    meetings: Mapping[str, MeetingRecord],
    events: Iterable[FoldableEvent],
    reads: FoldReads,
    facts: Mapping[str, MeetingFacts] | None = None,
) -> list[MeetingFolded]:
    """Fold a batch's new meeting events (stored, deduplicated) into their meetings, and store
    reconcile's ``facts`` (by meeting id: those meetings are in ``meetings``, events or not)."""
    facts = facts or {}
    by_meeting: dict[str, list[FoldableEvent]] = defaultdict(list)
    for event in events:
        by_meeting[event.meeting_id].append(event)
    for meeting_id in facts:
        by_meeting.setdefault(meeting_id, [])
    work = [
        _Work(
            meeting=meetings[meeting_id],
            events=batch,
            meeting_level=any(is_meeting_level(event) for event in batch),
            ended=any(is_meeting_end(event) for event in batch),
            facts=facts.get(meeting_id),
        )
        for meeting_id, batch in by_meeting.items()
    ]
    for item in work:
        item.before = item.meeting.public()
        item.before_private = item.meeting.private()
        for event in item.events:
            if changes_attendee(event):
                item.by_parent[parent_of(event.attendee_id)].append(event)

    every = [item.meeting.meeting_id for item in work if item.ended]
    touched = {
        item.meeting.meeting_id: list(item.by_parent) for item in work if item.by_parent and not item.ended
    }
    rows = reads.attendee_rows(every=every, touched=touched) if every or touched else {}
    for item in work:
        item.rows = rows.get(item.meeting.meeting_id, {})
        item.refold = _refold_needed(item)

    refold = {item.meeting.meeting_id: item.refold for item in work if item.refold}
    histories = reads.attendee_histories(refold=refold) if refold else {}
    level = [item.meeting.meeting_id for item in work if item.meeting_level]
    meeting_events = reads.meeting_histories(meeting_ids=level) if level else {}
    for item in work:
        meeting_id = item.meeting.meeting_id
        _attendees_fold(item, histories=histories.get(meeting_id, {}))
        _meeting_fields_fold(item, meeting_events=meeting_events.get(meeting_id))

    # peak_joined: most batches count their moved steps; the rest sweep every row.
    unknown = [item for item in work if item.peak is None and not item.ended]
    others = (
        reads.joined_intervals(
            others_than={item.meeting.meeting_id: set(item.new_states) for item in unknown}
        )
        if unknown
        else {}
    )
    for item in work:
        if item.peak is None:  # an ended meeting's rows are all in new_states: nothing to read
            kept = others.get(item.meeting.meeting_id, [])
            item.peak = peak_sweep([*kept, *(state.intervals for state in item.new_states.values())])
    return [_finish(item) for item in work]


def attendee_rows_wanted(*, events: Iterable[FoldableEvent]) -> tuple[list[str], dict[str, set[str]]]:
    """The attendee rows a fold of these events, or of any part of them, may read with
    :meth:`FoldReads.attendee_rows` (its ``every`` and ``touched``), so that they can be read
    before the fold, with the meeting locks (roster.ingest.store.Store.batch_start)."""
    every = sorted({event.meeting_id for event in events if is_meeting_end(event)})
    ended = set(every)
    touched: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.meeting_id not in ended and changes_attendee(event):
            touched[event.meeting_id].add(parent_of(event.attendee_id))
    return every, dict(touched)


def _refold_needed(item: _Work) -> set[str]:
    """The rows to re-derive from their stored events rather than advance in place."""
    if item.ended:
        return set(item.rows) | set(item.by_parent)
    refold = set()
    for parent, events in item.by_parent.items():
        row = item.rows.get(parent)
        if row is None:
            if item.meeting.status == STATUS_ENDED:
                refold.add(parent)  # stored MeetingEnded events apply to it
        elif not can_advance(row, events) or _voids_or_is_repair(row, events):
            refold.add(parent)
    return refold


def _voids_or_is_repair(row: AttendeeState, events: Sequence[FoldableEvent]) -> bool:
    """A repair onto a stored row (a real event of its slot may be folded in), or a real Added /
    Deleted onto a row holding a repair (it may void it): the row is re-derived, since superseding
    removes an event already folded, which advancing in place cannot undo."""
    return any(is_synthesized(event) or (row.repaired and supersedes_repairs(event)) for event in events)


def _attendees_fold(item: _Work, *, histories: Mapping[str, list[FoldableEvent]]) -> None:
    ends = histories.get("", [])
    moved = []
    for parent in set(item.by_parent) | item.refold:
        old = item.rows.get(parent)
        if parent in item.refold:
            state = attendee_fold(parent, [*histories.get(parent, []), *ends])
        else:
            state = attendee_fold(parent, item.by_parent[parent], initial=old)
        if state is None:
            continue
        item.new_states[parent] = state
        moved.append((old.intervals if old is not None else [], state.intervals))
    meeting = item.meeting
    stored = PeakState.stored(joined=meeting.joined_count, peak=meeting.peak_joined, marks=meeting.peak_marks)
    item.peak = None if stored is None else peak_advance(stored, steps_moved(moved))


def _meeting_fields_fold(item: _Work, *, meeting_events: list[FoldableEvent] | None) -> None:
    meeting = item.meeting
    if meeting_events is not None:
        folded = meeting_fold(meeting.meeting_id, meeting_events)
        for name in _FOLDED_FIELDS:
            setattr(meeting, name, getattr(folded, name))
        identity = folded
    else:
        identity = MeetingState(meeting_id=meeting.meeting_id)
    for event in sorted(item.events, key=fold_order):
        meeting_identify(identity, event.detail)
        # The envelope's region (ChimeEvent.region; a stored event has none): first known wins.
        meeting.control_region = meeting.control_region or getattr(event, "region", "")
    meeting.external_meeting_id = meeting.external_meeting_id or identity.external_meeting_id
    meeting.media_region = meeting.media_region or identity.media_region
    facts = item.facts
    if facts is not None:
        if facts.primary_meeting_id:
            meeting.primary_meeting_id = facts.primary_meeting_id
        meeting.external_meeting_id = meeting.external_meeting_id or facts.external_meeting_id
        meeting.media_region = meeting.media_region or facts.media_region
        if facts.reconcile_missed is not None:
            meeting.reconcile_missed = sorted(set(facts.reconcile_missed))


def _counts_move(meeting: MeetingRecord, state: AttendeeState | None, sign: int) -> None:
    """Add (or remove) one row's share of the meeting's dropped / video / sharing counts."""
    if state is None:
        return
    meeting.dropped_count += sign * (state.presence == PRESENCE_DROPPED)
    meeting.video_count += sign * state.video
    meeting.sharing_count += sign * (state.screen_share or state.content_share or state.content_video)


def _finish(item: _Work) -> MeetingFolded:
    meeting, peak = item.meeting, item.peak
    assert peak is not None  # meetings_fold swept every meeting it could not advance
    meeting.peak_joined, meeting.joined_count, meeting.peak_marks = peak.peak, peak.joined, peak.marks()
    written, changed_rows, rows_before = [], [], {}
    for parent, state in item.new_states.items():
        old = item.rows.get(parent)
        if old == state:
            continue
        _counts_move(meeting, old, -1)
        _counts_move(meeting, state, +1)
        state.seq = old.seq if old is not None else 0
        written.append(state)
        if old is None or old.public() != state.public():
            changed_rows.append(state)
            if old is not None:
                rows_before[parent] = old
    changed = bool(changed_rows) or meeting.public() != item.before
    if changed:
        meeting.seq += 1
        for state in changed_rows:
            state.seq = meeting.seq
    return MeetingFolded(
        meeting=meeting,
        written=written,
        changed_rows=changed_rows,
        changed=changed,
        meeting_written=changed or meeting.private() != item.before_private,
        before=item.before,
        rows_before=rows_before,
    )
