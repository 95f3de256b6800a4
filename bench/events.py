"""Realistic Amazon Chime SDK meeting events for the benchmarks, deterministic with a seed.

``meetings_generate(meetings=M, attendees=A, events_per_meeting=E)`` gives M meetings of exactly E
events each (EventBridge envelope JSON strings), so "100 meetings x 20 attendees x 200 events" is
exactly 20,000 events. Each meeting:

- ``MeetingStarted``; then per attendee ``AttendeeAdded`` -> ``AttendeeAuthorized`` ->
  ``AttendeeJoined`` (``Voip`` mostly, some ``PSTN``), a random mix of segments
  (video start/stop, drop + rejoin, content share as ``X#content``: ``AttendeeContentJoined``,
  ``AttendeeContentVideoStarted``/``Stopped``, ``AttendeeContentLeft``), ``AttendeeLeft``;
- ``MeetingEnded`` after the last attendee left.

Timestamps rise per attendee (so natural keys never collide) and the meetings are staggered.
Each event gets a delivery time (timestamp + a random delay, sometimes seconds), and a meeting's
events are listed in delivery order: mostly in timestamp order, with the out-of-order arrivals
Chime's best-effort delivery gives (which the ingest must re-fold).

Pure Python, no Django: ``python -m bench.events --meetings 2 --attendees 3 --events-per-meeting 20``
prints a sample.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

ACCOUNT = "111122223333"
REGION = "us-east-1"
DETAIL_TYPE = "Chime Meeting State Change"
# 2026-11-24T09:00:00Z
START_MS = int(datetime(2026, 11, 24, 9, 0, tzinfo=UTC).timestamp() * 1000)
BASE_EVENTS_PER_ATTENDEE = 4  # Added, Authorized, Joined, Left


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    meeting_index: int
    event_type: str
    attendee_id: str
    timestamp: int
    deliver_at: int
    body: str


@dataclass(slots=True)
class MeetingStream:
    index: int
    meeting_id: str
    external_meeting_id: str
    attendee_ids: list[str] = field(default_factory=list)
    events: list[GeneratedEvent] = field(default_factory=list)  # delivery order


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _delivery_delay(rng: random.Random) -> int:
    """EventBridge -> SQS latency: usually well under a second, sometimes several seconds."""
    roll = rng.random()
    if roll < 0.90:
        return rng.randint(20, 800)
    if roll < 0.99:
        return rng.randint(800, 4000)
    return rng.randint(4000, 20000)


# Extra segments (beyond Added/Authorized/Joined/Left), by size.
VOIP_SEGMENTS = {
    2: (("video", 5), ("drop", 2), ("content2", 1)),
    3: (("content3", 1),),
    4: (("content4", 1),),
}


def _segments(rng: random.Random, extra: int, *, pstn: bool) -> list[str]:
    """A list of segment names whose sizes add up to exactly ``extra``."""
    if pstn:
        return ["drop"] * (extra // 2)
    chosen: list[str] = []
    remaining = extra
    while remaining > 1:
        options = [opt for size, opts in VOIP_SEGMENTS.items() if size <= remaining for opt in opts]
        name = rng.choices([n for n, _ in options], weights=[w for _, w in options])[0]
        chosen.append(name)
        remaining -= {"content3": 3, "content4": 4}.get(name, 2)
    if remaining == 1:
        chosen.append("video_open")  # VideoStarted, turned off by AttendeeLeft
    return chosen


def _attendee_timeline(
    rng: random.Random, *, attendee_id: str, joined_at: int, extra: int, pstn: bool
) -> list[tuple[str, str, int, str]]:
    """(event type, attendee id, timestamp, network type) for one attendee, rising timestamps."""
    network = "PSTN" if pstn else "Voip"
    content_id = f"{attendee_id}#content"
    out: list[tuple[str, str, int, str]] = []
    ts = joined_at

    def emit(name: str, who: str = attendee_id, gap: tuple[int, int] = (2_000, 60_000)) -> None:
        nonlocal ts
        ts += rng.randint(*gap)
        out.append((f"chime:{name}", who, ts, network))

    emit("AttendeeAdded", gap=(0, 0))
    emit("AttendeeAuthorized", gap=(150, 2_000))
    emit("AttendeeJoined", gap=(300, 3_000))
    for segment in _segments(rng, extra, pstn=pstn):
        if segment == "video":
            emit("AttendeeVideoStarted")
            emit("AttendeeVideoStopped")
        elif segment == "video_open":
            emit("AttendeeVideoStarted")
        elif segment == "drop":
            emit("AttendeeDropped")
            emit("AttendeeJoined", gap=(1_000, 15_000))
        else:
            emit("AttendeeContentJoined", content_id)
            if segment in ("content3", "content4"):
                emit("AttendeeContentVideoStarted", content_id, gap=(100, 1_500))
            if segment == "content4":
                emit("AttendeeContentVideoStopped", content_id)
            emit("AttendeeContentLeft", content_id, gap=(1_000, 30_000))
    emit("AttendeeLeft", gap=(5_000, 120_000))
    return out


def _envelope(
    rng: random.Random,
    *,
    event_type: str,
    timestamp: int,
    meeting_id: str,
    external_meeting_id: str,
    attendee_id: str = "",
    external_user_id: str = "",
    network_type: str = "",
) -> str:
    detail: dict[str, object] = {
        "version": "0",
        "eventType": event_type,
        "timestamp": timestamp,
        "meetingId": meeting_id,
        "externalMeetingId": external_meeting_id,
        "mediaRegion": REGION,
    }
    if attendee_id:
        detail["attendeeId"] = attendee_id
        detail["externalUserId"] = external_user_id
        if event_type in ("chime:AttendeeJoined", "chime:AttendeeContentJoined"):
            detail["networkType"] = network_type
    envelope = {
        "version": "0",
        "id": _uuid(rng),
        "detail-type": DETAIL_TYPE,
        "source": "aws.chime",
        "account": ACCOUNT,
        "time": _iso(timestamp),
        "region": REGION,
        "resources": [],
        "detail": detail,
    }
    return json.dumps(envelope, separators=(",", ":"))


def meeting_generate(
    index: int,
    *,
    attendees: int,
    events_per_meeting: int,
    seed: int,
    start_ms: int = START_MS,
    pstn_share: float = 0.15,
) -> MeetingStream:
    """One meeting of exactly ``events_per_meeting`` events (its own RNG: meetings are independent)."""
    extras_total = events_per_meeting - 2 - BASE_EVENTS_PER_ATTENDEE * attendees
    if extras_total < 0:
        raise ValueError(
            f"{events_per_meeting} events cannot hold {attendees} attendees "
            f"(at least {2 + BASE_EVENTS_PER_ATTENDEE * attendees})"
        )
    rng = random.Random(f"{seed}/{index}")
    meeting_id = _uuid(rng)
    external_meeting_id = f"bench-meeting-{index:04d}"
    stream = MeetingStream(index=index, meeting_id=meeting_id, external_meeting_id=external_meeting_id)

    extras = [0] * attendees
    for _ in range(extras_total):
        extras[rng.randrange(attendees)] += 1

    started = start_ms + index * 3_000
    rows: list[tuple[str, str, int, str, str]] = []  # type, attendee, ts, network, external user
    for a in range(attendees):
        attendee_id = _uuid(rng)
        stream.attendee_ids.append(attendee_id)
        pstn = extras[a] % 2 == 0 and rng.random() < pstn_share
        user = f"user-{index:04d}-{a:03d}"
        joined_at = started + rng.randint(1_000, 300_000)
        for event_type, who, ts, network in _attendee_timeline(
            rng, attendee_id=attendee_id, joined_at=joined_at, extra=extras[a], pstn=pstn
        ):
            rows.append((event_type, who, ts, network, user + ("#content" if who != attendee_id else "")))
    ended = max(ts for _, _, ts, _, _ in rows) + rng.randint(5_000, 30_000)

    events: list[GeneratedEvent] = []
    for event_type, ts in (("chime:MeetingStarted", started), ("chime:MeetingEnded", ended)):
        body = _envelope(
            rng,
            event_type=event_type,
            timestamp=ts,
            meeting_id=meeting_id,
            external_meeting_id=external_meeting_id,
        )
        events.append(GeneratedEvent(index, event_type, "", ts, ts + _delivery_delay(rng), body))
    for event_type, who, ts, network, user in rows:
        body = _envelope(
            rng,
            event_type=event_type,
            timestamp=ts,
            meeting_id=meeting_id,
            external_meeting_id=external_meeting_id,
            attendee_id=who,
            external_user_id=user,
            network_type=network,
        )
        events.append(GeneratedEvent(index, event_type, who, ts, ts + _delivery_delay(rng), body))
    events.sort(key=lambda e: (e.deliver_at, e.timestamp, e.body))
    stream.events = events
    assert len(events) == events_per_meeting
    return stream


def meetings_generate(
    *, meetings: int = 100, attendees: int = 20, events_per_meeting: int = 200, seed: int = 20261124
) -> list[MeetingStream]:
    return [
        meeting_generate(i, attendees=attendees, events_per_meeting=events_per_meeting, seed=seed)
        for i in range(meetings)
    ]


def interleaved(streams: list[MeetingStream]) -> list[GeneratedEvent]:
    """Every meeting's events merged by delivery time: one EventBridge rule feeding one queue."""
    return list(heapq.merge(*(s.events for s in streams), key=lambda e: (e.deliver_at, e.meeting_index)))


def out_of_order_share(stream: MeetingStream) -> float:
    """Share of events delivered after an event with a later timestamp (same meeting)."""
    late = 0
    highest = -1
    for event in stream.events:
        if event.timestamp < highest:
            late += 1
        highest = max(highest, event.timestamp)
    return late / len(stream.events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=2)
    parser.add_argument("--attendees", type=int, default=3)
    parser.add_argument("--events-per-meeting", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--stats", action="store_true", help="print counts per event type instead")
    args = parser.parse_args()
    streams = meetings_generate(
        meetings=args.meetings,
        attendees=args.attendees,
        events_per_meeting=args.events_per_meeting,
        seed=args.seed,
    )
    if args.stats:
        from collections import Counter

        counts = Counter(e.event_type for s in streams for e in s.events)
        for name, count in counts.most_common():
            print(f"{count:7d} {name}")
        share = sum(out_of_order_share(s) for s in streams) / len(streams)
        print(f"total {sum(counts.values())}, delivered out of timestamp order: {share:.1%}")
        return
    for event in interleaved(streams):
        print(event.body)


if __name__ == "__main__":
    main()
