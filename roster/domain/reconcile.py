"""The reconcile planner (shared/ROSTER.md "Repairs from the Chime API"): one meeting's roster and
the Chime API's answers in, the repairs out. Pure: the calls to the API and the reads of the
roster are the caller's, so the rules can be checked on their own.

The rules, as ROSTER.md reads:

- GetMeeting answers NotFound: a synthesized MeetingEnded (the attendee checks stop: the missed
  list is cleared), unless the meeting's control region is unknown: then it was asked in
  ``CHIME_CONTROL_REGION``, a guess, and a meeting is never ended on a guess (nothing changes).
- GetMeeting answers: ``PrimaryMeetingId`` (when present) sets ``primary_meeting_id``;
  ``ExternalMeetingId`` and ``MediaRegion`` fill blanks, never overwrite.
- ListAttendees (every page): an attendee the roster has and Chime has not listed in two checks in
  a row gets a synthesized AttendeeDeleted; one Chime lists whom the roster lacks gets a
  synthesized AttendeeAdded (its ExternalUserId) and AttendeeCapabilitiesUpdated (its
  Capabilities).
- Every synthesized event is timestamped at the meeting's latest known event, never later.

Choices where ROSTER.md is silent (docs/decisions.md, "Reconcile"):

- "An attendee the roster has" is every row but a ``removed`` one (``removed`` is final: a repair
  would change nothing). ``left`` and ``dropped`` rows count: Chime lists an attendee until it is
  deleted, so their absence means a lost AttendeeDeleted.
- A ``#content`` id in ListAttendees is skipped: a roster row is its parent's, and the parent's own
  listing speaks for it.
- A meeting with no known event gets no synthesized event (there is no time to give it, and the
  rule forbids a later one); its facts are still stored.
- An ended meeting gets no synthesized event either, and its missed list is cleared.
- An unanswered ListAttendees (``attendees`` None: an error, or not asked) repairs no attendee and
  keeps the missed list as it was: a failed call is not a check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from roster.domain.events import CONTENT_SUFFIX
from roster.domain.fold import PRESENCE_REMOVED
from roster.domain.plan import STATUS_ENDED, MeetingFacts
from roster.domain.repairs import (
    Repairs,
    attendee_added_repair,
    attendee_deleted_repair,
    capabilities_repair,
    meeting_ended_repair,
)


@dataclass(frozen=True, slots=True)
class AttendeeView:
    """One roster row, as the check read it."""

    attendee_id: str
    presence: str | None = None
    external_user_id: str | None = None


@dataclass(frozen=True, slots=True)
class MeetingView:
    """The roster's view of one meeting, read before the API is called."""

    meeting_id: str
    status: str
    latest_event_at: int | None  # the timestamp of its latest known meeting event
    attendees: Sequence[AttendeeView] = ()
    missed: frozenset[str] = frozenset()  # Meeting.reconcile_missed: absent at the last check
    primary_meeting_id: str | None = None
    external_meeting_id: str = ""
    media_region: str = ""
    control_region: str = ""  # the region of its EventBridge envelopes; "" when only bare details came


@dataclass(frozen=True, slots=True)
class ChimeMeeting:
    """GetMeeting's answer for a meeting that exists."""

    primary_meeting_id: str | None = None
    external_meeting_id: str | None = None
    media_region: str | None = None


@dataclass(frozen=True, slots=True)
class ChimeAttendee:
    """One attendee of ListAttendees."""

    attendee_id: str
    external_user_id: str | None = None
    capabilities: Mapping[str, Any] | None = field(default=None, hash=False)


def chime_meeting_from_api(*, response: Mapping[str, Any]) -> ChimeMeeting:
    """A boto3 ``get_meeting`` response (``{"Meeting": {...}}``) as the planner reads it."""
    meeting = response.get("Meeting") or {}
    return ChimeMeeting(
        primary_meeting_id=meeting.get("PrimaryMeetingId") or None,
        external_meeting_id=meeting.get("ExternalMeetingId") or None,
        media_region=meeting.get("MediaRegion") or None,
    )


def chime_attendees_from_api(*, pages: Iterable[Mapping[str, Any]]) -> list[ChimeAttendee]:
    """Every page of boto3 ``list_attendees`` responses (``{"Attendees": [...]}``), in order."""
    return [
        ChimeAttendee(
            attendee_id=attendee["AttendeeId"],
            external_user_id=attendee.get("ExternalUserId") or None,
            capabilities=attendee.get("Capabilities") or None,
        )
        for page in pages
        for attendee in page.get("Attendees") or ()
        if attendee.get("AttendeeId")
    ]


def reconcile_plan(
    *, view: MeetingView, meeting: ChimeMeeting | None, attendees: Sequence[ChimeAttendee] | None
) -> Repairs:
    """The repairs of one check: ``meeting`` None means GetMeeting answered NotFound; ``attendees``
    is every page of ListAttendees, or None when it was not answered."""
    meeting_id, at = view.meeting_id, view.latest_event_at
    timed = at is not None and view.status != STATUS_ENDED
    if meeting is None:
        if not view.control_region:  # asked where CHIME_CONTROL_REGION says: a guess
            return Repairs(meeting_id=meeting_id)
        bodies = (meeting_ended_repair(meeting_id=meeting_id, timestamp=at),) if timed else ()
        return Repairs(
            meeting_id=meeting_id, bodies=bodies, facts=MeetingFacts(reconcile_missed=()), ended=bool(bodies)
        )

    primary = meeting.primary_meeting_id or None
    facts_base = {
        "primary_meeting_id": primary,
        "external_meeting_id": "" if view.external_meeting_id else (meeting.external_meeting_id or ""),
        "media_region": "" if view.media_region else (meeting.media_region or ""),
    }
    primary_learned = primary is not None and primary != view.primary_meeting_id
    if attendees is None:
        return Repairs(
            meeting_id=meeting_id, facts=MeetingFacts(**facts_base), primary_learned=primary_learned
        )
    if view.status == STATUS_ENDED:
        return Repairs(
            meeting_id=meeting_id,
            facts=MeetingFacts(**facts_base, reconcile_missed=()),
            primary_learned=primary_learned,
        )

    listed = {a.attendee_id: a for a in attendees if not a.attendee_id.endswith(CONTENT_SUFFIX)}
    known = {row.attendee_id for row in view.attendees}
    candidates = {row.attendee_id for row in view.attendees if row.presence != PRESENCE_REMOVED}
    absent = candidates - set(listed)
    removed = sorted(absent & view.missed) if timed else []
    missed = absent - set(removed)
    added = sorted(set(listed) - known) if timed else []

    bodies: list[str] = []
    for attendee_id in added:
        attendee = listed[attendee_id]
        bodies.append(
            attendee_added_repair(
                meeting_id=meeting_id,
                attendee_id=attendee_id,
                external_user_id=attendee.external_user_id,
                timestamp=at,
            )
        )
        if attendee.capabilities:
            bodies.append(
                capabilities_repair(
                    meeting_id=meeting_id,
                    attendee_id=attendee_id,
                    capabilities=attendee.capabilities,
                    timestamp=at,
                )
            )
    bodies.extend(
        attendee_deleted_repair(meeting_id=meeting_id, attendee_id=attendee_id, timestamp=at)
        for attendee_id in removed
    )
    return Repairs(
        meeting_id=meeting_id,
        bodies=tuple(bodies),
        facts=MeetingFacts(**facts_base, reconcile_missed=tuple(sorted(missed))),
        removed=tuple(removed),
        added=tuple(added),
        primary_learned=primary_learned,
    )
