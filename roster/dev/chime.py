"""Chime meeting events for the simulator, the demo, the benchmarks and the tests. Pure: no Django,
no I/O; the same seed gives the same events.

One builder of event details and message bodies, in the shapes of the Amazon Chime SDK
documentation (shared/ROSTER.md, roster/domain/events.py)::

    d = detail("AttendeeJoined", "m-1", "a-1", ts=1000, networkType="Voip")
    as_json(envelope(d))        # EventBridge envelope (also what SNS raw delivery hands a queue)
    as_json(sns(envelope(d)))   # SNS Notification whose Message is the envelope
    as_json(d)                  # bare detail (the meeting's own SQS queue)
    chime_event("AttendeeJoined", "m-1", "a-1", ts=1000)   # a parsed ChimeEvent, via event_parse

Event types may be given with or without the ``chime:`` prefix; extra keyword arguments are copied
into the detail verbatim (Chime's camelCase names: ``externalUserId``, ``networkType``, ...).

One generator of realistic traffic: :func:`meeting_stream` (one meeting: with the loose ends tests
want or tidy, of an exact size, a join burst, on a clock of given gaps), :func:`voice_connector_call`
(a streamed call), :func:`meetings_interleave` (several meetings and calls at once on one clock, a
rate's or minutes-long meetings'), :func:`webinar_family` (a primary meeting and its replicas),
:func:`live_traffic` (endless joins and video); and what queues make of it: :func:`deliveries`
(envelopes, SNS mirror copies, duplicates, poison, local reordering), :func:`arrival_order`
(delivery delays), :func:`bodies`, :func:`shuffled_with_duplicates`.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from roster.dev.chime_api import ChimeApi
from roster.domain.events import (
    CHIME_SOURCE,
    MEETING_DETAIL_TYPE,
    PIPELINE_DETAIL_TYPE,
    VOICE_CONNECTOR_DETAIL_TYPE,
    VOICE_CONNECTOR_STATUS_TIME_FIELD,
    ChimeEvent,
    Rejection,
    event_parse,
)

MEETING_ID = "87654321-4321-4321-1234-111122223333"
ACCOUNT = "111122223333"
REGION = "us-east-1"
BASE_TS = 1_700_000_000_000
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:chime-events"
ENVELOPE_ID = "5cc6b1de-1111-2222-3333-444455556666"
SNS_MESSAGE_ID = "8e3c1a0f-aaaa-bbbb-cccc-ddddeeeeffff"
KINDS = ("eventbridge", "sns", "bare")  # how a body reaches a queue
# Each is quarantined with a reason of its own.
POISON = (
    '{"version": "0", "detail-type": "Chime Meeting State Change" "source": "aws.chime"}',  # docs-style JSON
    '["not", "an", "object"]',
    '{"source": "aws.s3", "detail-type": "Object Created", "detail": {}}',
    '{"eventType": "chime:AttendeeJoined", "meetingId": "m", "timestamp": "yesterday"}',
    '{"hello": "world"}',
)


# --- details and bodies ---------------------------------------------------------------------


def chime_type(event_type: str) -> str:
    """``AttendeeJoined`` -> ``chime:AttendeeJoined`` (already prefixed names are kept)."""
    return event_type if event_type.startswith("chime:") else f"chime:{event_type}"


def detail(
    event_type: str,
    meeting_id: str = MEETING_ID,
    attendee_id: str | None = None,
    ts: int = BASE_TS,
    **extra: Any,
) -> dict[str, Any]:
    """A meeting (or pipeline) event ``detail``; ``attendeeId`` only when ``attendee_id`` is given."""
    doc: dict[str, Any] = {
        "version": "0",
        "eventType": chime_type(event_type),
        "timestamp": ts,
        "meetingId": meeting_id,
    }
    if attendee_id is not None:
        doc["attendeeId"] = attendee_id
    doc.update(extra)
    return doc


def vc_detail(
    status: str,
    *,
    voice_connector_id: str = "abcdef1ghij2klmno3pqr4",
    transaction_id: str = "daaf4cc5-0b64-4b5a-9a86-2d7d3d2d1c9e",
    at: str = "2022-08-30T19:06:18.112Z",
    **extra: Any,
) -> dict[str, Any]:
    """A Voice Connector streaming ``detail``; ``at`` goes in the status's own time field."""
    doc: dict[str, Any] = {
        "version": "0",
        "callId": "1112-2222-4333",
        "direction": "Outbound",
        "fromNumber": "+12065550100",
        "toNumber": "+12065550200",
        "streamArn": "arn:aws:kinesisvideo:us-east-1:111122223333:stream/chime-vc/1",
        "voiceConnectorId": voice_connector_id,
        "transactionId": transaction_id,
        "streamingStatus": status,
    }
    if status in VOICE_CONNECTOR_STATUS_TIME_FIELD:
        doc[VOICE_CONNECTOR_STATUS_TIME_FIELD[status]] = at
    doc.update(extra)
    return doc


def detail_type_for(doc: dict[str, Any]) -> str:
    """The EventBridge detail-type Chime uses for a detail of this shape."""
    if "streamingStatus" in doc:
        return VOICE_CONNECTOR_DETAIL_TYPE
    if str(doc.get("eventType", "")).startswith("chime:MediaPipeline"):
        return PIPELINE_DETAIL_TYPE
    return MEETING_DETAIL_TYPE


def envelope(
    doc: dict[str, Any],
    *,
    detail_type: str | None = None,
    account: str = ACCOUNT,
    region: str = REGION,
    envelope_id: str = ENVELOPE_ID,
    source: str = CHIME_SOURCE,
) -> dict[str, Any]:
    """An EventBridge envelope around ``doc`` (detail-type inferred from the detail unless given)."""
    return {
        "version": "0",
        "id": envelope_id,
        "detail-type": detail_type or detail_type_for(doc),
        "source": source,
        "account": account,
        "time": "2023-11-14T22:13:20Z",
        "region": region,
        "resources": [],
        "detail": doc,
    }


def sns(
    message: dict[str, Any] | str,
    *,
    message_id: str = SNS_MESSAGE_ID,
    message_type: str = "Notification",
    topic_arn: str = TOPIC_ARN,
) -> dict[str, Any]:
    """An SNS message as a queue subscribed without raw delivery receives it.

    ``message`` (an envelope or bare detail; dicts are serialised) becomes the ``Message`` string.
    """
    return {
        "Type": message_type,
        "MessageId": message_id,
        "TopicArn": topic_arn,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": "2023-11-14T22:13:20.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }


def as_json(doc: Any) -> str:
    """The message body text of a document."""
    return json.dumps(doc)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def body(
    doc: dict[str, Any],
    *,
    kind: str = "eventbridge",
    rng: random.Random | None = None,
    account: str = ACCOUNT,
) -> str:
    """The body a queue receives for ``doc``, delivered as ``kind`` (one of KINDS), with envelope
    and SNS message ids of its own: drawn from ``rng`` when given (same seed, same bodies)."""
    if kind == "bare":
        return as_json(doc)

    def fresh_id() -> str:
        return _uuid(rng) if rng is not None else str(uuid.uuid4())

    wrapped = envelope(doc, account=account, envelope_id=fresh_id())
    if kind == "eventbridge":
        return as_json(wrapped)
    if kind == "sns":
        return as_json(sns(wrapped, message_id=fresh_id()))
    raise ValueError(f"unknown body kind {kind!r}")


def as_envelope(doc: dict[str, Any], *, account: str = ACCOUNT) -> str:
    return body(doc, account=account)


def as_sns(doc: dict[str, Any]) -> str:
    return body(doc, kind="sns")


def as_bare(doc: dict[str, Any]) -> str:
    return body(doc, kind="bare")


def accepted(raw: str | bytes, **kwargs: Any) -> ChimeEvent:
    """``event_parse(raw)``, failing (a test) with the rejection when the body is not accepted."""
    outcome = event_parse(raw, **kwargs)
    if isinstance(outcome, Rejection):
        raise AssertionError(f"expected an accepted event, got {outcome}")
    return outcome


def chime_event(
    event_type: str,
    meeting_id: str = MEETING_ID,
    attendee_id: str | None = None,
    ts: int = BASE_TS,
    **extra: Any,
) -> ChimeEvent:
    """A parsed ChimeEvent for ``detail(...)`` delivered in an EventBridge envelope.

    MediaPipeline* types come out as kind "pipeline" (pass ``mediaPipelineId=...``).
    """
    return accepted(as_json(envelope(detail(event_type, meeting_id, attendee_id, ts, **extra))))


def unknown_event(doc: dict[str, Any], *, detail_type: str = "Chime Something New") -> ChimeEvent:
    """A parsed ChimeEvent of a detail-type the service does not model (kind "unknown")."""
    return accepted(as_json(envelope(doc, detail_type=detail_type)))


def vc_event(status: str, **kwargs: Any) -> ChimeEvent:
    """A parsed Voice Connector streaming ChimeEvent (see :func:`vc_detail`)."""
    return accepted(as_json(envelope(vc_detail(status, **kwargs))))


# --- meetings -------------------------------------------------------------------------------

MEETING_CAPACITY = 250  # attendees Chime admits to one meeting; larger audiences watch replicas
GAPS_MS = (0, 0, 1, 5, 250, 1000)  # from one event to the next: same-ms ties on purpose
NAMES = ("ana", "bo", "chen", "dara", "eli", "femi", "gus", "hana", "ivo", "jo", "kai", "lea", "mo", "noor")
ROOMS = ("standup", "sales", "support", "board", "design")
MEDIA_REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
# What an attendee does mid-meeting: action -> the most events it takes.
LOOSE_ACTIONS = {"video": 2, "screen": 1, "content": 3, "drop": 2, "caps": 1, "unknown": 1}
# Tidy attendees switch things on and, later, off (a camera stays on for a while): the events it
# takes to switch each on, and as many to switch it off.
SWITCHES = {"video": 1, "screen": 1, "content": 2}
SHARES = ("screen", "content")  # one attendee presents at a time
TIDY_ACTIONS = ("video", "video", "content", "content", "screen", "drop", "caps")  # drawn evenly


def meeting_stream(
    *,
    seed: int,
    attendees: int = 6,
    end: bool = True,
    meeting_id: str | None = None,
    external_meeting_id: str | None = None,
    start_ms: int | None = None,
    gaps_ms: Sequence[int] = GAPS_MS,
    tidy: bool = False,
    events: int | None = None,
    joins_only: bool = False,
) -> list[dict[str, Any]]:
    """One meeting's event details in time order: started; transcription and a media pipeline;
    attendees added, authorized and joined (Voip or PSTN), who then toggle video, share their
    screen or content (``X#content``), drop and rejoin, get capabilities updated (success "1"
    or "0"); a transcription hiccup; attendees leave or are deleted; the pipeline deleted; ended
    (unless ``end`` is false). Each timestamp is the last plus a gap drawn from ``gaps_ms``, and
    no natural key occurs twice.

    By default the stream keeps the loose ends the tests want: event types the product does not
    model, shares never stopped, half the attendees still in. ``tidy``: realistic traffic (the
    simulator, the benchmarks): video and shares stay on until the same attendee switches them
    off, a drop, or the end of the meeting, where all are stopped; everyone leaves, transcription
    stopped.
    ``events``: exactly that many events (what attendees do fills the rest). ``joins_only``: a
    join burst, MeetingStarted and one AttendeeJoined per attendee.
    """
    rng = random.Random(seed)
    meeting_id = meeting_id or _uuid(rng)
    region = rng.choice(MEDIA_REGIONS) if tidy else "eu-west-1"
    base = {
        "meetingId": meeting_id,
        "externalMeetingId": external_meeting_id or f"room-{seed}",
        "mediaRegion": region,
    }
    ts = 1_700_000_000_000 + seed * 10_000_000 if start_ms is None else start_ms
    details: list[dict[str, Any]] = [{**base, "eventType": "chime:MeetingStarted", "timestamp": ts}]
    seen: set[tuple[str | None, str, int]] = set()

    def add(event_type: str, attendee: str | None = None, *, pause_ms: int = 0, **extra: Any) -> None:
        nonlocal ts
        ts += rng.choice(gaps_ms) + pause_ms
        while (attendee, event_type, ts) in seen:  # one natural key, one occurrence
            ts += 1
        seen.add((attendee, event_type, ts))
        doc = {**base, "eventType": f"chime:{event_type}", "timestamp": ts, **extra}
        if attendee:
            doc["attendeeId"] = attendee
        details.append(doc)

    if not joins_only:
        add("TranscriptionStarted")
        add("MediaPipelineInProgress", mediaPipelineId=f"pipe-{seed}")
    people = [
        (f"att-{seed}-{i}", f"{rng.choice(NAMES)}.{i}@example.com" if tidy else f"user-{i}@example.com")
        for i in range(attendees)
    ]
    for attendee, user in people:
        if not joins_only:
            add("AttendeeAdded", attendee, externalUserId=user)
            add("AttendeeAuthorized", attendee, externalUserId=user)
        add("AttendeeJoined", attendee, externalUserId=user, networkType=rng.choice(["Voip", "PSTN"]))
    if joins_only:
        return details

    leaving = people if tidy else people[: attendees // 2]
    budget = None if events is None else events - len(details) - (3 + len(leaving) + tidy + end)
    if budget is not None and budget < 0:
        raise ValueError(f"{events} events cannot hold a meeting of {attendees} attendees")
    switched_on: dict[str, dict[str, str]] = {attendee: {} for attendee, _ in people}  # what -> user
    closing = 0  # events still needed to switch everything off

    def switch(attendee: str, user: str, what: str) -> None:
        nonlocal closing
        off = what in switched_on[attendee]
        content, content_user = f"{attendee}#content", f"{user}#content"
        if what == "content" and off:
            add("AttendeeContentVideoStopped", content, externalUserId=content_user)
            add("AttendeeContentLeft", content, externalUserId=content_user)
        elif what == "content":
            add("AttendeeContentJoined", content, externalUserId=content_user)
            add("AttendeeContentVideoStarted", content, externalUserId=content_user)
        else:
            kind = "Video" if what == "video" else "ScreenShare"
            add(f"Attendee{kind}{'Stopped' if off else 'Started'}", attendee, externalUserId=user)
        if off:
            del switched_on[attendee][what]
        else:
            switched_on[attendee][what] = user
        closing += -SWITCHES[what] if off else SWITCHES[what]

    def tidy_cost(action: str, attendee: str) -> tuple[int, int]:
        """(events it takes, events still needed after it to switch everything off)."""
        if action in SWITCHES:
            n = SWITCHES[action]
            return n, closing - n if action in switched_on[attendee] else closing + n
        if action == "drop":  # a drop switches the attendee's video and shares off
            return 2, closing - sum(SWITCHES[what] for what in switched_on[attendee])
        return 1, closing

    for step in itertools.count():
        if budget == (closing if tidy else 0) or (budget is None and step == attendees * 4):
            break
        attendee, user = rng.choice(people)
        if tidy:
            presenting = any(what in SHARES for shown in switched_on.values() for what in shown)
            action = rng.choice(
                [
                    a
                    for a in TIDY_ACTIONS
                    if (budget is None or sum(tidy_cost(a, attendee)) <= budget)
                    and not (a in SHARES and presenting and a not in switched_on[attendee])  # one at a time
                ]
            )
        else:
            action = rng.choice([a for a, most in LOOSE_ACTIONS.items() if budget is None or most <= budget])
        content, content_user, before = f"{attendee}#content", f"{user}#content", len(details)
        if tidy and action in SWITCHES:
            switch(attendee, user, action)
        elif action == "video":
            add("AttendeeVideoStarted", attendee, externalUserId=user)
            add("AttendeeVideoStopped", attendee, externalUserId=user)
        elif action == "screen":
            add("AttendeeScreenShareStarted", attendee, externalUserId=user)
        elif action == "content":
            add("AttendeeContentJoined", content, externalUserId=content_user)
            add("AttendeeContentVideoStarted", content, externalUserId=content_user)
            if rng.random() < 0.5:
                add("AttendeeContentLeft", content, externalUserId=content_user)
        elif action == "drop":
            add("AttendeeDropped", attendee, externalUserId=user)
            back = rng.randint(1_000, 5_000) if tidy else 0  # tidy: reconnected a while later
            add("AttendeeJoined", attendee, externalUserId=user, networkType="Voip", pause_ms=back)
            closing -= sum(SWITCHES[what] for what in switched_on[attendee])
            switched_on[attendee].clear()
        elif action == "caps":
            caps = {"audio": "SendReceive", "video": rng.choice(["Send", "None"]), "content": "SendReceive"}
            shape = {"attendeeCapabilities": caps} if tidy else caps  # loose: the fold reads flat ones too
            add("AttendeeCapabilitiesUpdated", attendee, success=rng.choice(["1", "0"]), **shape)
        else:
            add("AttendeeSomethingNew", attendee, externalUserId=user)
        if budget is not None:
            budget -= len(details) - before
    for attendee, shown in switched_on.items():  # tidy: everything still on is switched off
        for what, user in list(shown.items()):
            switch(attendee, user, what)
    add("TranscriptionInterrupted")
    add("TranscriptionResumed")
    for attendee, user in leaving:
        add(rng.choice(["AttendeeLeft", "AttendeeDeleted"]), attendee, externalUserId=user)
    if tidy:
        add("TranscriptionStopped")
    add("MediaPipelineDeleted", mediaPipelineId=f"pipe-{seed}")
    if end:
        add("MeetingEnded")
    return details


def voice_connector_call(*, seed: int) -> list[dict[str, Any]]:
    """One call streamed by a Voice Connector to Kinesis: STARTED, often an UPDATED, then ENDED (or
    FAILED, one call in five); :func:`stamped` sets when each happened."""
    rng = random.Random(seed)
    connector, transaction = f"vc{rng.randrange(10**6):06d}demo", _uuid(rng)
    stream = f"ChimeVoiceConnector-{connector}-{transaction}"
    call = {
        "callId": _uuid(rng),
        "direction": rng.choice(["Inbound", "Outbound"]),
        "fromNumber": f"+1206555{rng.randrange(10**4):04d}",
        "toNumber": f"+1206555{rng.randrange(10**4):04d}",
        "streamArn": f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT}:stream/{stream}/1",
    }
    statuses = ["STARTED", *["UPDATED"] * (rng.random() < 0.7), "FAILED" if rng.random() < 0.2 else "ENDED"]
    failure = {
        "failureReason": rng.choice(["Kinesis Video Stream not found", "Internal error streaming media"])
    }
    return [
        vc_detail(status, voice_connector_id=connector, transaction_id=transaction, **call)
        | (failure if status == "FAILED" else {})
        for status in statuses
    ]


def stamped(doc: dict[str, Any], ts: int) -> dict[str, Any]:
    """``doc`` happening at ``ts`` (epoch ms): a meeting event's ``timestamp``, or a Voice Connector
    event's status time (ISO 8601, as Chime writes it)."""
    status = doc.get("streamingStatus")
    if status is None:
        return {**doc, "timestamp": ts}
    at = datetime.fromtimestamp(ts / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return {**doc, VOICE_CONNECTOR_STATUS_TIME_FIELD[status]: at.replace("+00:00", "Z")}


def happened_at(doc: dict[str, Any]) -> int:
    """When ``doc`` happened (epoch ms): the inverse of :func:`stamped`."""
    status = doc.get("streamingStatus")
    if status is None:
        return doc["timestamp"]
    return round(datetime.fromisoformat(doc[VOICE_CONNECTOR_STATUS_TIME_FIELD[status]]).timestamp() * 1000)


def meetings_interleave(
    *,
    seed: int,
    meetings: int,
    attendees: int,
    start_ms: int,
    step_ms: float = 100.0,
    forever: bool = False,
    calls: int = 0,
    meeting_ms: int | None = None,
) -> Iterator[dict[str, Any]]:
    """``meetings`` tidy meetings at once, and ``calls`` Voice Connector streamed calls, their
    events interleaved (each script's in its order). With ``forever`` a new meeting (call) starts
    whenever one ends.

    On one of two clocks. By default scripts are drawn at random and event *i* happens at
    ``start_ms + i * step_ms`` (or a millisecond after its script's last event: two events of one
    script never share a millisecond they did not share in it, so none is taken for the other).
    With ``meeting_ms`` a meeting lasts about that long (60% to 140% of it; its own rhythm kept,
    the stream's gaps scaled) and a call a tenth to a third of it, meetings start two seconds
    apart, a new one 5 to 20 s after one ended; events come in time order, ``step_ms`` unused.
    """
    rng = random.Random(seed)
    indexes = itertools.count()

    def meeting() -> list[dict[str, Any]]:
        name = f"{rng.choice(ROOMS)}-{next(indexes)}"
        return meeting_stream(
            seed=rng.randrange(10**9),
            meeting_id=_uuid(rng),
            external_meeting_id=name,
            attendees=attendees,
            tidy=True,
        )

    def call() -> list[dict[str, Any]]:
        return voice_connector_call(seed=rng.randrange(10**9))

    makers = [meeting] * meetings + [call] * calls
    if meeting_ms is None:
        running = [[make, make(), None] for make in makers]  # maker, script left, its last (ts, mark)
        for emitted in itertools.count():
            if not running:
                return
            slot = rng.choice(running)
            make, script, last = slot
            doc = script.pop(0)
            ts = _apart(start_ms + int(emitted * step_ms), doc.get("timestamp"), last)
            slot[2] = (ts, doc.get("timestamp"))
            if not script:
                running.remove(slot)
                if forever:
                    running.append([make, make(), None])
            yield stamped(doc, ts)

    def timeline(make: Callable[[], list[dict[str, Any]]], start: int) -> Iterator[tuple[int, dict]]:
        while True:
            share = rng.uniform(0.6, 1.4) if make is meeting else rng.uniform(0.1, 0.33)
            timed = list(_spread(make(), start, int(meeting_ms * share)))
            yield from timed
            if not forever:
                return
            start = timed[-1][0] + rng.randint(5_000, 20_000)

    timelines = []
    for n, make in enumerate(makers):
        first = start_ms + (2000 * n if make is meeting else rng.randint(0, meeting_ms // 4))
        timelines.append(timeline(make, first))
    for _, doc in heapq.merge(*timelines, key=lambda item: item[0]):
        yield doc


def _spread(script: list[dict[str, Any]], start: int, span_ms: int) -> Iterator[tuple[int, dict]]:
    """``script`` stamped over ``span_ms`` from ``start``, in order: a meeting's own gaps scaled (a
    call's events evenly), events at one time kept together and never two others made one."""
    marks = [doc.get("timestamp", n) for n, doc in enumerate(script)]
    first, scale = marks[0], span_ms / max(1, marks[-1] - marks[0])
    last = None
    for mark, doc in zip(marks, script, strict=True):
        ts = _apart(start + int((mark - first) * scale), mark, last)
        last = (ts, mark)
        yield ts, stamped(doc, ts)


def _apart(ts: int, mark: int | None, last: tuple[int, int | None] | None) -> int:
    """``ts``, or just after the script's last event unless both had one time (``mark``) in it."""
    if last is None:
        return ts
    last_ts, last_mark = last
    return max(ts, last_ts if mark is not None and mark == last_mark else last_ts + 1)


def webinar_family(
    *, seed: int, viewers: int, replicas: int = 40, start_ms: int | None = None
) -> list[list[dict[str, Any]]]:
    """A webinar's join burst: ``viewers`` joins spread evenly over a primary meeting and its
    ``replicas`` (Chime caps a meeting at 250 attendees; a larger audience watches replica
    meetings, each with its own meetingId). Per meeting, primary first: MeetingStarted, then one
    AttendeeJoined per viewer, in time order."""
    members = replicas + 1
    if viewers > members * MEETING_CAPACITY:
        raise ValueError(f"{viewers} viewers do not fit in {members} meetings of {MEETING_CAPACITY}")
    rng = random.Random(seed)
    return [
        meeting_stream(
            seed=rng.randrange(10**9),
            attendees=viewers // members + (member < viewers % members),
            external_meeting_id=f"webinar-{seed}" + (f"-replica-{member:02d}" if member else ""),
            start_ms=start_ms,
            joins_only=True,
        )
        for member in range(members)
    ]


def live_traffic(
    *,
    meetings: Sequence[tuple[str, str]],
    prefix: str,
    seed: int,
    video: bool = True,
    clock: Callable[[], int] = lambda: int(time.time() * 1000),
) -> Iterator[tuple[str, str]]:
    """Endless traffic over running meetings, given as (meetingId, externalMeetingId), for live
    measurements, as (key, EventBridge body) stamped with ``clock`` (ms): AttendeeJoined of new
    attendees in random meetings (key ``j:<attendeeId>``); with ``video``, every other one is an
    AttendeeVideoStarted of the earliest joiner whose join is a second old (``v:<attendeeId>``),
    when one is."""
    rng = random.Random(seed)
    joined: deque[tuple[int, str, str, str]] = deque()
    numbers = itertools.count()
    for turn in itertools.count():
        now = clock()
        started = turn % 2 == 0 and bool(joined) and now - joined[0][0] >= 1000
        if started:
            _, meeting_id, external, attendee = joined.popleft()
        else:
            meeting_id, external = meetings[rng.randrange(len(meetings))]
            attendee = f"{prefix}-{next(numbers):06d}"
            if video:
                joined.append((now, meeting_id, external, attendee))
        doc = detail(
            "AttendeeVideoStarted" if started else "AttendeeJoined",
            meeting_id,
            attendee,
            now,
            externalMeetingId=external,
            externalUserId=f"{attendee}@example.com",
            mediaRegion=REGION,
            **({} if started else {"networkType": "Voip"}),
        )
        yield f"{'v' if started else 'j'}:{attendee}", as_envelope(doc)


# --- what queues deliver --------------------------------------------------------------------


LOSABLE = ("chime:MeetingEnded", "chime:AttendeeLeft")  # the losses users report, and the harmful ones


def chime_api_mirror(api: ChimeApi, doc: dict[str, Any], *, region: str = REGION) -> None:
    """What Chime's API shows once ``doc`` has happened, whether or not its event is delivered: a
    meeting exists from its start until it ends (then GetMeeting answers NotFound), an attendee
    from AttendeeAdded (or a first join) until AttendeeDeleted. An attendee who left is still
    listed, as in Chime: ListAttendees lists attendees who have not been deleted."""
    event_type = str(doc.get("eventType", "")).removeprefix("chime:")
    meeting_id = doc.get("meetingId")
    if not meeting_id or event_type.startswith("MediaPipeline"):
        return
    if event_type == "MeetingEnded":
        api.meeting_end(meeting_id)
        return
    if meeting_id not in api.meeting_ids():
        api.meeting_put(
            region=region,
            meeting_id=meeting_id,
            external_meeting_id=doc.get("externalMeetingId"),
            media_region=doc.get("mediaRegion"),
        )
    attendee_id = doc.get("attendeeId")
    if not attendee_id:
        return
    if event_type == "AttendeeDeleted":
        api.attendee_remove(meeting_id, attendee_id)
    elif event_type in ("AttendeeAdded", "AttendeeJoined") and attendee_id not in api.attendee_ids(
        meeting_id
    ):
        user = doc.get("externalUserId") or attendee_id
        api.attendee_put(meeting_id, external_user_id=user, attendee_id=attendee_id)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One body for one target queue (0 = the main queue, 1 = the SNS-wrapped mirror)."""

    target: int
    body: str


def deliveries(
    details: Iterable[dict[str, Any]],
    *,
    seed: int,
    kind: str = "eventbridge",
    mirror_share: float = 0.0,
    duplicates: float = 0.0,
    poison: float = 0.0,
    shuffle_window: int = 0,
    lose: float = 0.0,
    lost: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[Delivery]:
    """Bodies as the queues receive them: ``kind`` of body (or "mixed": any of KINDS), copies
    through SNS to the mirror, second deliveries, poison, and local reordering within
    ``shuffle_window`` bodies. With ``lose``, that share of MeetingEnded and AttendeeLeft events
    never arrives on any queue (Chime's delivery is best effort: what reconcile repairs); each
    lost detail is handed to ``lost``."""
    rng = random.Random(seed ^ 0x5EED)
    losing = random.Random(seed ^ 0x1055)  # its own draws: lose=0 leaves every other draw as it was
    window: list[Delivery] = []

    def wrapped(doc: dict[str, Any], how: str = "") -> str:
        return body(doc, kind=how or (rng.choice(KINDS) if kind == "mixed" else kind), rng=rng)

    def produced(doc: dict[str, Any]) -> Iterator[Delivery]:
        yield Delivery(0, wrapped(doc))
        if mirror_share and rng.random() < mirror_share:
            yield Delivery(1, wrapped(doc, "sns"))
        if duplicates and rng.random() < duplicates:
            yield Delivery(0, wrapped(doc))  # at-least-once delivery
        if poison and rng.random() < poison:
            yield Delivery(0, rng.choice(POISON))

    for doc in details:
        if lose and doc.get("eventType") in LOSABLE and losing.random() < lose:
            if lost is not None:
                lost(doc)
            continue
        for delivery in produced(doc):
            if shuffle_window <= 1:
                yield delivery
                continue
            window.append(delivery)
            if len(window) >= shuffle_window:
                yield window.pop(rng.randrange(len(window)))
    rng.shuffle(window)
    yield from window


def arrival_order(details: Iterable[dict[str, Any]], *, seed: int) -> list[dict[str, Any]]:
    """``details`` in the order a queue hands them over: each is delivered a random delay after it
    happened (EventBridge to SQS: mostly under a second, sometimes seconds), so some arrive after
    later ones, as Chime's best-effort delivery does."""
    rng = random.Random(seed)

    def delay_ms() -> int:
        roll = rng.random()
        if roll < 0.90:
            return rng.randint(20, 800)
        return rng.randint(800, 4000) if roll < 0.99 else rng.randint(4000, 20000)

    delivered = [(doc["timestamp"] + delay_ms(), n, doc) for n, doc in enumerate(details)]
    return [doc for _, _, doc in sorted(delivered, key=lambda item: item[:2])]


def bodies(
    details: list[dict[str, Any]], *, seed: int, wrap: Callable[[dict], str] | None = None
) -> list[str]:
    """Message bodies, each in a (seeded) random envelope unless ``wrap`` is given."""
    rng = random.Random(seed)
    return [wrap(doc) if wrap else body(doc, kind=rng.choice(KINDS)) for doc in details]


def shuffled_with_duplicates(items: list[Any], *, seed: int, duplicate_share: float = 0.3) -> list[Any]:
    """``items`` and a second copy of about ``duplicate_share`` of them, in a (seeded) random order."""
    rng = random.Random(seed)
    result = list(items) + [item for item in items if rng.random() < duplicate_share]
    rng.shuffle(result)
    return result
