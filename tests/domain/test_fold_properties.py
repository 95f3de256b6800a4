"""Properties of the roster fold (shared/ROSTER.md "Order"), checked with hypothesis.

(a) any permutation of a meeting's events, with any duplicates, gives the same roster;
(b) the incremental path of roster/ingest.py (advance a stored row in place when the new events sort
    after it, else re-derive it; extend peak_joined, else sweep) ends where the whole fold does,
    whatever the batches and their order;
(b') the peak ledger alone (any window, any split into head and tail, any intervals moved) answers
    exactly or asks for a sweep;
(c) peak_sweep over the final join intervals equals roster_fold's peak_joined (evaluated per event),
    and attendee_fold of one row equals that row of roster_fold.

Timestamps come from a few milliseconds only, so same-ms ties (the rank table) are frequent.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roster.dev.chime import BASE_TS, MEETING_ID, chime_event, unknown_event
from roster.domain.events import KIND_MEETING, KIND_PIPELINE, KIND_UNKNOWN, ChimeEvent
from roster.domain.fold import (
    AttendeeState,
    MeetingState,
    PeakLedger,
    PeakTail,
    Roster,
    attendee_fold,
    can_advance,
    changes_attendee,
    fold_order,
    is_meeting_end,
    is_meeting_level,
    meeting_fold,
    meeting_identify,
    parent_of,
    peak_ledger_build,
    peak_ledger_join,
    peak_ledger_merge,
    peak_ledger_split,
    peak_sweep,
    peak_tail_merge,
    presence_deltas,
    roster_fold,
    steps_moved,
)

# The peak ledger's window, its tail's limit and what a spill leaves in the tail, in the model:
# tiny, so every stream trims, spills, merges into the head and sweeps.
LEDGER_KEEP = 2
TAIL_LIMIT = 2
TAIL_KEEP = 1

PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# a9 only ever appears through its #content attendee: its row is created with presence null.
PEOPLE = ["a1", "a2", "a3", "a4", "a5"]
CONTENT = ["a1#content", "a2#content", "a9#content"]
OWN_TYPES = [  # repeats weight the draw towards joins and leaves
    "AttendeeAdded",
    "AttendeeAuthorized",
    "AttendeeJoined",
    "AttendeeJoined",
    "AttendeeJoined",
    "AttendeeJoined",
    "AttendeeLeft",
    "AttendeeLeft",
    "AttendeeDropped",
    "AttendeeDropped",
    "AttendeeDeleted",
    "AttendeeVideoStarted",
    "AttendeeVideoStopped",
    "AttendeeScreenShareStarted",
    "AttendeeScreenShareStopped",
    "AttendeeCapabilitiesUpdated",
    "AttendeeSomethingNew",  # an unknown chime:* type: timeline only
]
CONTENT_TYPES = [
    "AttendeeContentJoined",
    "AttendeeContentJoined",
    "AttendeeContentLeft",
    "AttendeeContentDropped",
    "AttendeeContentVideoStarted",
    "AttendeeContentVideoStopped",
    "AttendeeJoined",  # a #content attendee's other types create the parent row only
]
MEETING_TYPES = [
    "MeetingStarted",
    "MeetingEnded",
    "TranscriptionStarted",
    "TranscriptionStopped",
    "TranscriptionInterrupted",
    "TranscriptionResumed",
    "TranscriptionFailed",
    "MeetingSomethingNew",
]
PIPELINE_TYPES = [
    "MediaPipelineInProgress",
    "MediaPipelineDeleted",
    "MediaPipelineTemporaryFailure",
    "MediaPipelineResumed",
    "MediaPipelinePermanentFailure",
]
CAPABILITY = st.sampled_from(["SendReceive", "Send", "Receive", "None"])
TIMESTAMPS = st.integers(min_value=0, max_value=9).map(lambda ms: BASE_TS + ms)


def maybe(value: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from([value, None])


@st.composite
def meeting_identity(draw) -> dict[str, Any]:
    """Chime sends the same external meeting id and region on every event (or leaves them out)."""
    fields = {"externalMeetingId": draw(maybe("standup")), "mediaRegion": draw(maybe("eu-west-1"))}
    return {name: value for name, value in fields.items() if value is not None}


@st.composite
def attendee_events(draw) -> ChimeEvent:
    attendee = draw(st.sampled_from(PEOPLE + CONTENT))
    is_content = attendee.endswith("#content")
    event_type = draw(st.sampled_from(CONTENT_TYPES if is_content else OWN_TYPES))
    parent = parent_of(attendee)
    users = [f"{parent}#content"] if is_content else [f"user-{parent}", f"user-{parent}-alt"]
    extra: dict[str, Any] = draw(meeting_identity())
    user = draw(st.sampled_from([*users, None]))
    if user is not None:
        extra["externalUserId"] = user
    if event_type == "AttendeeJoined":
        network = draw(st.sampled_from(["Voip", "PSTN", None]))
        if network is not None:
            extra["networkType"] = network
    if event_type == "AttendeeCapabilitiesUpdated":
        extra["success"] = draw(st.sampled_from(["1", "0", True, False]))
        extra["attendeeCapabilities"] = {
            "audio": draw(CAPABILITY),
            "video": draw(CAPABILITY),
            "content": draw(CAPABILITY),
        }
    return chime_event(event_type, MEETING_ID, attendee, draw(TIMESTAMPS), **extra)


@st.composite
def meeting_events(draw) -> ChimeEvent:
    event_type = draw(st.sampled_from(MEETING_TYPES))
    extra = draw(meeting_identity())
    if event_type == "TranscriptionFailed" and draw(st.booleans()):
        extra["message"] = "Internal server error"
    return chime_event(event_type, MEETING_ID, None, draw(TIMESTAMPS), **extra)


@st.composite
def pipeline_events(draw) -> ChimeEvent:
    event = chime_event(
        draw(st.sampled_from(PIPELINE_TYPES)),
        MEETING_ID,
        None,
        draw(TIMESTAMPS),
        mediaPipelineId=draw(st.sampled_from(["pipe-1", "pipe-2"])),
        **draw(meeting_identity()),
    )
    assert event.kind == KIND_PIPELINE
    return event


@st.composite
def unknown_kind_events(draw) -> ChimeEvent:
    """A detail-type the service does not model: stored, never applied."""
    event = unknown_event(
        {
            "eventType": draw(st.sampled_from(["chime:AttendeeJoined", "chime:MeetingEnded"])),
            "meetingId": MEETING_ID,
            "attendeeId": draw(st.sampled_from(PEOPLE)),
            "timestamp": draw(TIMESTAMPS),
        }
    )
    assert event.kind == KIND_UNKNOWN
    return event


ANY_EVENT = st.one_of(
    attendee_events(),
    attendee_events(),
    attendee_events(),
    attendee_events(),
    attendee_events(),
    attendee_events(),
    meeting_events(),
    pipeline_events(),
    unknown_kind_events(),
)


@st.composite
def meeting_event_sets(draw) -> list[ChimeEvent]:
    """Distinct occurrences of one meeting: one detail per natural key, as Chime sends them."""
    size = draw(st.integers(min_value=4, max_value=40))
    unique: dict[str, ChimeEvent] = {}
    for event in draw(st.lists(ANY_EVENT, min_size=size, max_size=size)):
        unique.setdefault(event.key, event)
    return list(unique.values())


@st.composite
def deliveries(draw) -> tuple[list[ChimeEvent], list[ChimeEvent]]:
    """(the distinct events, the same events in a random order with random duplicates)."""
    events = draw(meeting_event_sets())
    duplicates = draw(st.lists(st.sampled_from(events), max_size=10)) if events else []
    return events, draw(st.permutations([*events, *duplicates]))


def snapshot(roster: Roster) -> dict[str, Any]:
    """What a client sees, plus the join intervals peak_joined is computed from."""
    return {
        "meeting": dataclasses.asdict(roster.meeting),
        "recording": roster.meeting.recording,
        "peak_joined": roster.peak_joined,
        "attendees": {
            attendee_id: {**state.public(), "intervals": state.intervals}
            for attendee_id, state in sorted(roster.attendees.items())
        },
    }


# --- (a) order and duplicates do not matter --------------------------------------------------------


@PROPERTY_SETTINGS
@given(deliveries())
def test_any_permutation_with_duplicates_gives_the_same_roster(delivered):
    events, arrival = delivered
    expected = roster_fold(MEETING_ID, events)
    actual = roster_fold(MEETING_ID, arrival)
    assert snapshot(actual) == snapshot(expected)
    assert actual.attendees == expected.attendees  # bookkeeping included


# --- (b) the incremental path of roster/ingest.py equals the whole fold -------------------------


class IncrementalMeeting:
    """roster/ingest.py's fold of one meeting (``_events_apply`` -> ``_meetings_fold``), in memory.

    ``log`` is the Event table, ``rows`` the Attendee rows (whole AttendeeState, bookkeeping included),
    ``meeting`` and ``peak`` the Meeting row. Each step below names the ingest function it mirrors.
    """

    def __init__(self, meeting_id: str) -> None:
        self.meeting_id = meeting_id
        self.log: dict[str, ChimeEvent] = {}
        self.rows: dict[str, AttendeeState] = {}
        self.meeting = MeetingState(meeting_id=meeting_id)
        self.head: PeakLedger | None = None  # Meeting.peak_ledger
        self.tail: PeakTail | None = None  # Meeting.peak_tail
        self.sweeps = 0
        self.tail_merges = 0
        self.head_merges = 0
        self.advances = 0
        self.refolds = 0

    def ingest(self, batch: list[ChimeEvent]) -> None:
        # _events_apply: drop duplicates within the batch and against the log, append the rest.
        new: list[ChimeEvent] = []
        for event in batch:
            if event.key not in self.log:
                self.log[event.key] = event
                new.append(event)
        events = [event for event in new if event.kind in (KIND_MEETING, KIND_PIPELINE)]
        if not events:
            return

        # _meetings_fold: what the batch touches.
        by_parent: dict[str, list[ChimeEvent]] = defaultdict(list)
        for event in events:
            if changes_attendee(event):
                by_parent[parent_of(event.attendee_id)].append(event)
        meeting_level = any(is_meeting_level(event) for event in events)
        ended = any(is_meeting_end(event) for event in events)

        # _rows_load: which rows must be re-derived from the log.
        refold: set[str] = set()
        if ended:
            refold = set(self.rows) | set(by_parent)
        else:
            for parent, parent_events in by_parent.items():
                row = self.rows.get(parent)
                if row is None:
                    if self.meeting.status == "ended":
                        refold.add(parent)
                elif not can_advance(row, parent_events):
                    refold.add(parent)

        # _histories_load: the rows' stored events plus the meeting's MeetingEnded events.
        ends = [e for e in self.log.values() if e.parent_id == "" and e.event_type == "chime:MeetingEnded"]

        # _meeting_fold: attendees.
        new_states: dict[str, AttendeeState] = {}
        intervals_moved: list[tuple[list[Any], list[Any]]] = []
        for parent in set(by_parent) | refold:
            old = self.rows.get(parent)
            if parent in refold:
                self.refolds += 1
                history = [e for e in self.log.values() if e.parent_id == parent]
                state = attendee_fold(parent, [*history, *ends])
            else:
                self.advances += old is not None
                state = attendee_fold(parent, by_parent[parent], initial=old)
            if state is None:
                continue
            new_states[parent] = state
            intervals_moved.append((old.intervals if old else [], state.intervals))

        # _meeting_fold: meeting fields.
        if meeting_level:
            stored = [e for e in self.log.values() if e.parent_id == "" and e.meeting_id == self.meeting_id]
            folded = meeting_fold(self.meeting_id, stored)
            for name in ("status", "started_at", "ended_at", "transcription", "transcription_message"):
                setattr(self.meeting, name, getattr(folded, name))
            self.meeting.pipelines = dict(folded.pipelines)
            identity = folded
        else:
            identity = MeetingState(meeting_id=self.meeting_id)
        for event in sorted(events, key=fold_order):
            meeting_identify(identity, event.detail)
        self.meeting.external_meeting_id = self.meeting.external_meeting_id or identity.external_meeting_id
        self.meeting.media_region = self.meeting.media_region or identity.media_region

        # _peak_fold: merged into the ledger's tail, else into the whole ledger, else swept.
        moved = steps_moved(intervals_moved)
        tail = None if ended else self.tail
        merged = peak_tail_merge(tail, moved, limit=TAIL_LIMIT) if tail is not None else None
        if merged is not None:
            self.tail_merges += bool(moved)
        else:
            head = None if ended else self.head
            ledger = None
            if head is not None:
                ledger = peak_ledger_merge(peak_ledger_join(head, tail), moved, keep=LEDGER_KEEP)
                self.head_merges += ledger is not None
            if ledger is None:
                self.sweeps += 1
                deltas: Counter[tuple[int, int, int]] = Counter()
                for state in new_states.values():
                    deltas.update(presence_deltas(state.intervals))
                for parent, state in self.rows.items():
                    if parent not in new_states:
                        deltas.update(presence_deltas(state.intervals))
                ledger = peak_ledger_build(deltas, keep=LEDGER_KEEP)
            self.head, merged = peak_ledger_split(ledger, keep=TAIL_KEEP)
        self.tail = merged
        self.rows.update(new_states)

    def totals(self) -> tuple[int, int]:
        """(peak_joined, joined_count) as the Meeting row holds them."""
        return self.tail.totals() if self.tail else (0, 0)


@st.composite
def batched_deliveries(draw) -> tuple[list[ChimeEvent], list[list[ChimeEvent]]]:
    """(the distinct events, the deliveries cut into batches, in a random order)."""
    events, arrival = draw(deliveries())
    if draw(st.booleans()):
        # Mostly in time order, as Chime usually delivers: this exercises advancing rows in place.
        arrival = sorted(arrival, key=lambda event: event.timestamp)
    if draw(st.booleans()):
        return events, [[event] for event in arrival]  # one message per receive, as at a low rate
    cut_count = draw(st.integers(min_value=0, max_value=12))
    cut = st.integers(min_value=0, max_value=len(arrival))
    cuts = sorted(set(draw(st.lists(cut, min_size=cut_count, max_size=cut_count))))
    bounds = [0, *cuts, len(arrival)]
    return events, [arrival[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]


@PROPERTY_SETTINGS
@given(batched_deliveries())
def test_incremental_ingest_path_equals_the_whole_fold(delivered):
    events, batches = delivered
    expected = roster_fold(MEETING_ID, events)
    model = IncrementalMeeting(MEETING_ID)
    for batch in batches:
        model.ingest(batch)

    assert {k: {**s.public(), "intervals": s.intervals} for k, s in model.rows.items()} == {
        k: {**s.public(), "intervals": s.intervals} for k, s in expected.attendees.items()
    }
    assert model.rows == expected.attendees  # bookkeeping too: later batches rely on it
    peak_joined, joined_count = model.totals()
    assert peak_joined == expected.peak_joined
    assert joined_count == sum(s.presence == "joined" for s in expected.attendees.values())
    assert dataclasses.asdict(model.meeting) == dataclasses.asdict(expected.meeting)


def test_incremental_model_takes_every_path():
    """Guard against a hollow property: the model must really advance in place, merge into the
    ledger's tail, spill into the whole ledger, take a join before its window while the meeting
    is at its peak there, and sweep for any other step before its window."""
    joined = chime_event("AttendeeJoined", MEETING_ID, "a1", BASE_TS + 1)
    left = chime_event("AttendeeLeft", MEETING_ID, "a1", BASE_TS + 5)
    later = chime_event("AttendeeJoined", MEETING_ID, "a3", BASE_TS + 6)
    early = chime_event("AttendeeJoined", MEETING_ID, "a2", BASE_TS + 0)
    early_left = chime_event("AttendeeLeft", MEETING_ID, "a2", BASE_TS + 2)
    model = IncrementalMeeting(MEETING_ID)
    model.ingest([joined])
    assert model.sweeps == 1  # a meeting's first batch builds its ledger
    model.ingest([left])  # after a1's folded position: advanced; after the head: merged in the tail
    assert (model.advances, model.tail_merges, model.head_merges) == (1, 1, 0)
    model.ingest([later])  # the tail would pass TAIL_LIMIT: merged in the whole ledger, trimmed, split
    assert (model.sweeps, model.tail_merges, model.head_merges) == (1, 1, 1)
    assert model.rows["a1"].presence == "left"
    assert not model.head.complete and len(model.head.steps) == len(model.tail.steps) == 1
    model.ingest([early])  # a join before the kept window, all folded steps joins: merged
    assert (model.sweeps, model.head_merges) == (1, 2)
    assert model.totals() == (2, 2)
    model.ingest([early_left])  # a leave before the kept window: swept
    assert model.sweeps == 2
    assert model.totals() == (2, 1)
    assert roster_fold(MEETING_ID, [joined, left, later, early, early_left]).peak_joined == 2


def test_incremental_model_rederives_a_new_row_of_an_ended_meeting():
    """A row first seen after MeetingEnded is stored is folded with it (ingest's ``_rows_load``)."""
    ended = chime_event("MeetingEnded", MEETING_ID, None, BASE_TS + 5)
    joined = chime_event("AttendeeJoined", MEETING_ID, "a1", BASE_TS + 3)
    model = IncrementalMeeting(MEETING_ID)
    model.ingest([ended])
    model.ingest([joined])
    assert model.refolds == 1
    assert model.rows["a1"].presence == "left"
    assert model.rows == roster_fold(MEETING_ID, [ended, joined]).attendees
    assert model.totals() == (1, 0)


# --- (b') the peak ledger alone: any window, any split, any intervals moved ------------------------


@st.composite
def attendee_intervals(draw) -> list[list[int | None]]:
    """One attendee's join intervals: [start, end or None, end rank], in a few milliseconds."""
    intervals: list[list[int | None]] = []
    at = draw(st.integers(min_value=0, max_value=6))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        end = draw(st.one_of(st.none(), st.integers(min_value=at, max_value=at + 6)))
        intervals.append([at, end, draw(st.sampled_from([6, 7, 8, 9]))])
        if end is None:
            break
        at = end + draw(st.integers(min_value=0, max_value=3))
    return intervals


@st.composite
def ledger_moves(
    draw,
) -> tuple[list[list[list[int | None]]], list[tuple[int, list[list[int | None]]]], int, int]:
    """(every attendee's intervals, (attendee, new intervals) changes, window, tail keep). Joins
    weigh more, so meetings often only grow (the case a late join before the window may skip the
    sweep in)."""
    joins_only = draw(st.booleans())
    joined = st.integers(min_value=0, max_value=12).map(lambda at: [[at, None, 7]])
    intervals = joined if joins_only else attendee_intervals()
    rows = draw(st.lists(intervals, min_size=1, max_size=10))
    changes = draw(
        st.lists(
            st.tuples(st.integers(min_value=0, max_value=len(rows) + 3), intervals), min_size=1, max_size=4
        )
    )
    return (
        rows,
        changes,
        draw(st.integers(min_value=1, max_value=6)),
        draw(st.integers(min_value=0, max_value=4)),
    )


def _deltas(rows) -> Counter[tuple[int, int, int]]:
    deltas: Counter[tuple[int, int, int]] = Counter()
    for intervals in rows:
        deltas.update(presence_deltas(intervals))
    return deltas


@PROPERTY_SETTINGS
@given(ledger_moves())
def test_peak_ledger_merges_are_exact_or_ask_for_a_sweep(case):
    """Whatever the window and the split, a merge that answers equals the sweep of the new rows;
    the tail answers only what the whole ledger would."""
    rows, changes, window, tail_keep = case
    ledger = peak_ledger_build(_deltas(rows), keep=window)
    head, tail = peak_ledger_split(ledger, keep=tail_keep)
    assert peak_ledger_join(head, tail) == ledger and tail.totals() == ledger.totals()

    new_rows = dict(enumerate(rows))
    pairs = []
    for attendee, intervals in changes:
        pairs.append((new_rows.get(attendee, []), intervals))
        new_rows[attendee] = intervals
    moved = steps_moved(pairs)
    swept = peak_sweep(_deltas(new_rows.values()))[:2]

    merged = peak_ledger_merge(ledger, moved, keep=window)
    if merged is not None:
        assert merged.totals() == swept
    tail_merged = peak_tail_merge(tail, moved, limit=window + tail_keep)
    if tail_merged is not None:
        assert tail_merged.totals() == swept


# --- (c) peak_sweep and attendee_fold agree with roster_fold ------------------------------------


@PROPERTY_SETTINGS
@given(meeting_event_sets())
def test_peak_sweep_and_attendee_fold_agree_with_the_whole_fold(events):
    roster = roster_fold(MEETING_ID, events)
    deltas: Counter[tuple[int, int, int]] = Counter()
    for state in roster.attendees.values():
        deltas.update(presence_deltas(state.intervals))
    peak_joined, joined_count, _ = peak_sweep(deltas)
    assert peak_joined == roster.peak_joined
    assert joined_count == sum(state.presence == "joined" for state in roster.attendees.values())

    for attendee_id, state in roster.attendees.items():
        assert attendee_fold(attendee_id, events) == state
    parents = {parent_of(e.attendee_id) for e in events if changes_attendee(e)}
    assert set(roster.attendees) == parents
