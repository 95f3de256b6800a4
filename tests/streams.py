"""Realistic Chime event streams for integration tests (pure, deterministic by seed)."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

ACCOUNT = "111122223333"


def meeting_stream(
    *, seed: int, meeting_id: str | None = None, attendees: int = 6, end: bool = True
) -> list[dict[str, Any]]:
    """The details of one meeting's events, in time order, with ties at the same ms on purpose."""
    rng = random.Random(seed)
    meeting_id = meeting_id or str(uuid.UUID(int=rng.getrandbits(128)))
    external = f"room-{seed}"
    ts = 1_700_000_000_000 + seed * 10_000_000
    base = {"meetingId": meeting_id, "externalMeetingId": external, "mediaRegion": "eu-west-1"}
    events: list[dict[str, Any]] = [{**base, "eventType": "chime:MeetingStarted", "timestamp": ts}]

    seen: set[tuple[str | None, str, int]] = set()

    def add(event_type: str, attendee: str | None = None, **extra: Any) -> None:
        nonlocal ts
        ts += rng.choice([0, 0, 1, 5, 250, 1000])
        while (attendee, event_type, ts) in seen:  # one natural key, one occurrence
            ts += 1
        seen.add((attendee, event_type, ts))
        detail = {**base, "eventType": event_type, "timestamp": ts, **extra}
        if attendee:
            detail["attendeeId"] = attendee
        events.append(detail)

    add("chime:TranscriptionStarted")
    add("chime:MediaPipelineInProgress", mediaPipelineId=f"pipe-{seed}")
    people = [(f"att-{seed}-{i}", f"user-{i}@example.com") for i in range(attendees)]
    for attendee, user in people:
        add("chime:AttendeeAdded", attendee, externalUserId=user)
        add("chime:AttendeeAuthorized", attendee, externalUserId=user)
        add("chime:AttendeeJoined", attendee, externalUserId=user, networkType=rng.choice(["Voip", "PSTN"]))
    for _ in range(attendees * 4):
        attendee, user = rng.choice(people)
        action = rng.choice(["video", "screen", "content", "drop", "caps", "unknown"])
        if action == "video":
            add("chime:AttendeeVideoStarted", attendee, externalUserId=user)
            add("chime:AttendeeVideoStopped", attendee, externalUserId=user)
        elif action == "screen":
            add("chime:AttendeeScreenShareStarted", attendee, externalUserId=user)
        elif action == "content":
            content = f"{attendee}#content"
            add("chime:AttendeeContentJoined", content, externalUserId=f"{user}#content")
            add("chime:AttendeeContentVideoStarted", content, externalUserId=f"{user}#content")
            if rng.random() < 0.5:
                add("chime:AttendeeContentLeft", content, externalUserId=f"{user}#content")
        elif action == "drop":
            add("chime:AttendeeDropped", attendee, externalUserId=user)
            add("chime:AttendeeJoined", attendee, externalUserId=user, networkType="Voip")
        elif action == "caps":
            caps = {"audio": "SendReceive", "video": rng.choice(["Send", "None"]), "content": "SendReceive"}
            add("chime:AttendeeCapabilitiesUpdated", attendee, success=rng.choice(["1", "0"]), **caps)
        else:
            add("chime:AttendeeSomethingNew", attendee, externalUserId=user)
    add("chime:TranscriptionInterrupted")
    add("chime:TranscriptionResumed")
    for attendee, user in people[: attendees // 2]:
        add(rng.choice(["chime:AttendeeLeft", "chime:AttendeeDeleted"]), attendee, externalUserId=user)
    add("chime:MediaPipelineDeleted", mediaPipelineId=f"pipe-{seed}")
    if end:
        add("chime:MeetingEnded")
    return events


def detail_type_of(detail: dict[str, Any]) -> str:
    if str(detail.get("eventType", "")).startswith("chime:MediaPipeline"):
        return "Chime Media Pipeline State Change"
    return "Chime Meeting State Change"


def as_envelope(detail: dict[str, Any], *, account: str = ACCOUNT) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type_of(detail),
            "source": "aws.chime",
            "account": account,
            "time": "2023-11-14T22:13:20Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )


def as_sns(detail: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:chime-events",
            "Message": as_envelope(detail),
            "Timestamp": "2023-11-14T22:13:20.000Z",
        }
    )


def as_bare(detail: dict[str, Any]) -> str:
    return json.dumps(detail)


WRAPPERS = (as_envelope, as_sns, as_bare)


def bodies(details: list[dict[str, Any]], *, seed: int, wrap=None) -> list[str]:
    """Message bodies, each in a (seeded) random envelope unless ``wrap`` is given."""
    rng = random.Random(seed)
    return [(wrap or rng.choice(WRAPPERS))(detail) for detail in details]


def shuffled_with_duplicates(items: list[Any], *, seed: int, duplicate_share: float = 0.3) -> list[Any]:
    rng = random.Random(seed)
    result = list(items) + [item for item in items if rng.random() < duplicate_share]
    rng.shuffle(result)
    return result
