"""roster.domain.fold: one example per row of shared/ROSTER.md's transition tables, order and peak.

Events go through the real parser (roster.dev.chime builds them), so natural keys are the ones ingest uses.
"""

from __future__ import annotations

import itertools

import pytest

from roster.dev.chime import BASE_TS, MEETING_ID, chime_event, unknown_event
from roster.domain.events import KIND_PIPELINE, KIND_UNKNOWN
from roster.domain.fold import (
    AttendeeState,
    Roster,
    attendee_fold,
    can_advance,
    rank_of,
    roster_fold,
)

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)

A, B, C, D, E, F = "att-a", "att-b", "att-c", "att-d", "att-e", "att-f"
A_CONTENT = f"{A}#content"
T = BASE_TS


def ev(event_type: str, attendee: str | None = A, at: int = 0, **extra):
    """An event of MEETING_ID at T + ``at`` ms (attendee None for meeting-level events)."""
    return chime_event(event_type, MEETING_ID, attendee, T + at, **extra)


def meeting_ev(event_type: str, at: int = 0, **extra):
    return ev(event_type, None, at, **extra)


def pipeline_ev(event_type: str, pipeline_id: str, at: int = 0):
    event = ev(event_type, None, at, mediaPipelineId=pipeline_id)
    assert event.kind == KIND_PIPELINE
    return event


def fold(*events) -> Roster:
    return roster_fold(MEETING_ID, events)


def row(*events, attendee: str = A) -> AttendeeState:
    roster = fold(*events)
    assert attendee in roster.attendees, f"no row for {attendee}: {sorted(roster.attendees)}"
    return roster.attendees[attendee]


def flags(state: AttendeeState) -> tuple[bool, bool, bool, bool]:
    return (state.video, state.screen_share, state.content_share, state.content_video)


ALL_ON = (True, True, True, True)
ALL_OFF = (False, False, False, False)


def flags_on(attendee: str = A, at: int = 0) -> list:
    """Events turning on the four flags of ``attendee`` at T + at."""
    return [
        ev("AttendeeVideoStarted", attendee, at),
        ev("AttendeeScreenShareStarted", attendee, at),
        ev("AttendeeContentJoined", f"{attendee}#content", at),
        ev("AttendeeContentVideoStarted", f"{attendee}#content", at),
    ]


# --- the rank table --------------------------------------------------------------------------------

RANK_TABLE = {
    0: ["MeetingStarted"],
    1: ["AttendeeAdded"],
    2: ["AttendeeAuthorized"],
    3: ["AttendeeJoined", "AttendeeContentJoined"],
    4: [
        "AttendeeVideoStarted",
        "AttendeeScreenShareStarted",
        "AttendeeContentVideoStarted",
        "AttendeeCapabilitiesUpdated",
        "TranscriptionStarted",
        "TranscriptionStopped",
        "TranscriptionInterrupted",
        "TranscriptionResumed",
        "TranscriptionFailed",
        "MediaPipelineInProgress",
        "MediaPipelineDeleted",
        "MediaPipelineTemporaryFailure",
        "MediaPipelineResumed",
        "MediaPipelinePermanentFailure",
    ],
    5: ["AttendeeVideoStopped", "AttendeeScreenShareStopped", "AttendeeContentVideoStopped"],
    6: ["AttendeeDropped", "AttendeeContentDropped"],
    7: ["AttendeeLeft", "AttendeeContentLeft"],
    8: ["AttendeeDeleted"],
    9: ["MeetingEnded"],
}


@pytest.mark.parametrize(
    ("event_type", "rank"), [(name, rank) for rank, names in RANK_TABLE.items() for name in names]
)
def test_rank_table(event_type, rank):
    assert rank_of(f"chime:{event_type}") == rank


# --- attendee transitions --------------------------------------------------------------------------


def test_attendee_added_sets_added_from_null():
    state = row(ev("AttendeeAdded"))
    assert state.presence == "added"
    assert state.attendee_id == A
    assert state.joined_since is None and state.first_joined_at is None


@pytest.mark.parametrize(
    ("before", "presence"),
    [
        (["AttendeeJoined"], "joined"),
        (["AttendeeJoined", "AttendeeLeft"], "left"),
        (["AttendeeAuthorized"], "authorized"),
        (["AttendeeDeleted"], "removed"),
    ],
)
def test_attendee_added_only_from_null(before, presence):
    events = [ev(name, at=i) for i, name in enumerate(before)]
    assert row(*events, ev("AttendeeAdded", at=10)).presence == presence


@pytest.mark.parametrize(
    "before",
    [[], ["AttendeeAdded"], ["AttendeeJoined", "AttendeeLeft"], ["AttendeeJoined", "AttendeeDropped"]],
    ids=["null", "added", "left", "dropped"],
)
def test_attendee_authorized_from_allowed_presence(before):
    events = [ev(name, at=i) for i, name in enumerate(before)]
    assert row(*events, ev("AttendeeAuthorized", at=10)).presence == "authorized"


@pytest.mark.parametrize(
    ("before", "presence"), [("AttendeeJoined", "joined"), ("AttendeeDeleted", "removed")]
)
def test_attendee_authorized_not_from_joined_or_removed(before, presence):
    state = row(ev(before, at=0), ev("AttendeeAuthorized", at=10))
    assert state.presence == presence


def test_attendee_joined_opens_an_interval():
    state = row(ev("AttendeeAdded"), ev("AttendeeJoined", at=100, networkType="Voip"))
    assert state.presence == "joined"
    assert state.network_type == "Voip"
    assert state.first_joined_at == T + 100
    assert state.joined_since == T + 100
    assert state.joined_ms == 0
    assert state.intervals == [[T + 100, None, None]]


def test_attendee_joined_when_already_joined_does_not_reopen():
    state = row(
        ev("AttendeeJoined", at=100, networkType="Voip"),
        ev("AttendeeJoined", at=200, networkType="PSTN"),
    )
    assert state.presence == "joined"
    assert state.joined_since == T + 100
    assert state.first_joined_at == T + 100
    assert state.intervals == [[T + 100, None, None]]
    assert state.network_type == "PSTN"  # the latest AttendeeJoined that carried one


def test_network_type_from_the_latest_join_that_carried_one():
    state = row(
        ev("AttendeeJoined", at=100, networkType="PSTN"),
        ev("AttendeeLeft", at=150),
        ev("AttendeeJoined", at=200),  # no networkType: keeps PSTN
    )
    assert state.network_type == "PSTN"


def test_first_joined_at_is_set_once_and_joined_ms_adds_closed_intervals():
    state = row(
        ev("AttendeeJoined", at=100),
        ev("AttendeeLeft", at=250),
        ev("AttendeeJoined", at=1000),
        ev("AttendeeDropped", at=1300),
        ev("AttendeeJoined", at=2000),
    )
    assert state.first_joined_at == T + 100
    assert state.joined_since == T + 2000
    assert state.joined_ms == 150 + 300
    assert state.intervals == [[T + 100, T + 250, 7], [T + 1000, T + 1300, 6], [T + 2000, None, None]]


def test_attendee_joined_is_ignored_when_removed():
    state = row(ev("AttendeeDeleted", at=0), ev("AttendeeJoined", at=10, networkType="Voip"))
    assert state.presence == "removed"
    assert state.joined_since is None
    assert state.first_joined_at is None
    assert state.network_type is None
    assert state.intervals == []
    assert fold(ev("AttendeeDeleted", at=0), ev("AttendeeJoined", at=10)).peak_joined == 0


@pytest.mark.parametrize(
    ("event_type", "presence", "drops", "end_rank"),
    [
        ("AttendeeLeft", "left", 0, 7),
        ("AttendeeDropped", "dropped", 1, 6),
        ("AttendeeDeleted", "removed", 0, 8),
    ],
)
def test_leaving_closes_the_interval_and_turns_flags_off(event_type, presence, drops, end_rank):
    events = [ev("AttendeeJoined", at=100), *flags_on(A, at=150)]
    assert flags(row(*events)) == ALL_ON

    state = row(*events, ev(event_type, at=400))
    assert state.presence == presence
    assert state.joined_since is None
    assert state.joined_ms == 300
    assert state.intervals == [[T + 100, T + 400, end_rank]]
    assert flags(state) == ALL_OFF
    assert state.drop_count == drops
    assert state.first_joined_at == T + 100


@pytest.mark.parametrize("event_type", ["AttendeeLeft", "AttendeeDropped", "AttendeeDeleted"])
def test_leaving_without_an_open_interval(event_type):
    state = row(ev("AttendeeAdded", at=0), ev("AttendeeVideoStarted", at=1), ev(event_type, at=5))
    assert state.joined_ms == 0
    assert state.intervals == []
    assert state.video is False


def test_drop_count_counts_each_drop():
    state = row(
        ev("AttendeeJoined", at=0),
        ev("AttendeeDropped", at=10),
        ev("AttendeeJoined", at=20),
        ev("AttendeeDropped", at=30),
        ev("AttendeeJoined", at=40),
    )
    assert state.drop_count == 2
    assert state.presence == "joined"
    assert state.joined_ms == 20


def test_the_same_drop_delivered_twice_counts_once():
    drop = ev("AttendeeDropped", at=10)
    assert row(ev("AttendeeJoined"), drop, drop, ev("AttendeeDropped", at=10)).drop_count == 1


def test_removed_is_final():
    state = row(
        ev("AttendeeJoined", at=0),
        ev("AttendeeDeleted", at=10),
        ev("AttendeeLeft", at=20),
        ev("AttendeeDropped", at=30),
        ev("AttendeeAuthorized", at=40),
        ev("AttendeeAdded", at=50),
        ev("AttendeeJoined", at=60),
    )
    assert state.presence == "removed"
    assert state.drop_count == 0
    assert state.joined_ms == 10
    assert state.intervals == [[T, T + 10, 8]]


@pytest.mark.parametrize(
    ("start", "stop", "attr"),
    [
        ("AttendeeVideoStarted", "AttendeeVideoStopped", "video"),
        ("AttendeeScreenShareStarted", "AttendeeScreenShareStopped", "screen_share"),
    ],
)
def test_video_and_screen_share_on_and_off(start, stop, attr):
    on = row(ev("AttendeeJoined"), ev(start, at=10))
    assert getattr(on, attr) is True
    assert [name for name in ("video", "screen_share") if getattr(on, name)] == [attr]
    off = row(ev("AttendeeJoined"), ev(start, at=10), ev(stop, at=20))
    assert getattr(off, attr) is False
    # Stopped arriving first still ends the fold stopped (order is by timestamp).
    assert getattr(row(ev(stop, at=20), ev(start, at=10), ev("AttendeeJoined")), attr) is False


def test_content_joined_sets_the_parent_flag_and_creates_the_parent_with_null_presence():
    roster = fold(ev("AttendeeContentJoined", A_CONTENT, at=5, externalUserId="alice#content"))
    assert set(roster.attendees) == {A}  # never a row of its own
    state = roster.attendees[A]
    assert state.presence is None
    assert state.content_share is True
    assert state.content_video is False
    assert state.external_user_id == "alice#content"
    assert state.intervals == []
    assert roster.peak_joined == 0


def test_content_video_started_and_stopped_on_the_parent():
    started = row(ev("AttendeeJoined"), ev("AttendeeContentVideoStarted", A_CONTENT, at=10))
    assert (started.content_video, started.content_share) == (True, False)
    stopped = row(
        ev("AttendeeJoined"),
        ev("AttendeeContentVideoStarted", A_CONTENT, at=10),
        ev("AttendeeContentVideoStopped", A_CONTENT, at=20),
    )
    assert stopped.content_video is False


@pytest.mark.parametrize("event_type", ["AttendeeContentLeft", "AttendeeContentDropped"])
def test_content_left_or_dropped_turns_both_content_flags_off(event_type):
    state = row(
        ev("AttendeeJoined"),
        ev("AttendeeVideoStarted", at=1),
        ev("AttendeeContentJoined", A_CONTENT, at=5),
        ev("AttendeeContentVideoStarted", A_CONTENT, at=6),
        ev(event_type, A_CONTENT, at=10),
    )
    assert (state.content_share, state.content_video) == (False, False)
    # The parent itself is untouched: still joined, camera still on, no drop counted.
    assert state.presence == "joined"
    assert state.video is True
    assert state.drop_count == 0
    assert state.joined_since == T


def test_content_events_land_on_the_parent_next_to_its_own_state():
    roster = fold(
        ev("AttendeeJoined", A),
        ev("AttendeeJoined", B),
        ev("AttendeeContentJoined", f"{B}#content", at=3),
    )
    assert set(roster.attendees) == {A, B}
    assert roster.attendees[B].content_share is True
    assert roster.attendees[A].content_share is False
    assert roster.peak_joined == 2


@pytest.mark.parametrize("success", ["1", True])
def test_capabilities_updated_when_successful(success):
    state = row(
        ev("AttendeeJoined"),
        ev(
            "AttendeeCapabilitiesUpdated",
            at=10,
            success=success,
            attendeeCapabilities={"audio": "SendReceive", "video": "Receive", "content": "None"},
        ),
    )
    assert state.capabilities == {"audio": "SendReceive", "video": "Receive", "content": "None"}


@pytest.mark.parametrize("success", ["0", False, 0, "true", "", None])
def test_capabilities_not_updated_otherwise(success):
    extra = {} if success is None else {"success": success}
    caps = {"audio": "SendReceive", "video": "Receive", "content": "None"}
    state = row(
        ev("AttendeeJoined"), ev("AttendeeCapabilitiesUpdated", at=10, attendeeCapabilities=caps, **extra)
    )
    assert state.capabilities is None


def test_capabilities_from_the_latest_successful_update():
    first = {"audio": "SendReceive", "video": "SendReceive", "content": "SendReceive"}
    second = {"audio": "Receive", "video": "None", "content": "None"}
    failed = {"audio": "None", "video": "None", "content": "None"}
    state = row(
        ev("AttendeeCapabilitiesUpdated", at=30, success="0", attendeeCapabilities=failed),
        ev("AttendeeCapabilitiesUpdated", at=20, success="1", attendeeCapabilities=second),
        ev("AttendeeCapabilitiesUpdated", at=10, success="1", attendeeCapabilities=first),
        ev("AttendeeJoined"),
    )
    assert state.capabilities == second


def test_unknown_attendee_event_type_creates_no_row_and_changes_nothing():
    meeting = {"externalMeetingId": "standup"}
    base = [
        ev("AttendeeJoined", A, **meeting),
        ev("AttendeeVideoStarted", A, at=5, **meeting),
        meeting_ev("MeetingStarted", **meeting),
    ]
    unknown = [
        ev("AttendeeSomethingNew", B, at=3, externalUserId="bob", **meeting),
        ev("AttendeeSomethingNew", A, at=4, externalUserId="not-alice", networkType="PSTN", **meeting),
        ev("AttendeeSomethingNew", f"{C}#content", at=4, **meeting),
        meeting_ev("MeetingSomethingNew", at=6, **meeting),
        unknown_event({"meetingId": MEETING_ID, "eventType": "chime:AttendeeJoined", "timestamp": T + 1}),
    ]
    assert unknown[-1].kind == KIND_UNKNOWN
    with_unknown = fold(*base, *unknown)
    without = fold(*base)
    assert set(with_unknown.attendees) == {A}
    assert with_unknown.attendees[A] == without.attendees[A]
    assert with_unknown.attendees[A].external_user_id is None
    assert with_unknown.meeting == without.meeting
    assert with_unknown.peak_joined == without.peak_joined == 1


def test_external_user_id_parent_wins_over_content():
    content_first = row(
        ev("AttendeeContentJoined", A_CONTENT, at=0, externalUserId="alice#content"),
        ev("AttendeeJoined", A, at=10, externalUserId="alice"),
    )
    assert content_first.external_user_id == "alice"
    own_first = row(
        ev("AttendeeJoined", A, at=0, externalUserId="alice"),
        ev("AttendeeContentJoined", A_CONTENT, at=10, externalUserId="alice#content"),
    )
    assert own_first.external_user_id == "alice"
    content_only = row(ev("AttendeeContentJoined", A_CONTENT, at=0, externalUserId="alice#content"))
    assert content_only.external_user_id == "alice#content"


def test_external_user_id_own_event_without_one_does_not_displace_the_content_one():
    state = row(
        ev("AttendeeContentJoined", A_CONTENT, at=0, externalUserId="alice#content"),
        ev("AttendeeVideoStarted", A, at=10),
    )
    assert state.external_user_id == "alice#content"


def test_a_content_attendee_own_type_event_creates_the_parent_but_changes_no_state():
    state = row(ev("AttendeeJoined", A_CONTENT, at=0), ev("AttendeeVideoStarted", A_CONTENT, at=1))
    assert state.presence is None
    assert state.video is False
    assert state.intervals == []


# --- ties: the rank table decides ----------------------------------------------------------------


def test_left_and_joined_at_the_same_ms_join_applies_first():
    # Delivered leave-first; the fold still joins first, so the attendee ends up left.
    state = row(ev("AttendeeLeft", at=50), ev("AttendeeJoined", at=50))
    assert state.presence == "left"
    assert state.intervals == [[T + 50, T + 50, 7]]
    assert state.joined_ms == 0
    assert state.first_joined_at == T + 50
    assert fold(ev("AttendeeLeft", at=50), ev("AttendeeJoined", at=50)).peak_joined == 1


@pytest.mark.parametrize(
    ("first", "second", "presence"),
    [
        ("AttendeeAuthorized", "AttendeeAdded", "authorized"),
        ("AttendeeJoined", "AttendeeAuthorized", "joined"),
        ("AttendeeLeft", "AttendeeDropped", "left"),
        ("AttendeeDeleted", "AttendeeLeft", "removed"),
        ("AttendeeDropped", "AttendeeJoined", "dropped"),
    ],
)
def test_same_ms_ties_follow_the_rank_table_whatever_the_arrival(first, second, presence):
    """``first`` is delivered first but has the higher rank, so it applies last."""
    for order in ((ev(first, at=7), ev(second, at=7)), (ev(second, at=7), ev(first, at=7))):
        assert row(*order).presence == presence


def test_video_started_and_stopped_at_the_same_ms_ends_stopped():
    assert row(ev("AttendeeVideoStopped", at=9), ev("AttendeeVideoStarted", at=9)).video is False


def test_dropped_and_left_at_the_same_ms_counts_the_drop_then_leaves():
    state = row(ev("AttendeeJoined"), ev("AttendeeLeft", at=9), ev("AttendeeDropped", at=9))
    assert (state.presence, state.drop_count) == ("left", 1)
    assert state.intervals == [[T, T + 9, 6]]


# --- meeting end ----------------------------------------------------------------------------------


def test_meeting_ended_leaves_joined_and_authorized_and_turns_every_flag_off():
    events = [
        meeting_ev("MeetingStarted", at=0),
        ev("AttendeeJoined", A, at=10),
        *flags_on(A, at=20),
        ev("AttendeeAuthorized", B, at=10),
        ev("AttendeeVideoStarted", B, at=20),
        ev("AttendeeAdded", C, at=10),
        ev("AttendeeScreenShareStarted", C, at=20),
        ev("AttendeeJoined", D, at=10),
        ev("AttendeeDropped", D, at=30),
        ev("AttendeeContentJoined", f"{D}#content", at=40),
        ev("AttendeeJoined", E, at=10),
        ev("AttendeeLeft", E, at=30),
        ev("AttendeeContentVideoStarted", f"{E}#content", at=40),
        ev("AttendeeDeleted", F, at=10),
        meeting_ev("MeetingEnded", at=100),
    ]
    roster = fold(*events)
    presence = {attendee: state.presence for attendee, state in roster.attendees.items()}
    assert presence == {A: "left", B: "left", C: "added", D: "dropped", E: "left", F: "removed"}
    for state in roster.attendees.values():
        assert flags(state) == ALL_OFF, state.attendee_id
        assert state.joined_since is None
    assert roster.attendees[A].intervals == [[T + 10, T + 100, 9]]
    assert roster.attendees[A].joined_ms == 90
    assert roster.attendees[D].drop_count == 1
    assert roster.attendees[D].joined_ms == 20
    assert roster.meeting.status == "ended"
    assert roster.meeting.ended_at == T + 100
    assert roster.peak_joined == 3


def test_events_after_meeting_ended_still_apply():
    roster = fold(
        ev("AttendeeJoined", A, at=0),
        meeting_ev("MeetingEnded", at=10),
        ev("AttendeeJoined", A, at=20),
        ev("AttendeeVideoStarted", A, at=30),
        ev("AttendeeJoined", B, at=20),
    )
    assert roster.attendees[A].presence == "joined"
    assert roster.attendees[A].video is True
    assert roster.attendees[A].intervals == [[T, T + 10, 9], [T + 20, None, None]]
    assert roster.attendees[B].presence == "joined"
    assert roster.meeting.status == "ended"
    assert roster.peak_joined == 2


def test_meeting_ended_at_the_same_ms_as_a_join_applies_after_it():
    roster = fold(meeting_ev("MeetingEnded", at=10), ev("AttendeeJoined", A, at=10))
    assert roster.attendees[A].presence == "left"
    assert roster.attendees[A].intervals == [[T + 10, T + 10, 9]]
    assert roster.peak_joined == 1


def test_meeting_ended_before_an_attendee_first_event_does_not_touch_it():
    roster = fold(meeting_ev("MeetingEnded", at=10), ev("AttendeeAuthorized", A, at=20))
    assert roster.attendees[A].presence == "authorized"


# --- meeting fields --------------------------------------------------------------------------------


def test_meeting_status_unknown_before_any_meeting_event():
    roster = fold(ev("AttendeeJoined", A))
    assert roster.meeting.meeting_id == MEETING_ID
    assert roster.meeting.status == "unknown"
    assert roster.meeting.started_at is None and roster.meeting.ended_at is None


def test_meeting_status_active_then_ended():
    started = fold(meeting_ev("MeetingStarted", at=5))
    assert (started.meeting.status, started.meeting.started_at) == ("active", T + 5)
    ended = fold(meeting_ev("MeetingEnded", at=50), meeting_ev("MeetingStarted", at=5))
    assert (ended.meeting.status, ended.meeting.started_at, ended.meeting.ended_at) == (
        "ended",
        T + 5,
        T + 50,
    )


def test_meeting_ended_is_for_good_even_if_meeting_started_sorts_later():
    roster = fold(meeting_ev("MeetingEnded", at=10), meeting_ev("MeetingStarted", at=20))
    assert roster.meeting.status == "ended"
    assert roster.meeting.ended_at == T + 10
    assert roster.meeting.started_at == T + 20


def test_meeting_external_id_and_media_region_from_the_events():
    roster = fold(
        ev("AttendeeJoined", A, at=0, externalMeetingId="standup", mediaRegion="eu-west-1"),
        meeting_ev("MeetingStarted", at=1),
    )
    assert roster.meeting.external_meeting_id == "standup"
    assert roster.meeting.media_region == "eu-west-1"


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("TranscriptionStarted", "started"),
        ("TranscriptionStopped", "stopped"),
        ("TranscriptionInterrupted", "interrupted"),
        ("TranscriptionResumed", "resumed"),
        ("TranscriptionFailed", "failed"),
    ],
)
def test_transcription_status_is_the_latest_lowercased(event_type, status):
    assert fold(meeting_ev(event_type, at=5)).meeting.transcription == status
    # Latest by timestamp, whatever the arrival order.
    later = fold(meeting_ev(event_type, at=50), meeting_ev("TranscriptionStarted", at=5))
    assert later.meeting.transcription == status


def test_transcription_null_before_any_transcription_event():
    assert fold(meeting_ev("MeetingStarted")).meeting.transcription is None


def test_transcription_failed_keeps_its_message():
    roster = fold(
        meeting_ev("TranscriptionStarted", at=1),
        meeting_ev("TranscriptionFailed", at=2, message="Internal server error"),
    )
    assert roster.meeting.transcription == "failed"
    assert roster.meeting.transcription_message == "Internal server error"
    resumed = fold(
        meeting_ev("TranscriptionFailed", at=2, message="Internal server error"),
        meeting_ev("TranscriptionResumed", at=3),
    )
    assert resumed.meeting.transcription == "resumed"
    assert resumed.meeting.transcription_message is None


@pytest.mark.parametrize(
    ("event_type", "status", "recording"),
    [
        ("MediaPipelineInProgress", "in_progress", True),
        ("MediaPipelineDeleted", "deleted", False),
        ("MediaPipelineTemporaryFailure", "temporary_failure", False),
        ("MediaPipelineResumed", "resumed", True),
        ("MediaPipelinePermanentFailure", "permanent_failure", False),
    ],
)
def test_pipeline_status_and_recording(event_type, status, recording):
    roster = fold(pipeline_ev(event_type, "pipe-1", at=5))
    assert roster.meeting.pipelines == {"pipe-1": status}
    assert roster.meeting.recording is recording


def test_pipelines_are_tracked_per_pipeline_id_latest_wins():
    roster = fold(
        pipeline_ev("MediaPipelineDeleted", "pipe-1", at=50),
        pipeline_ev("MediaPipelineInProgress", "pipe-1", at=10),
        pipeline_ev("MediaPipelineInProgress", "pipe-2", at=10),
        pipeline_ev("MediaPipelineTemporaryFailure", "pipe-2", at=20),
        pipeline_ev("MediaPipelineResumed", "pipe-2", at=30),
    )
    assert roster.meeting.pipelines == {"pipe-1": "deleted", "pipe-2": "resumed"}
    assert roster.meeting.recording is True
    stopped = fold(
        pipeline_ev("MediaPipelineInProgress", "pipe-1", at=10),
        pipeline_ev("MediaPipelinePermanentFailure", "pipe-1", at=20),
    )
    assert stopped.meeting.recording is False
    assert fold(meeting_ev("MeetingStarted")).meeting.recording is False


def test_pipeline_type_in_a_meeting_state_change_is_not_a_pipeline_status():
    """Only detail-type "Chime Media Pipeline State Change" reports pipelines (ROSTER.md)."""
    from roster.dev.chime import accepted, as_json, detail, envelope

    event = accepted(
        as_json(
            envelope(
                detail("MediaPipelineInProgress", MEETING_ID, ts=T, mediaPipelineId="pipe-1"),
                detail_type="Chime Meeting State Change",
            )
        )
    )
    assert fold(event).meeting.pipelines == {}


# --- peak_joined -----------------------------------------------------------------------------------


def test_peak_joined_is_the_most_joined_at_once():
    roster = fold(
        ev("AttendeeJoined", A, at=1),
        ev("AttendeeJoined", B, at=2),
        ev("AttendeeLeft", A, at=3),
        ev("AttendeeJoined", C, at=4),
        ev("AttendeeDropped", B, at=5),
        ev("AttendeeJoined", B, at=6),
        ev("AttendeeJoined", B, at=7),  # already joined: not counted twice
    )
    assert roster.peak_joined == 2
    assert sum(state.presence == "joined" for state in roster.attendees.values()) == 2


def test_peak_joined_join_at_the_same_ms_as_another_leave_counts_both():
    # B joins (rank 3) before A leaves (rank 7) at the same ms: two were joined at once.
    roster = fold(ev("AttendeeLeft", A, at=5), ev("AttendeeJoined", B, at=5), ev("AttendeeJoined", A, at=1))
    assert roster.peak_joined == 2
    assert roster.attendees[A].presence == "left"
    assert roster.attendees[B].presence == "joined"


def test_peak_joined_leave_before_a_later_join_does_not_overlap():
    roster = fold(ev("AttendeeJoined", A, at=1), ev("AttendeeLeft", A, at=5), ev("AttendeeJoined", B, at=6))
    assert roster.peak_joined == 1


def test_peak_joined_ignores_content_attendees():
    roster = fold(ev("AttendeeJoined", A), ev("AttendeeContentJoined", A_CONTENT, at=1))
    assert roster.peak_joined == 1


def test_peak_joined_zero_without_joins():
    assert fold(ev("AttendeeAdded", A), meeting_ev("MeetingStarted")).peak_joined == 0
    assert fold().peak_joined == 0


# --- order independence, by example ----------------------------------------------------------------


def test_every_arrival_order_gives_the_same_roster():
    events = [
        meeting_ev("MeetingStarted", at=0),
        ev("AttendeeJoined", A, at=1),
        ev("AttendeeLeft", A, at=3),
        ev("AttendeeJoined", B, at=3),
        ev("AttendeeContentJoined", A_CONTENT, at=2),
        meeting_ev("MeetingEnded", at=3),
    ]
    expected = fold(*events)
    for order in itertools.permutations(events):
        assert fold(*order) == expected
    assert expected.peak_joined == 2
    assert expected.attendees[B].presence == "left"  # MeetingEnded (rank 9) after B's join


def test_attendee_fold_from_scratch_matches_the_whole_fold():
    events = [
        ev("AttendeeJoined", A, at=1, externalUserId="alice"),
        ev("AttendeeContentJoined", A_CONTENT, at=2),
        ev("AttendeeJoined", B, at=2),
        meeting_ev("MeetingEnded", at=5),
        meeting_ev("TranscriptionStarted", at=1),
    ]
    assert attendee_fold(A, events) == fold(*events).attendees[A]
    assert attendee_fold(C, events) is None


def test_attendee_fold_advances_a_stored_state():
    first = [ev("AttendeeJoined", A, at=1), ev("AttendeeVideoStarted", A, at=2)]
    later = [ev("AttendeeLeft", A, at=10)]
    stored = attendee_fold(A, first)
    advanced = attendee_fold(A, later, initial=stored)
    assert advanced == fold(*first, *later).attendees[A]
    assert stored.presence == "joined"  # the stored state is not modified in place
    assert stored.intervals == [[T + 1, None, None]]


def test_can_advance_only_strictly_after_the_last_folded_position():
    state = attendee_fold(A, [ev("AttendeeAdded", at=0), ev("AttendeeJoined", at=10)])
    assert (state.folded_ts, state.folded_rank) == (T + 10, 3)
    assert can_advance(state, [])
    assert can_advance(state, [ev("AttendeeLeft", at=10)])  # same ms, higher rank
    assert can_advance(state, [ev("AttendeeVideoStarted", at=11), ev("AttendeeLeft", at=12)])
    assert not can_advance(state, [ev("AttendeeContentJoined", A_CONTENT, at=10)])  # same position
    assert not can_advance(state, [ev("AttendeeAuthorized", at=10)])  # same ms, lower rank
    assert not can_advance(state, [ev("AttendeeLeft", at=20), ev("AttendeeVideoStarted", at=5)])
