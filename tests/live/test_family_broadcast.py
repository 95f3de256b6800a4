"""The broadcaster's family side, without Redis: a replica's group messages carry its primary's
ids (sockets judge its scope by them), and a family's figures become one message, serialised
once, for the family's group."""

from __future__ import annotations

import json

from roster.domain.family import FamilyFigures, FamilyMember
from roster.live.broadcast import RosterChange, change_messages, family_messages
from roster.live.protocol import FAMILY_TYPE, GROUP_ALL, GROUP_LIST, family_group, meeting_group


def test_a_replicas_messages_carry_its_primarys_ids_and_a_plain_meetings_do_not():
    replica = {"meeting_id": "r1", "external_meeting_id": "overflow-1", "seq": 3, "primary_meeting_id": "p"}
    messages = change_messages(
        RosterChange(meeting=replica, attendees=[]), primary_external_meeting_id="webinar"
    )
    assert [group for group, _ in messages] == [meeting_group("r1"), GROUP_ALL, GROUP_LIST]
    for _, message in messages:
        assert (message["primary_meeting_id"], message["primary_external_meeting_id"]) == ("p", "webinar")
    plain = {**replica, "meeting_id": "m", "primary_meeting_id": None}
    assert all(
        "primary_meeting_id" not in m for _, m in change_messages(RosterChange(meeting=plain, attendees=[]))
    )


def test_a_familys_figures_are_one_message_serialised_once():
    figures = FamilyFigures(
        primary_meeting_id="p",
        family_joined=5,
        family_peak_joined=7,
        replicas=(FamilyMember("r1", 2, 4), FamilyMember("r2", 1, 1)),
        version=42,
    )
    ((group, message),) = family_messages([figures], {"p": "webinar"})
    assert group == family_group("p")
    assert {k: v for k, v in message.items() if k != "text"} == {
        "type": FAMILY_TYPE,
        "primary_meeting_id": "p",
        "external_meeting_id": "webinar",
        "version": 42,
    }
    assert json.loads(message["text"]) == {
        "type": "family",
        "primary_meeting_id": "p",
        "family_joined": 5,
        "family_peak_joined": 7,
        "replicas": [{"meeting_id": "r1", "joined": 2}, {"meeting_id": "r2", "joined": 1}],
    }
