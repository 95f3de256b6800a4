"""The event types of a roster change, for outbound hooks (DESIGN.md "Outbound hooks"). Pure.

A change is named by comparing what a client saw before the batch with what it sees after: the
meeting's public fields and each changed attendee's. Every change gets at least one type: one no
rule names (a late event that only moves ``joined_ms``, an external id learned) is called by the
state it leaves (the attendee's presence, the meeting's status).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from roster.domain.fold import AttendeeState

EVENT_TYPES = (
    "meeting.started",
    "meeting.ended",
    "attendee.added",
    "attendee.authorized",
    "attendee.joined",
    "attendee.left",
    "attendee.dropped",
    "attendee.removed",
    "attendee.capabilities",
    "video.started",
    "video.stopped",
    "share.started",
    "share.stopped",
    "transcription.changed",
    "recording.changed",
)
_ORDER = {name: i for i, name in enumerate(EVENT_TYPES)}
_PRESENCES = ("added", "authorized", "joined", "left", "dropped", "removed")
_RECORDING = frozenset({"in_progress", "resumed"})


def _sharing(state: AttendeeState) -> bool:
    return state.screen_share or state.content_share or state.content_video


def _recording(pipelines: Mapping[str, Any] | None) -> bool:
    return any(status in _RECORDING for status in (pipelines or {}).values())


def attendee_events(*, before: AttendeeState | None, after: AttendeeState) -> set[str]:
    """The types of one attendee's change (``before`` None: the row is new)."""
    found: set[str] = set()
    if after.presence in _PRESENCES and (before is None or before.presence != after.presence):
        found.add(f"attendee.{after.presence}")
    if before is not None and before.capabilities != after.capabilities:
        found.add("attendee.capabilities")
    video_before = before.video if before is not None else False
    if after.video != video_before:
        found.add("video.started" if after.video else "video.stopped")
    sharing_before = _sharing(before) if before is not None else False
    if _sharing(after) != sharing_before:
        found.add("share.started" if _sharing(after) else "share.stopped")
    if not found:
        found.add(f"attendee.{after.presence}" if after.presence in _PRESENCES else "attendee.added")
    return found


def meeting_events(*, before: Mapping[str, Any], after: Mapping[str, Any]) -> set[str]:
    """The types of a meeting's own change (public fields by name; ``before`` empty: a new row)."""
    found: set[str] = set()
    status = after.get("status")
    if status != before.get("status"):
        if status == "active":
            found.add("meeting.started")
        elif status == "ended":
            found.add("meeting.ended")
    if (after.get("transcription"), after.get("transcription_message")) != (
        before.get("transcription"),
        before.get("transcription_message"),
    ):
        found.add("transcription.changed")
    if _recording(after.get("pipelines")) != _recording(before.get("pipelines")) or (
        after.get("pipelines") or {}
    ) != (before.get("pipelines") or {}):
        found.add("recording.changed")
    return found


def change_events(
    *,
    meeting_before: Mapping[str, Any],
    meeting_after: Mapping[str, Any],
    attendees: Iterable[tuple[AttendeeState | None, AttendeeState]],
) -> list[str]:
    """Every type of one meeting's change, in EVENT_TYPES order, at least one. ``attendees``:
    (before, after) of each changed row. Fields that move with the attendees (counters, peak,
    ``seq``) name nothing themselves."""
    found = meeting_events(before=meeting_before, after=meeting_after)
    for before, after in attendees:
        found |= attendee_events(before=before, after=after)
    if not found:
        found.add("meeting.ended" if meeting_after.get("status") == "ended" else "meeting.started")
    return sorted(found, key=_ORDER.__getitem__)
