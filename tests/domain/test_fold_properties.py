"""Properties of the roster fold (shared/ROSTER.md "Order"), checked with hypothesis.

(a) any permutation of a meeting's events, with any duplicates, gives the same roster;
(b) the fold plan ingest runs (roster.domain.plan.meetings_fold: advance a stored row in place when
    the new events sort after it, else re-derive it; advance peak_joined, else sweep; raise seq)
    ends where the whole fold does, whatever the batches and their order. The plan is the
    production code; only its storage is replaced here, by dicts (MemoryStore);
(b') peak_advance alone (any rows, any intervals moved) answers exactly or asks for a sweep;
(c) peak_sweep over the final join intervals equals roster_fold's peak_joined (evaluated per event),
    and attendee_fold of one row equals that row of roster_fold.

Timestamps come from a few milliseconds only, so same-ms ties (the rank table) are frequent.
Synthesized (reconcile) events are mixed with real ones: superseding (shared/ROSTER.md "Repairs")
must keep every property, and (d) checks what it does.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roster.dev.chime import BASE_TS, MEETING_ID, chime_event, unknown_event
from roster.domain.events import KIND_MEETING, KIND_PIPELINE, KIND_UNKNOWN, SOURCE_RECONCILE, ChimeEvent
from roster.domain.fold import (
    AttendeeState,
    Roster,
    attendee_fold,
    changes_attendee,
    is_meeting_level,
    parent_of,
    roster_fold,
    superseded_drop,
    type_name,
)
from roster.domain.peak import PeakState, peak_advance, peak_sweep, steps_moved
from roster.domain.plan import MeetingFolded, MeetingRecord, attendee_rows_wanted, meetings_fold
from roster.domain.repairs import (
    attendee_added_repair,
    attendee_deleted_repair,
    capabilities_repair,
    meeting_ended_repair,
    repair_event,
)

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)

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


@st.composite
def repair_events(draw) -> ChimeEvent:
    """An event reconcile synthesized (source "reconcile"): the four types ROSTER.md names."""
    kind = draw(st.sampled_from(["ended", "deleted", "added", "added", "capabilities"]))
    ts, attendee = draw(TIMESTAMPS), draw(st.sampled_from(PEOPLE))
    if kind == "ended":
        body = meeting_ended_repair(meeting_id=MEETING_ID, timestamp=ts)
    elif kind == "deleted":
        body = attendee_deleted_repair(meeting_id=MEETING_ID, attendee_id=attendee, timestamp=ts)
    elif kind == "added":
        user = draw(st.sampled_from([f"user-{attendee}", f"user-{attendee}-api", None]))
        body = attendee_added_repair(
            meeting_id=MEETING_ID, attendee_id=attendee, external_user_id=user, timestamp=ts
        )
    else:
        caps = {"Audio": draw(CAPABILITY), "Video": draw(CAPABILITY), "Content": draw(CAPABILITY)}
        body = capabilities_repair(
            meeting_id=MEETING_ID, attendee_id=attendee, capabilities=caps, timestamp=ts
        )
    event = repair_event(body)
    assert event.source == SOURCE_RECONCILE
    return event


ANY_EVENT = st.one_of(
    repair_events(),
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


# --- (b) the fold plan of ingest equals the whole fold ---------------------------------------------


class MemoryStore:
    """The stored state of one meeting as dicts, read the way roster.ingest.store reads the database
    (a FoldReads). Counts its reads, so the tests can tell which paths a stream took."""

    def __init__(self, meeting_id: str, *, marks: bool = True) -> None:
        self.log: dict[str, ChimeEvent] = {}
        self.rows: dict[str, AttendeeState] = {}
        self.meeting = MeetingRecord.new(meeting_id) if marks else MeetingRecord(meeting_id=meeting_id)
        self.reads: Counter[str] = Counter()

    def ingest(self, batch: list[ChimeEvent]) -> MeetingFolded | None:
        """What the ingest service does around the plan: log the new keys, fold, store what moved."""
        new = []
        for event in batch:
            if event.key not in self.log:
                self.log[event.key] = event
                new.append(event)
        events = [event for event in new if event.kind in (KIND_MEETING, KIND_PIPELINE)]
        if not events:
            return None
        # What ingest reads before the fold, from the whole batch (logged keys included).
        folded_kinds = [event for event in batch if event.kind in (KIND_MEETING, KIND_PIPELINE)]
        self.wanted = attendee_rows_wanted(events=folded_kinds)
        copy = dataclasses.replace(self.meeting, pipelines=dict(self.meeting.pipelines))
        (folded,) = meetings_fold(meetings={copy.meeting_id: copy}, events=events, reads=self)
        self.rows.update({state.attendee_id: state.copy() for state in folded.written})
        self.meeting = folded.meeting
        return folded

    def attendee_rows(self, *, every, touched):
        self.reads["rows"] += 1
        every_read, touched_read = self.wanted  # the fold never asks for a row not read before it
        assert set(every) <= set(every_read)
        assert all(m in every_read or set(ids) <= touched_read.get(m, set()) for m, ids in touched.items())
        meeting_id = self.meeting.meeting_id
        wanted = set(self.rows) if meeting_id in every else set(touched.get(meeting_id, ()))
        found = {key: self.rows[key].copy() for key in wanted if key in self.rows}
        return {meeting_id: found} if found else {}

    def attendee_histories(self, *, refold):
        self.reads["histories"] += 1
        (parents,) = refold.values()
        history: dict[str, list[ChimeEvent]] = defaultdict(list)
        for event in self.log.values():
            if event.kind != KIND_MEETING:
                continue
            if event.parent_id in parents:
                history[event.parent_id].append(event)
            elif event.parent_id == "" and event.event_type == "chime:MeetingEnded":
                history[""].append(event)
        return {self.meeting.meeting_id: history}

    def meeting_histories(self, *, meeting_ids):
        self.reads["meeting"] += 1
        level = [event for event in self.log.values() if is_meeting_level(event)]
        return {self.meeting.meeting_id: level}

    def joined_intervals(self, *, others_than):
        self.reads["sweep"] += 1
        (skip,) = others_than.values()
        return {self.meeting.meeting_id: [s.intervals for key, s in self.rows.items() if key not in skip]}


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
@given(batched_deliveries(), st.booleans())
def test_the_fold_plan_of_ingest_equals_the_whole_fold(delivered, marks):
    """Whatever the batches and their order (and for a meeting stored before its peak marks)."""
    events, batches = delivered
    expected = roster_fold(MEETING_ID, events)
    store = MemoryStore(MEETING_ID, marks=marks)
    seq = 0
    for batch in batches:
        folded = store.ingest(batch)
        if folded is None:
            continue
        assert folded.meeting.seq == seq + folded.changed  # one per batch that changed something
        seq = folded.meeting.seq
        assert all(row.seq == seq for row in folded.changed_rows)

    assert store.rows == expected.attendees  # bookkeeping too: later batches rely on it
    meeting = store.meeting
    assert {name: getattr(meeting, name) for name in dataclasses.asdict(expected.meeting)} == (
        dataclasses.asdict(expected.meeting)
    )
    rows = list(expected.attendees.values())
    assert (meeting.peak_joined, meeting.joined_count) == (
        expected.peak_joined,
        sum(s.presence == "joined" for s in rows),
    )
    assert (meeting.dropped_count, meeting.video_count, meeting.sharing_count) == (
        sum(s.presence == "dropped" for s in rows),
        sum(s.video for s in rows),
        sum(s.screen_share or s.content_share or s.content_video for s in rows),
    )
    assert all(0 < row.seq <= meeting.seq for row in store.rows.values())


def test_the_fold_plan_takes_every_path():
    """Guard against a hollow property: the plan must really advance rows in place, re-derive a row
    from its history for a late event, count peak steps without a sweep, and sweep when it cannot
    tell (or when the meeting was stored before its peak marks)."""

    def at(event_type: str, attendee: str, ms: int) -> ChimeEvent:
        return chime_event(event_type, MEETING_ID, attendee, BASE_TS + ms)

    stream = [at("AttendeeJoined", "a1", 1), at("AttendeeJoined", "a2", 3)]
    store = MemoryStore(MEETING_ID)
    store.ingest(stream)
    stream.append(at("AttendeeLeft", "a1", 5))
    store.ingest(stream[-1:])  # after a1's folded position: advanced; after every step: counted
    assert (store.reads["histories"], store.reads["sweep"]) == (0, 0)
    assert (store.meeting.peak_joined, store.meeting.joined_count) == (2, 1)
    stream.append(at("AttendeeJoined", "a3", 0))
    store.ingest(stream[-1:])  # a late join below the peak: swept
    assert store.reads["sweep"] == 1
    assert (store.meeting.peak_joined, store.meeting.joined_count) == (3, 2)
    stream.append(at("AttendeeAdded", "a1", 0))
    store.ingest(stream[-1:])  # before a1's folded position: re-derived from its history
    assert (store.reads["histories"], store.reads["sweep"]) == (1, 1)
    stream.append(at("AttendeeLeft", "a3", 2))
    store.ingest(stream[-1:])  # a late leave before the peak was reached: swept
    assert store.reads["sweep"] == 2
    expected = roster_fold(MEETING_ID, stream)
    assert store.rows == expected.attendees
    assert (store.meeting.peak_joined, store.meeting.joined_count) == (expected.peak_joined, 1) == (2, 1)

    legacy = MemoryStore(MEETING_ID, marks=False)
    legacy.ingest(stream[:1])
    assert legacy.reads["sweep"] == 1
    assert legacy.meeting.peak_marks == PeakState(1, 1, (BASE_TS + 1, 3), (BASE_TS + 1, 3)).marks()


def test_a_new_row_of_an_ended_meeting_is_derived_with_its_end():
    """A row first seen after MeetingEnded is stored is folded with it."""
    ended = chime_event("MeetingEnded", MEETING_ID, None, BASE_TS + 5)
    joined = chime_event("AttendeeJoined", MEETING_ID, "a1", BASE_TS + 3)
    store = MemoryStore(MEETING_ID)
    store.ingest([ended])
    store.ingest([joined])
    assert store.reads["histories"] == 1
    assert store.rows["a1"].presence == "left"
    assert store.rows == roster_fold(MEETING_ID, [ended, joined]).attendees
    assert (store.meeting.peak_joined, store.meeting.joined_count) == (1, 0)


# --- (b') peak_advance alone: any rows, any intervals moved ---------------------------------------


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
def peak_moves(draw) -> tuple[list[list[list[int | None]]], list[tuple[int, list[list[int | None]]]]]:
    """(every attendee's intervals, (attendee, new intervals) changes). Joins weigh more, so meetings
    often only grow (rule 2's case), and ends often come after the peak (rule 3's)."""
    joins_only = draw(st.booleans())
    joined = st.integers(min_value=0, max_value=12).map(lambda at: [[at, None, 7]])
    intervals = joined if joins_only else attendee_intervals()
    rows = draw(st.lists(intervals, min_size=1, max_size=10))
    changes = draw(
        st.lists(
            st.tuples(st.integers(min_value=0, max_value=len(rows) + 3), intervals), min_size=1, max_size=4
        )
    )
    return rows, changes


@settings(PROPERTY_SETTINGS, max_examples=3000)  # pure and quick: its rules' corners are narrow
@given(peak_moves())
def test_peak_advance_is_exact_or_asks_for_a_sweep(case):
    rows, changes = case
    new_rows = dict(enumerate(rows))
    pairs = []
    for attendee, intervals in changes:
        pairs.append((new_rows.get(attendee, []), intervals))
        new_rows[attendee] = intervals
    truth = peak_sweep(new_rows.values())
    advanced = peak_advance(peak_sweep(rows), steps_moved(pairs))
    if advanced is not None:
        assert (advanced.joined, advanced.peak, advanced.last) == (truth.joined, truth.peak, truth.last)
        # peak_at may be later than where the peak was first reached (a bound), never earlier:
        # rule 3 relies on it.
        assert truth.peak_at is None or advanced.peak_at >= truth.peak_at


# --- (c) peak_sweep and attendee_fold agree with roster_fold ------------------------------------


@PROPERTY_SETTINGS
@given(meeting_event_sets())
def test_peak_sweep_and_attendee_fold_agree_with_the_whole_fold(events):
    roster = roster_fold(MEETING_ID, events)
    swept = peak_sweep(state.intervals for state in roster.attendees.values())
    assert swept.peak == roster.peak_joined
    assert swept.joined == sum(state.presence == "joined" for state in roster.attendees.values())

    for attendee_id, state in roster.attendees.items():
        assert attendee_fold(attendee_id, events) == state
    parents = {parent_of(e.attendee_id) for e in events if changes_attendee(e)}
    assert set(roster.attendees) == parents


# --- (d) superseding: a real event voids the synthesized ones of its slot ------------------------


def _slot(event: ChimeEvent) -> tuple[str, str]:
    return (event.attendee_id, type_name(event.event_type))


@PROPERTY_SETTINGS
@given(meeting_event_sets())
def test_a_real_event_supersedes_the_repairs_of_its_slot(events):
    """The roster is the fold of the events less each repair whose slot (MeetingEnded; an attendee's
    AttendeeAdded / AttendeeDeleted) has a real event, and of nothing less: a repair without a real
    event of its slot, and every capabilities repair, stays."""
    real = {_slot(e) for e in events if e.source != SOURCE_RECONCILE and e.kind == KIND_MEETING}
    voided = {
        e.key
        for e in events
        if e.source == SOURCE_RECONCILE
        and _slot(e) in real
        and type_name(e.event_type) in ("MeetingEnded", "AttendeeAdded", "AttendeeDeleted")
    }
    kept = [e for e in events if e.key not in voided]
    assert {e.key for e in superseded_drop(events)} == {e.key for e in kept}
    roster = roster_fold(MEETING_ID, events)
    assert snapshot(roster) == snapshot(roster_fold(MEETING_ID, kept))
    real_ends = [
        e.timestamp
        for e in events
        if e.kind == KIND_MEETING and _slot(e) == ("", "MeetingEnded") and e.source != SOURCE_RECONCILE
    ]
    if real_ends:
        assert roster.meeting.ended_at == min(real_ends)  # the real one's time closes the intervals


def test_a_real_meeting_end_closes_the_intervals_a_repair_had_closed():
    joined = chime_event("AttendeeJoined", MEETING_ID, "a1", BASE_TS + 1)
    synthesized = repair_event(meeting_ended_repair(meeting_id=MEETING_ID, timestamp=BASE_TS + 2))
    real = chime_event("MeetingEnded", MEETING_ID, None, BASE_TS + 7)
    assert synthesized.key != chime_event("MeetingEnded", MEETING_ID, None, BASE_TS + 2).key
    repaired = roster_fold(MEETING_ID, [joined, synthesized])
    assert (repaired.meeting.ended_at, repaired.attendees["a1"].joined_ms) == (BASE_TS + 2, 1)
    for order in ([joined, synthesized, real], [real, synthesized, joined]):
        roster = roster_fold(MEETING_ID, order)
        assert (roster.meeting.status, roster.meeting.ended_at) == ("ended", BASE_TS + 7)
        assert roster.attendees["a1"].joined_ms == 6 and roster.attendees["a1"].presence == "left"


def test_a_real_deletion_supersedes_a_synthesized_one_and_a_real_add_a_synthesized_add():
    joined = chime_event("AttendeeJoined", MEETING_ID, "a1", BASE_TS + 1)
    deleted = repair_event(
        attendee_deleted_repair(meeting_id=MEETING_ID, attendee_id="a1", timestamp=BASE_TS + 2)
    )
    rejoined = chime_event("AttendeeJoined", MEETING_ID, "a1", BASE_TS + 3)
    assert roster_fold(MEETING_ID, [joined, deleted, rejoined]).attendees["a1"].presence == "removed"
    real = chime_event("AttendeeDeleted", MEETING_ID, "a1", BASE_TS + 5)
    state = roster_fold(MEETING_ID, [joined, deleted, rejoined, real]).attendees["a1"]
    assert (state.presence, state.joined_ms) == ("removed", 4)  # joined 1..5, the repair void

    added = repair_event(
        attendee_added_repair(
            meeting_id=MEETING_ID, attendee_id="a2", external_user_id="api", timestamp=BASE_TS + 9
        )
    )
    assert roster_fold(MEETING_ID, [added]).attendees["a2"].external_user_id == "api"
    real_added = chime_event("AttendeeAdded", MEETING_ID, "a2", BASE_TS + 4)
    state = roster_fold(MEETING_ID, [added, real_added]).attendees["a2"]
    assert (state.presence, state.external_user_id, state.repaired) == ("added", None, False)


def test_the_fold_plan_re_derives_a_row_whose_repair_a_late_real_event_voids():
    """In order, advancing in place would keep the voided repair: the plan must re-derive."""
    store = MemoryStore(MEETING_ID)
    joined = chime_event("AttendeeJoined", MEETING_ID, "a1", BASE_TS + 1)
    deleted = repair_event(
        attendee_deleted_repair(meeting_id=MEETING_ID, attendee_id="a1", timestamp=BASE_TS + 2)
    )
    real = chime_event("AttendeeDeleted", MEETING_ID, "a1", BASE_TS + 6)
    for batch in ([joined], [deleted], [real]):
        store.ingest(batch)
    assert store.reads["histories"] >= 1
    assert store.rows == roster_fold(MEETING_ID, [joined, deleted, real]).attendees
    assert store.rows["a1"].joined_ms == 5
