"""Timeline lanes for one meeting: when each attendee was present, on video and sharing, and when
they dropped. Pure: the same fold as the roster (roster.domain.fold), watched event by event.

Repairs (events reconcile synthesized from the Chime API, not superseded by a real one) are
marked apart: ``repairs`` on the lane of the attendee they touch, and at the top level for a
meeting-level one (MeetingEnded), each ``{"at", "type", "source": "reconcile"}``, so a reader can
tell an interval closed by a lost event's repair from one Chime reported."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from roster.domain import fold as machine

LANE_KINDS = ("present", "video", "sharing")


def _flags(state: machine.AttendeeState) -> dict[str, bool]:
    return {
        "present": state.presence == machine.PRESENCE_JOINED,
        "video": state.video,
        "sharing": state.screen_share or state.content_share or state.content_video,
    }


def _repair_mark(event: machine.FoldableEvent) -> dict[str, Any]:
    return {"at": event.timestamp, "type": machine.type_name(event.event_type), "source": event.source}


def timeline_build(meeting_id: str, events: Iterable[machine.FoldableEvent]) -> dict[str, Any]:
    """Lanes in name order; open segments have ``end`` null (still going on)."""
    states: dict[str, machine.AttendeeState] = {}
    lanes: dict[str, dict[str, Any]] = {}
    open_since: dict[tuple[str, str], int] = {}
    repairs: list[dict[str, Any]] = []
    first = last = None

    def observe(parent: str, before: dict[str, bool], ts: int) -> None:
        state = states[parent]
        lane = lanes[parent]
        lane["external_user_id"] = state.external_user_id
        after = _flags(state)
        for kind in LANE_KINDS:
            if after[kind] and not before[kind]:
                open_since[(parent, kind)] = ts
            elif before[kind] and not after[kind]:
                lane["segments"].append({"kind": kind, "start": open_since.pop((parent, kind)), "end": ts})

    for event in machine.sorted_unique(events):
        if event.kind not in (machine.KIND_MEETING, machine.KIND_PIPELINE):
            continue
        first = event.timestamp if first is None else first
        last = event.timestamp
        if machine.is_meeting_level(event) and machine.is_synthesized(event):
            repairs.append(_repair_mark(event))
        if machine.is_meeting_end(event):
            for parent, state in states.items():
                before = _flags(state)
                machine.attendee_apply(state, event)
                observe(parent, before, event.timestamp)
        elif machine.changes_attendee(event):
            parent = machine.parent_of(event.attendee_id)
            if parent not in states:
                states[parent] = machine.AttendeeState(attendee_id=parent)
                lanes[parent] = {
                    "attendee_id": parent,
                    "external_user_id": None,
                    "segments": [],
                    "drops": [],
                    "repairs": [],
                }
            state = states[parent]
            if machine.is_synthesized(event):
                lanes[parent]["repairs"].append(_repair_mark(event))
            before, drops = _flags(state), state.drop_count
            machine.attendee_apply(state, event)
            if state.drop_count > drops:
                lanes[parent]["drops"].append(event.timestamp)
            observe(parent, before, event.timestamp)
    for (parent, kind), start in open_since.items():
        lanes[parent]["segments"].append({"kind": kind, "start": start, "end": None})
    for lane in lanes.values():
        lane["segments"].sort(key=lambda s: (s["start"], s["kind"]))
    ordered = sorted(
        lanes.values(), key=lambda lane: (lane["external_user_id"] or lane["attendee_id"]).lower()
    )
    return {
        "meeting_id": meeting_id,
        "start": first,
        "last_event_at": last,
        "lanes": ordered,
        "repairs": repairs,
    }
