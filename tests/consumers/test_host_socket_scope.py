"""The dashboard socket of a signed-in host (not staff), through the real ASGI app, session and
Redis channel layer: a meeting outside the host's rules is ``not_found`` when subscribed by id,
and a ``"*"`` subscriber gets the deltas of meetings new since it subscribed that the rules match,
and none of the others.

Redis is shared with other test runs, so every id and rule carries this test's own tag."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from config.asgi import application
from roster.dev.chime import as_bare, meeting_stream
from roster.ingest import IncomingMessage, messages_ingest
from roster.live.broadcast import change_messages, publisher
from roster.models import AccessRule, Meeting
from roster.read.serializers import ChangeShown
from tests.consumers.test_feed import receive

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


def stream(seed: int, name: str, tag: str) -> list[dict]:
    return meeting_stream(
        seed=seed, attendees=2, end=False, meeting_id=f"{tag}-m{seed}", external_meeting_id=f"{tag}-{name}"
    )


@database_sync_to_async
def ingest(details: list[dict]) -> None:
    messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])
    publisher.flush()


@database_sync_to_async
def host_cookie(glob: str) -> bytes:
    """The session cookie of a host whose one rule is ``glob``, as a browser would send it."""
    host = User.objects.create_user("host", password="x")
    AccessRule.objects.create(user=host, meetings=glob)
    client = Client()
    client.force_login(host)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def dashboard(cookie: bytes) -> WebsocketCommunicator:
    """The dashboard socket as the host's browser opens it, past its hello."""
    communicator, connected = await open_socket(cookie)
    assert connected
    assert (await receive(communicator))["type"] == "hello"
    return communicator


async def open_socket(cookie: bytes) -> tuple[WebsocketCommunicator, bool]:
    headers = [(b"cookie", cookie), (b"origin", b"http://127.0.0.1")]
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)
    return communicator, (await communicator.connect(timeout=5))[0]


async def test_a_guessed_id_outside_the_rules_is_not_found(tag):
    sales, board = stream(131, "sales-emea", tag), stream(132, "board", tag)
    await ingest(sales[:4])
    await ingest(board[:4])
    communicator = await dashboard(await host_cookie(f"{tag}-sales-*"))
    board_id, sales_id = board[0]["meetingId"], sales[0]["meetingId"]
    await communicator.send_json_to({"type": "subscribe", "meetings": [board_id, f"{tag}-none", sales_id]})
    hidden, absent, snapshot = [await receive(communicator) for _ in range(3)]
    assert hidden == {
        "type": "error",
        "code": "not_found",
        "message": f"no meeting {board_id!r}",
        "meeting_id": board_id,
    }
    assert set(absent) == set(hidden) and absent["code"] == "not_found"  # out of scope looks absent
    assert snapshot["type"] == "snapshot" and snapshot["meeting"]["meeting_id"] == sales_id

    await ingest(board[4:8])  # the guessed meeting changes: nothing arrives
    await ingest(sales[4:8])
    delta = await receive(communicator)
    assert delta["type"] == "delta" and delta["meeting"]["meeting_id"] == sales_id
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


@pytest.mark.parametrize("attendees", [True, False], ids=["roster", "meeting-list"])
async def test_star_gets_new_meetings_inside_the_rules_only(tag, attendees):
    communicator = await dashboard(await host_cookie(f"{tag}-sales-*"))
    await communicator.send_json_to({"type": "subscribe", "meetings": "*", "attendees": attendees})
    assert await communicator.receive_nothing(timeout=0.3)  # nothing visible yet: no snapshot

    outside, inside = stream(133, "board", tag), stream(134, "sales-apac", tag)
    await ingest(outside[:5])  # published first, on the same group: it would arrive first
    await ingest(inside[:5])
    delta = await receive(communicator)
    assert delta["type"] == "delta" and delta["meeting"]["meeting_id"] == inside[0]["meetingId"]
    assert delta["meeting"]["seq"] == 1 and bool(delta["attendees"]) is attendees
    await ingest(outside[5:10])
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_a_meeting_list_without_snapshots_catches_up_its_rows_only(tag):
    """The list of thousands: subscribing reads only the rows the page shows, sends only those
    that moved, and forwards every other meeting's first change as it comes (whole objects)."""
    shown, moved, unseen = (
        stream(135, "sales-a", tag),
        stream(136, "sales-b", tag),
        stream(137, "sales-c", tag),
    )
    for details in (shown, moved, unseen):
        await ingest(details[:4])
    read = database_sync_to_async(lambda m: Meeting.objects.get(meeting_id=m).seq)
    shown_seq, moved_seq = await read(shown[0]["meetingId"]), await read(moved[0]["meetingId"])
    communicator = await dashboard(await host_cookie(f"{tag}-sales-*"))
    since = {shown[0]["meetingId"]: shown_seq, moved[0]["meetingId"]: moved_seq - 1}
    await communicator.send_json_to(
        {"type": "subscribe", "meetings": "*", "attendees": False, "snapshots": False, "since": since}
    )
    caught_up = await receive(communicator)  # the moved row only, as a meeting object
    assert caught_up["meeting"]["meeting_id"] == moved[0]["meetingId"] and caught_up["attendees"] == []
    assert caught_up["meeting"]["seq"] == moved_seq
    assert await communicator.receive_nothing(timeout=0.3)

    await ingest(unseen[4:6])  # a meeting the page never showed: its object, no catch-up read
    delta = await receive(communicator)
    assert delta["type"] == "delta" and delta["meeting"]["meeting_id"] == unseen[0]["meetingId"]
    assert delta["meeting"]["seq"] > 1 and delta["attendees"] == []
    await ingest(shown[4:6])
    delta = await receive(communicator)
    assert delta["type"] == "delta" and delta["meeting"]["meeting_id"] == shown[0]["meetingId"]
    assert delta["meeting"]["seq"] == shown_seq + 1
    await communicator.disconnect()


@pytest.mark.parametrize("attendees", [True, False], ids=["roster", "meeting-list"])
async def test_a_meeting_this_database_does_not_hold_is_never_forwarded(tag, attendees):
    """Whatever arrives on the layer: a delta of a meeting this deployment's database does not
    hold (another deployment's, or forged by anyone who can publish to Redis) reaches no socket,
    nor a delta that names a meeting the database holds under another external id."""
    board = stream(139, "board", tag)
    await ingest(board[:3])  # outside the rule
    communicator = await dashboard(await host_cookie(f"{tag}-sales-*"))
    subscribe = {"type": "subscribe", "meetings": "*", "attendees": attendees, "snapshots": attendees}
    await communicator.send_json_to(subscribe)
    await communicator.send_json_to({"type": "ping"})  # answered once the subscription is in place
    assert (await receive(communicator))["type"] == "pong"

    ghost = {"meeting_id": f"{tag}-ghost", "external_meeting_id": f"{tag}-sales-ghost", "seq": 1}
    disguised = {"meeting_id": board[0]["meetingId"], "external_meeting_id": f"{tag}-sales-x", "seq": 1}
    forged = []
    for meeting in (ghost, disguised):
        forged += change_messages(ChangeShown.of(meeting=meeting, attendees=[{"attendee_id": "a", "seq": 1}]))
    await database_sync_to_async(publisher.submit)(forged)  # straight onto the layer
    real = stream(138, "sales-real", tag)
    await ingest(real[:3])  # published after the forged ones, on the same groups
    delta = await receive(communicator)
    assert delta["meeting"]["meeting_id"] == real[0]["meetingId"]  # the first to arrive
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_a_deactivated_host_cannot_open_the_socket():
    cookie = await host_cookie("*")
    await database_sync_to_async(User.objects.filter(username="host").update)(is_active=False)
    communicator, connected = await open_socket(cookie)
    assert not connected
    await communicator.disconnect()  # as Daphne does after a refusal: the consumer closes its connections
