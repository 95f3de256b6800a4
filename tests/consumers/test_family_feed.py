"""A family on the feed through real parts: Daphne serving config.asgi, Redis, the broadcaster of
this process (its family thread), a websocket client. A replica's events are rolled into its
family's frame, and a replica learned later joins the subscription."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from roster.domain.plan import MeetingFacts
from roster.domain.repairs import Repairs
from roster.ingest import IncomingMessage, messages_ingest, repairs_ingest
from roster.read.access import feed_token_create
from tests.conftest import chime_body as event

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

T = 1_700_000_000_000


def ingest(*bodies: str) -> None:
    messages_ingest(messages=[IncomingMessage(body=body) for body in bodies])


def replicas_learned(primary: str, *replicas: str) -> None:
    repairs_ingest(
        repairs=[Repairs(meeting_id=r, facts=MeetingFacts(primary_meeting_id=primary)) for r in replicas]
    )


def receive(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message["type"] != "heartbeat":
            return message


def family_until(ws: ClientConnection, seen: list[dict], **figures: Any) -> dict:
    """Messages until a family frame with these figures (everything received is kept in ``seen``)."""
    while True:
        message = receive(ws)
        seen.append(message)
        if message["type"] == "family" and all(message[k] == v for k, v in figures.items()):
            return message


def test_a_replicas_events_roll_into_its_family_on_the_feed(daphne):
    tag = uuid.uuid4().hex[:8]
    p, r1, r2, other = (f"{tag}-{name}" for name in ("p", "r1", "r2", "other"))
    ingest(
        event(p, "MeetingStarted", T, external=f"webinar-{tag}"),
        event(p, "AttendeeJoined", T + 1, "host"),
        event(r1, "MeetingStarted", T, external=f"overflow-{tag}-1"),
        event(r1, "AttendeeJoined", T + 2, "v1"),
        event(other, "MeetingStarted", T, external=f"board-{tag}"),
    )
    replicas_learned(p, r1)
    _, raw = feed_token_create(name="webinar app", meetings=f"webinar-{tag}")
    headers = {"Authorization": f"Bearer {raw}"}
    with connect(f"ws://{daphne}/ws/feed/", additional_headers=headers, open_timeout=10) as ws:
        assert receive(ws)["type"] == "hello"
        ws.send(json.dumps({"type": "subscribe", "meetings": [p], "family": True}))
        first = [receive(ws) for _ in range(3)]
        assert [(m["type"], m.get("meeting", {}).get("meeting_id")) for m in first] == [
            ("snapshot", p),
            ("snapshot", r1),  # the replica is in the webinar's scope through its primary
            ("family", None),
        ]
        assert first[2] == {
            "type": "family",
            "primary_meeting_id": p,
            "family_joined": 2,
            "family_peak_joined": 2,
            "replicas": [{"meeting_id": r1, "joined": 1}],
        }
        assert first[1]["meeting"]["primary_meeting_id"] == p

        ingest(event(r1, "AttendeeJoined", T + 3, "v2"), event(r1, "AttendeeJoined", T + 4, "v3"))
        seen: list[dict] = []
        family = family_until(ws, seen, family_joined=4)
        assert family["family_peak_joined"] == 4 and family["replicas"] == [{"meeting_id": r1, "joined": 3}]
        assert any(m["type"] == "delta" and m["meeting"]["meeting_id"] == r1 for m in seen)

        # A replica learned later joins the subscription: its snapshot, then the family with it.
        ingest(
            event(r2, "MeetingStarted", T, external=f"overflow-{tag}-2"),
            event(r2, "AttendeeJoined", T + 5, "w1"),
        )
        replicas_learned(p, r2)
        seen = []
        family = family_until(ws, seen, family_joined=5)
        assert [r["meeting_id"] for r in family["replicas"]] == [r1, r2]
        snapshots = [m for m in seen if m["type"] == "snapshot"]
        assert [m["meeting"]["meeting_id"] for m in snapshots] == [r2]

        # Leaves lower the family now, not its peak; a meeting of another family says nothing.
        ingest(event(r1, "AttendeeLeft", T + 6, "v1"), event(other, "AttendeeJoined", T + 6, "x"))
        family = family_until(ws, [], family_joined=4)
        assert family["family_peak_joined"] == 5
        ws.send(json.dumps({"type": "ping"}))
        assert receive(ws)["type"] == "pong"  # nothing else came before it
