"""Synthesized events (shared/ROSTER.md "Repairs from the Chime API"): the message bodies reconcile
hands the ingest service, in Chime's own detail shape. Pure: no Django, no I/O.

A repair is a bare meeting-event detail; what makes it a repair is the caller, not the body:
roster.ingest.repairs_ingest sends it as a message of source ``reconcile``, which the parser keys
in a key space of its own (roster.domain.events.repair_keyed). The same body arriving from a queue
is an ordinary Chime event, so nothing outside reconcile can claim to be one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from roster.domain.events import SOURCE_RECONCILE, ChimeEvent, event_parse
from roster.domain.plan import MeetingFacts

CAPABILITY_NAMES = ("audio", "video", "content")


@dataclass(frozen=True, slots=True)
class Repairs:
    """What one reconcile check of one meeting does: the bodies of its synthesized events and the
    facts stored with them. The counts are for the command's summary line."""

    meeting_id: str
    bodies: tuple[str, ...] = ()
    facts: MeetingFacts = MeetingFacts()
    ended: bool = False
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    primary_learned: bool = False


def repair_detail(
    *, event_type: str, meeting_id: str, timestamp: int, attendee_id: str = "", **fields: Any
) -> dict[str, Any]:
    """A Chime meeting-event detail (``eventType`` prefixed ``chime:``), extra fields verbatim."""
    detail: dict[str, Any] = {
        "version": "0",
        "eventType": f"chime:{event_type}",
        "timestamp": timestamp,
        "meetingId": meeting_id,
    }
    if attendee_id:
        detail["attendeeId"] = attendee_id
    detail.update({name: value for name, value in fields.items() if value is not None})
    return detail


def repair_body(detail: Mapping[str, Any]) -> str:
    """The message body of a repair: its detail as canonical JSON."""
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def repair_event(body: str) -> ChimeEvent:
    """The ChimeEvent ingest makes of a repair body (tests, and a check that a builder's body
    parses: a repair the parser refuses is a bug, never quarantine input)."""
    event = event_parse(body, source=SOURCE_RECONCILE)
    if not isinstance(event, ChimeEvent):
        raise ValueError(f"repair body refused: {event}")
    return event


def meeting_ended_repair(*, meeting_id: str, timestamp: int) -> str:
    """GetMeeting answered NotFound: the meeting is over."""
    return repair_body(repair_detail(event_type="MeetingEnded", meeting_id=meeting_id, timestamp=timestamp))


def attendee_deleted_repair(*, meeting_id: str, attendee_id: str, timestamp: int) -> str:
    """Not listed by ListAttendees in two checks in a row: presence ``removed``."""
    return repair_body(
        repair_detail(
            event_type="AttendeeDeleted", meeting_id=meeting_id, attendee_id=attendee_id, timestamp=timestamp
        )
    )


def attendee_added_repair(
    *, meeting_id: str, attendee_id: str, external_user_id: str | None, timestamp: int
) -> str:
    """Listed by ListAttendees, unknown to the roster: a row with its ExternalUserId."""
    return repair_body(
        repair_detail(
            event_type="AttendeeAdded",
            meeting_id=meeting_id,
            attendee_id=attendee_id,
            timestamp=timestamp,
            externalUserId=external_user_id or None,
        )
    )


def capabilities_repair(
    *, meeting_id: str, attendee_id: str, capabilities: Mapping[str, Any], timestamp: int
) -> str:
    """The listed attendee's Capabilities (``Audio``/``Video``/``Content``, any case), in the
    shape the fold reads (``success`` true, ``attendeeCapabilities`` lower-cased)."""
    lowered = {str(name).lower(): value for name, value in capabilities.items()}
    return repair_body(
        repair_detail(
            event_type="AttendeeCapabilitiesUpdated",
            meeting_id=meeting_id,
            attendee_id=attendee_id,
            timestamp=timestamp,
            success=True,
            attendeeCapabilities={name: lowered.get(name) for name in CAPABILITY_NAMES},
        )
    )
