"""Realistic Chime meeting traffic for demos, tests and benchmarks. Pure: no Django, no I/O.

Each meeting is a script that a real meeting would produce: started; a media capture pipeline in
progress; transcription started, interrupted, resumed, stopped; attendees added, authorized and
joined (mostly Voip, some PSTN) who toggle video, share their screen (the seed documents'
ScreenShare events, or a ``#content`` attendee with content video), drop and rejoin, get their
capabilities updated, then leave or are deleted; the pipeline deleted; the meeting ended.

Scripts of several meetings are interleaved at random (each meeting stays in causal order) and
stamped on one clock: event *i* happens at ``start_ms + i * step_ms``. The same seed gives the
same traffic.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ACCOUNT = "111122223333"
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
FIRST_NAMES = (
    "ana",
    "bo",
    "chen",
    "dara",
    "eli",
    "femi",
    "gus",
    "hana",
    "ivo",
    "jo",
    "kai",
    "lea",
    "mo",
    "noor",
)
ENVELOPES = ("eventbridge", "sns", "bare")

# (kind of body, why it is poison) - each is quarantined with its own reason.
POISON = (
    '{"version": "0", "detail-type": "Chime Meeting State Change" "source": "aws.chime"}',  # docs-style JSON
    '["not", "an", "object"]',
    '{"source": "aws.s3", "detail-type": "Object Created", "detail": {}}',
    '{"eventType": "chime:AttendeeJoined", "meetingId": "m", "timestamp": "yesterday"}',
    '{"hello": "world"}',
)


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    detail_type: str
    detail: dict[str, Any]


def _script(rng: random.Random, *, index: int, attendees: int) -> list[tuple[str, dict[str, Any]]]:
    """One meeting's events in causal order, as (detail-type, detail without timestamp)."""
    meeting_id = str(uuid.UUID(int=rng.getrandbits(128)))
    base = {
        "version": "0",
        "meetingId": meeting_id,
        "externalMeetingId": f"{rng.choice(['standup', 'sales', 'support', 'board', 'design'])}-{index}",
        "mediaRegion": rng.choice(REGIONS),
    }
    meeting = "Chime Meeting State Change"
    pipeline = "Chime Media Pipeline State Change"
    steps: list[tuple[str, dict[str, Any]]] = [(meeting, {**base, "eventType": "chime:MeetingStarted"})]
    pipeline_id = str(uuid.UUID(int=rng.getrandbits(128)))
    steps.append(
        (pipeline, {**base, "eventType": "chime:MediaPipelineInProgress", "mediaPipelineId": pipeline_id})
    )
    steps.append((meeting, {**base, "eventType": "chime:TranscriptionStarted"}))

    people = []
    for number in range(attendees):
        attendee_id = str(uuid.UUID(int=rng.getrandbits(128)))
        user = f"{rng.choice(FIRST_NAMES)}.{index}.{number}@example.com"
        people.append((attendee_id, user))

    def say(event_type: str, attendee_id: str, user: str, **extra: Any) -> None:
        steps.append(
            (
                meeting,
                {**base, "eventType": event_type, "attendeeId": attendee_id, "externalUserId": user, **extra},
            )
        )

    for attendee_id, user in people:
        say("chime:AttendeeAdded", attendee_id, user)
        say("chime:AttendeeAuthorized", attendee_id, user)
        say("chime:AttendeeJoined", attendee_id, user, networkType="PSTN" if rng.random() < 0.2 else "Voip")
    middle_of_meeting = len(steps)
    for _ in range(attendees * 3):
        attendee_id, user = rng.choice(people)
        action = rng.random()
        if action < 0.3:
            say("chime:AttendeeVideoStarted", attendee_id, user)
            say("chime:AttendeeVideoStopped", attendee_id, user)
        elif action < 0.4:
            say("chime:AttendeeScreenShareStarted", attendee_id, user)
            say("chime:AttendeeScreenShareStopped", attendee_id, user)
        elif action < 0.55:
            content, content_user = f"{attendee_id}#content", f"{user}#content"
            say("chime:AttendeeContentJoined", content, content_user)
            say("chime:AttendeeContentVideoStarted", content, content_user)
            say("chime:AttendeeContentVideoStopped", content, content_user)
            say("chime:AttendeeContentLeft", content, content_user)
        elif action < 0.7:
            say("chime:AttendeeDropped", attendee_id, user)
            say("chime:AttendeeJoined", attendee_id, user, networkType="Voip")
        else:
            capabilities = {
                "audio": "SendReceive",
                "video": rng.choice(["SendReceive", "Receive", "None"]),
                "content": rng.choice(["SendReceive", "Receive"]),
            }
            say(
                "chime:AttendeeCapabilitiesUpdated",
                attendee_id,
                user,
                success=rng.choice(["1", "1", "1", "0"]),
                attendeeCapabilities=capabilities,
            )
    # Transcription hiccups somewhere in the middle of the meeting.
    hiccup = rng.randint(middle_of_meeting, len(steps))
    steps[hiccup:hiccup] = [
        (meeting, {**base, "eventType": "chime:TranscriptionInterrupted"}),
        (meeting, {**base, "eventType": "chime:TranscriptionResumed"}),
    ]
    for attendee_id, user in people:
        say("chime:AttendeeDeleted" if rng.random() < 0.1 else "chime:AttendeeLeft", attendee_id, user)
    steps.append((meeting, {**base, "eventType": "chime:TranscriptionStopped"}))
    steps.append(
        (pipeline, {**base, "eventType": "chime:MediaPipelineDeleted", "mediaPipelineId": pipeline_id})
    )
    steps.append((meeting, {**base, "eventType": "chime:MeetingEnded"}))
    return steps


def simulated_events(
    *,
    seed: int,
    meetings: int,
    attendees: int,
    start_ms: int,
    step_ms: float = 100.0,
    forever: bool = False,
) -> Iterator[SimulatedEvent]:
    """Interleave ``meetings`` concurrent meetings; with ``forever`` a new one starts as one ends."""
    rng = random.Random(seed)
    next_index = 0
    running: list[list[tuple[str, dict[str, Any]]]] = []

    def start() -> None:
        nonlocal next_index
        running.append(_script(rng, index=next_index, attendees=attendees))
        next_index += 1

    for _ in range(meetings):
        start()
    emitted = 0
    while running:
        script = rng.choice(running)
        detail_type, detail = script.pop(0)
        if not script:
            running.remove(script)
            if forever:
                start()
        yield SimulatedEvent(detail_type, {**detail, "timestamp": start_ms + int(emitted * step_ms)})
        emitted += 1


def envelope_body(event: SimulatedEvent, *, kind: str, rng: random.Random) -> str:
    """The message body Chime would deliver: EventBridge envelope, SNS-wrapped envelope, or bare detail."""
    if kind == "bare":
        return json.dumps(event.detail)
    envelope = {
        "version": "0",
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "detail-type": event.detail_type,
        "source": "aws.chime",
        "account": ACCOUNT,
        "time": "1970-01-01T00:00:00Z",
        "region": event.detail.get("mediaRegion", "us-east-1"),
        "resources": [],
        "detail": event.detail,
    }
    if kind == "eventbridge":
        return json.dumps(envelope)
    if kind == "sns":
        return json.dumps(
            {
                "Type": "Notification",
                "MessageId": str(uuid.UUID(int=rng.getrandbits(128))),
                "TopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:chime-meeting-events",
                "Message": json.dumps(envelope),
                "Timestamp": "1970-01-01T00:00:00.000Z",
                "SignatureVersion": "1",
            }
        )
    raise ValueError(f"unknown envelope kind {kind!r}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One body for one target queue (0 = the main queue, 1 = the SNS-wrapped mirror)."""

    target: int
    body: str


def deliveries(
    events: Iterator[SimulatedEvent],
    *,
    seed: int,
    envelope: str = "eventbridge",
    mirror_share: float = 0.0,
    duplicates: float = 0.0,
    poison: float = 0.0,
    shuffle_window: int = 0,
) -> Iterator[Delivery]:
    """Bodies as the queues would receive them: envelopes, mirror copies through SNS, duplicates,
    poison, and local reordering within ``shuffle_window`` bodies."""
    rng = random.Random(seed ^ 0x5EED)
    window: list[Delivery] = []

    def kind() -> str:
        return rng.choice(ENVELOPES) if envelope == "mixed" else envelope

    def produced(event: SimulatedEvent) -> Iterator[Delivery]:
        yield Delivery(0, envelope_body(event, kind=kind(), rng=rng))
        if mirror_share and rng.random() < mirror_share:
            yield Delivery(1, envelope_body(event, kind="sns", rng=rng))
        if duplicates and rng.random() < duplicates:
            yield Delivery(0, envelope_body(event, kind=kind(), rng=rng))  # at-least-once delivery
        if poison and rng.random() < poison:
            yield Delivery(0, rng.choice(POISON))

    for event in events:
        for delivery in produced(event):
            if shuffle_window <= 1:
                yield delivery
                continue
            window.append(delivery)
            if len(window) >= shuffle_window:
                yield window.pop(rng.randrange(len(window)))
    rng.shuffle(window)
    yield from window
