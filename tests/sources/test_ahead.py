"""Following a meeting before its first event (roster.sources.ahead, issue #15 point 4): the Chime
API is the local endpoint over HTTP, reached by unchanged boto3 through
AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS; the rows are PostgreSQL's (or SQLite's)."""

from __future__ import annotations

import uuid

import pytest

from roster.dev.chime_api import ChimeApiServer
from roster.models import Meeting
from roster.read.access import Access
from roster.sources import ahead

pytestmark = pytest.mark.django_db


@pytest.fixture
def chime(chime_server) -> ChimeApiServer:
    ahead._misses.clear()
    return chime_server


def expect(meeting_id: str, glob: str = "*", *, admit: bool = True) -> bool:
    access = Access(everything=glob == "*", globs=(glob,))
    return ahead.meeting_expect(meeting_id=meeting_id, access=access, admit=lambda: admit)


def get_calls(chime: ChimeApiServer) -> int:
    return chime.api.calls.get("GetMeeting", 0)


def test_a_meeting_chime_knows_gets_its_row_at_seq_0_with_what_getmeeting_told(chime):
    meeting_id = chime.api.meeting_put(external_meeting_id="class-7b", media_region="eu-west-1")

    assert expect(meeting_id, "class-*")

    row = Meeting.objects.get(pk=meeting_id)
    assert (row.status, row.seq, row.external_meeting_id, row.media_region) == (
        "unknown",
        0,
        "class-7b",
        "eu-west-1",
    )
    assert row.control_region == "us-east-1"  # it answered there: not a guess any more
    assert get_calls(chime) == 1


def test_outside_the_scope_it_stays_unknown_to_the_roster(chime):
    meeting_id = chime.api.meeting_put(external_meeting_id="board-meeting")

    assert not expect(meeting_id, "class-*")
    assert not Meeting.objects.filter(pk=meeting_id).exists()


def test_a_replica_is_allowed_by_its_primarys_scope(chime):
    primary = chime.api.meeting_put(external_meeting_id="webinar-1")
    replica = chime.api.meeting_put(external_meeting_id="replica-x", primary_meeting_id=primary)
    Meeting.objects.create(meeting_id=primary, external_meeting_id="webinar-1")

    assert expect(replica, "webinar-*")
    assert Meeting.objects.get(pk=replica).primary_meeting_id == primary


def test_a_miss_is_not_asked_again_for_a_while(chime):
    missing = str(uuid.uuid4())

    assert not expect(missing)
    assert not expect(missing)
    assert get_calls(chime) == 1
    assert not Meeting.objects.filter(pk=missing).exists()


def test_no_call_for_a_known_meeting_an_id_that_is_not_chimes_or_a_socket_out_of_lookups(chime):
    known = Meeting.objects.create(meeting_id=str(uuid.uuid4()), external_meeting_id="board").pk
    fresh = chime.api.meeting_put(external_meeting_id="class-1")

    assert not expect(known, "class-*")  # known and out of scope: not_found, as always
    assert not expect("../../meetings", "*")
    assert not expect(fresh, "*", admit=False)
    assert get_calls(chime) == 0
    assert expect(fresh, "*")


def test_without_a_control_region_nothing_is_asked(chime, settings):
    settings.CHIME_CONTROL_REGION = ""
    meeting_id = chime.api.meeting_put(external_meeting_id="class-1")

    assert not expect(meeting_id)
    assert get_calls(chime) == 0


def test_a_failed_call_is_not_taken_for_a_miss(chime):
    meeting_id = chime.api.meeting_put(external_meeting_id="class-1")
    chime.api.fault("ForbiddenException", operation="GetMeeting")

    assert not expect(meeting_id)
    assert expect(meeting_id)  # asked again at once: only NotFound is remembered
    assert get_calls(chime) == 2
