"""The broadcaster's family side: a replica's group messages carry its primary's ids (sockets
judge its scope by them), a family's figures become one message, serialised once, for the
family's group, and the family thread sends a family's frame once a turn, only when it changed."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from roster.domain.family import FamilyFigures, FamilyMember
from roster.domain.plan import MeetingFacts
from roster.domain.repairs import Repairs
from roster.ingest import IncomingMessage, messages_ingest, repairs_ingest
from roster.live.broadcast import (
    _Families,
    change_messages,
    families,
    family_messages,
    publisher,
)
from roster.live.protocol import FAMILY_TYPE, GROUP_ALL, GROUP_LIST, family_group, meeting_group
from roster.read.serializers import ChangeShown


def test_a_replicas_messages_carry_its_primarys_ids_and_a_plain_meetings_do_not():
    replica = {"meeting_id": "r1", "external_meeting_id": "overflow-1", "seq": 3, "primary_meeting_id": "p"}
    messages = change_messages(
        ChangeShown.of(meeting=replica, attendees=[]), primary_external_meeting_id="webinar"
    )
    assert [group for group, _ in messages] == [meeting_group("r1"), GROUP_ALL, GROUP_LIST]
    for _, message in messages:
        assert (message["primary_meeting_id"], message["primary_external_meeting_id"]) == ("p", "webinar")
    plain = {**replica, "meeting_id": "m", "primary_meeting_id": None}
    assert all(
        "primary_meeting_id" not in m for _, m in change_messages(ChangeShown.of(meeting=plain, attendees=[]))
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


@pytest.mark.django_db(transaction=True)
def test_a_family_touched_many_times_in_a_turn_is_one_frame_and_none_when_unchanged():
    """Many batches touching one family within a turn: one frame; touched again with nothing
    changed: no frame. Through the real database, publisher and Redis."""
    tag = uuid.uuid4().hex[:8]
    primary, replica = f"{tag}-p", f"{tag}-r"
    messages_ingest(
        messages=[
            IncomingMessage(
                body=json.dumps({"meetingId": m, "eventType": "chime:MeetingStarted", "timestamp": 1})
            )
            for m in (primary, replica)
        ]
    )
    repairs_ingest(repairs=[Repairs(meeting_id=replica, facts=MeetingFacts(primary_meeting_id=primary))])
    families.idle.wait(5)  # the process's own family thread is done with these batches
    watch = _Families()

    def touched(ids: list[str]) -> None:
        for _ in range(20):
            watch.touch(ids)
        assert watch.idle.wait(5)
        publisher.flush()

    async def watched() -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(family_group(primary), channel)
        await asyncio.to_thread(touched, [primary, replica])
        message = await asyncio.wait_for(layer.receive(channel), 5)
        assert json.loads(message["text"])["replicas"] == [{"meeting_id": replica, "joined": 0}]
        await asyncio.to_thread(touched, [primary])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 0.5)
        await layer.group_discard(family_group(primary), channel)

    async_to_sync(watched)()
