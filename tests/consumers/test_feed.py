"""The websocket feed and dashboard socket (WebsocketCommunicator over the real ASGI app, real
Redis channel layer, real database): auth, scope, snapshot, changes since seq, deltas, errors,
origins, gap repair; and the contract test: snapshot(n) + deltas == snapshot(m)."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from config.asgi import application
from consumers.roster_socket import RosterSocket
from roster.dev.chime import as_bare, bodies, meeting_stream
from roster.ingest import IncomingMessage, messages_ingest
from roster.live.broadcast import change_messages, meeting_group, publisher
from roster.models import HostLink, Meeting
from roster.read.access import feed_token_create
from roster.read.host_links import host_link_create, host_link_revoke
from roster.read.selectors import roster_read
from roster.read.serializers import ChangeShown
from tests.conftest import ROOT, expected, stored

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@database_sync_to_async
def ingest(details: list[dict]) -> None:
    messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])
    publisher.flush()


@database_sync_to_async
def token(glob: str = "*") -> str:
    return feed_token_create(name="test", meetings=glob)[1]


@database_sync_to_async
def db_roster(meeting_id: str) -> dict:
    return roster_read(meeting=Meeting.objects.get(pk=meeting_id))


async def feed(raw_token: str | None = None, *, origin: bytes | None = None, path: str = "/ws/feed/"):
    headers = []
    if raw_token:
        headers.append((b"authorization", f"Bearer {raw_token}".encode()))
    if origin:
        headers.append((b"origin", origin))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


async def receive(communicator, timeout: float = 5.0) -> dict:
    return json.loads(await communicator.receive_from(timeout=timeout))


async def receive_until(communicator, predicate, timeout: float = 10.0) -> list[dict]:
    """Every message received until one satisfies ``predicate`` (heartbeats skipped)."""
    seen: list[dict] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"timed out; got {seen}"
        message = await receive(communicator, remaining)
        if message["type"] == "heartbeat":
            continue
        seen.append(message)
        if predicate(message):
            return seen


def named(seed: int, name: str, *, attendees: int = 2) -> list[dict]:
    """A meeting's events (it goes on), ``name`` its externalMeetingId."""
    details = meeting_stream(seed=seed, attendees=attendees, end=False)
    for detail in details:
        detail["externalMeetingId"] = name
    return details


def first_half(details: list[dict]) -> tuple[list[dict], list[dict]]:
    middle = len(details) // 2
    return details[:middle], details[middle:]


async def test_token_in_header_hello_snapshot_then_live_deltas():
    details = meeting_stream(seed=70, attendees=3, end=False)
    early, late = first_half(details)
    meeting_id = details[0]["meetingId"]
    await ingest(early)
    communicator, connected = await feed(await token())
    assert connected
    assert await receive(communicator) == {"type": "hello", "protocol": 1, "heartbeat_seconds": 20.0}
    await communicator.send_json_to({"type": "subscribe", "meetings": [meeting_id]})
    snapshot = await receive(communicator)
    assert snapshot["type"] == "snapshot"
    assert snapshot == {"type": "snapshot", **(await db_roster(meeting_id))}
    seq = snapshot["meeting"]["seq"]
    await ingest(late[:5])
    delta = await receive(communicator)
    assert delta["type"] == "delta" and delta["meeting"]["seq"] == seq + 1
    touched = {d["attendeeId"].split("#")[0] for d in late[:5] if "attendeeId" in d}
    assert {a["attendee_id"] for a in delta["attendees"]} <= touched
    assert all(a["seq"] == seq + 1 for a in delta["attendees"])
    await communicator.disconnect()


async def test_auth_message_and_refusals():
    # No credentials: the socket opens, but nothing is served until a valid auth message.
    communicator, connected = await feed()
    assert connected
    await communicator.send_json_to({"type": "subscribe", "meetings": "*"})
    assert (await receive(communicator))["code"] == "unauthenticated"
    await communicator.send_json_to({"type": "auth", "token": await token()})
    assert (await receive(communicator))["type"] == "hello"
    await communicator.disconnect()

    communicator, _ = await feed()
    await communicator.send_json_to({"type": "auth", "token": "crt_not-a-token"})
    assert (await receive(communicator))["code"] == "bad_token"
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"

    _, connected = await feed("crt_wrong")  # a bad header token refuses the handshake
    assert not connected


async def test_a_meeting_followed_before_its_first_event_starts_at_seq_0(chime_server):
    """An app that just called CreateMeeting subscribes to its id (DESIGN.md, the feed): the Chime
    API confirms it within the token's scope, so an empty snapshot at seq 0, then its deltas."""
    meeting_id = chime_server.api.meeting_put(external_meeting_id="class-ahead", media_region="eu-west-1")
    outside = chime_server.api.meeting_put(external_meeting_id="board-ahead")
    communicator, _ = await feed(await token("class-*"))
    await receive(communicator)  # hello
    await communicator.send_json_to({"type": "subscribe", "meetings": [meeting_id, outside]})

    snapshot, refused = await receive(communicator), await receive(communicator)
    assert (snapshot["type"], snapshot["meeting"]["seq"], snapshot["attendees"]) == ("snapshot", 0, [])
    assert (snapshot["meeting"]["status"], snapshot["meeting"]["external_meeting_id"]) == (
        "unknown",
        "class-ahead",
    )
    assert (refused["code"], refused["meeting_id"]) == ("not_found", outside)

    details = meeting_stream(meeting_id=meeting_id, external_meeting_id="class-ahead", attendees=1, seed=5)
    await ingest(details[:2])
    delta = (await receive_until(communicator, lambda m: m["type"] == "delta"))[-1]
    assert delta["meeting"]["seq"] == 1 and delta["meeting"]["meeting_id"] == meeting_id
    assert await database_sync_to_async(stored)(meeting_id) == expected(details[:2])  # the row folds as any
    await communicator.disconnect()


async def test_scope_hides_meetings_and_new_meetings_in_scope_arrive():
    sales, other = named(71, "sales-emea"), named(72, "board")
    await ingest(sales[:4])
    await ingest(other[:4])
    communicator, _ = await feed(await token("sales-*"))
    await receive(communicator)  # hello
    await communicator.send_json_to(
        {"type": "subscribe", "meetings": [other[0]["meetingId"], "no-such-meeting"]}
    )
    hidden, missing = await receive(communicator), await receive(communicator)
    assert hidden["code"] == missing["code"] == "not_found"  # out of scope looks like absent
    assert set(hidden) == set(missing) == {"type", "code", "message", "meeting_id"}

    await communicator.send_json_to({"type": "subscribe", "meetings": "*"})
    snapshot = await receive(communicator)
    assert snapshot["type"] == "snapshot" and snapshot["meeting"]["external_meeting_id"] == "sales-emea"
    await ingest(other[4:8])  # not in scope: nothing arrives
    await ingest(named(73, "sales-apac", attendees=1))
    arrived = await receive(communicator)
    assert arrived["type"] == "delta" and arrived["meeting"]["external_meeting_id"] == "sales-apac"
    assert arrived["meeting"]["seq"] == 1 and arrived["attendees"]
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_since_gives_only_changes_after_it():
    details = meeting_stream(seed=74, attendees=4, end=False)
    meeting_id = details[0]["meetingId"]
    await ingest(details[:15])
    held = (await db_roster(meeting_id))["meeting"]["seq"]
    await ingest([d for d in details[15:] if d.get("attendeeId") == "att-74-1"])
    communicator, _ = await feed(await token())
    await receive(communicator)
    await communicator.send_json_to(
        {"type": "subscribe", "meetings": [meeting_id], "since": {meeting_id: held}}
    )
    changes = await receive(communicator)
    assert changes["type"] == "changes"
    assert {a["attendee_id"] for a in changes["attendees"]} == {"att-74-1"}
    # A since ahead of the server (another database?) is not usable: a snapshot instead.
    await communicator.send_json_to(
        {"type": "subscribe", "meetings": [meeting_id], "since": {meeting_id: 10**9}}
    )
    assert (await receive(communicator))["type"] == "snapshot"
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", "bad_json"),
        ("[1]", "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "subscribe", "meetings": 5}', "bad_meetings"),
        ('{"type": "subscribe", "meetings": []}', "bad_meetings"),
        ('{"type": "subscribe", "meetings": ["m"], "since": {"m": "3"}}', "bad_since"),
        ('{"type": "subscribe", "meetings": ["m"], "attendees": "yes"}', "bad_message"),
        ('{"type": "auth", "token": "x"}', "already_authenticated"),
    ],
)
async def test_bad_requests_get_an_error_and_the_socket_stays_usable(message, code):
    communicator, _ = await feed(await token())
    await receive(communicator)
    await communicator.send_to(text_data=message)
    error = await receive(communicator)
    assert error["type"] == "error" and error["code"] == code and error["message"]
    await communicator.send_json_to({"type": "ping"})
    assert (await receive(communicator))["type"] == "pong"
    await communicator.disconnect()


async def test_a_lost_frame_is_repaired_from_the_database():
    details = meeting_stream(seed=75, attendees=3, end=False)
    meeting_id = details[0]["meetingId"]
    await ingest(details[:10])
    communicator, _ = await feed(await token())
    await receive(communicator)
    await communicator.send_json_to({"type": "subscribe", "meetings": [meeting_id]})
    held = (await receive(communicator))["meeting"]["seq"]
    await ingest(details[10:14])  # seq held+1 is committed...
    delivered = await receive(communicator)
    assert delivered["meeting"]["seq"] == held + 1
    await ingest(details[14:18])  # ...and held+2; pretend its frame is lost, and held+3 arrives:
    await ingest(details[18:22])
    await asyncio.sleep(0.2)
    # Drain what really arrived, then simulate a channel layer that dropped a frame.
    while not await communicator.receive_nothing(timeout=0.2):
        await communicator.receive_from()
    forged = {
        "type": "roster.delta",
        "meeting_id": meeting_id,
        "external_meeting_id": details[0]["externalMeetingId"],
        "seq": held + 10,
        "text": '{"type":"delta","forged":true}',
    }
    await get_channel_layer().group_send(meeting_group(meeting_id), forged)
    repaired = await receive(communicator)
    assert repaired["type"] == "changes" and "forged" not in repaired
    assert repaired["meeting"] == (await db_roster(meeting_id))["meeting"]
    await communicator.disconnect()


async def group_subscribers(group: str) -> int:
    """Redis pub/sub subscribers of a channel-layer group (whatever the layer's prefix)."""
    from django.conf import settings
    from redis import asyncio as aioredis

    redis = aioredis.from_url(settings.REDIS_URL)
    try:
        channels = await redis.pubsub_channels(f"*__group__{group}")
        return sum(count for _, count in await redis.pubsub_numsub(*channels)) if channels else 0
    finally:
        await redis.aclose()


def _stream_changing_at(*cuts: int) -> list[dict]:
    """A random meeting stream whose every slice between ``cuts`` changes what a client sees
    (about one stream in 16 has a slice that does not, and would send no delta)."""
    rng = random.SystemRandom()
    while True:
        details = meeting_stream(seed=rng.randrange(10**9), attendees=3, end=False)
        states = [expected(details[:cut]) for cut in cuts]  # the roster a client sees at each cut
        if all(a != b for a, b in zip(states, states[1:], strict=False)):
            return details


async def test_sockets_of_one_process_share_one_group_subscription():
    # consumers.fanout: every socket gets every frame, one leaving cuts nobody off, and the last
    # one leaving ends the process's subscription (no leak per meeting ever followed).
    details = _stream_changing_at(6, 12, 18)
    meeting_id, group = details[0]["meetingId"], meeting_group(details[0]["meetingId"])
    await ingest(details[:6])
    sockets = []
    for _ in range(3):
        communicator, _ = await feed(await token())
        await receive(communicator)
        await communicator.send_json_to({"type": "subscribe", "meetings": [meeting_id]})
        assert (await receive(communicator))["type"] == "snapshot"
        sockets.append(communicator)
    assert await group_subscribers(group) == 1
    await ingest(details[6:12])
    deltas = [await receive(communicator) for communicator in sockets]
    assert deltas[0]["type"] == "delta" and all(delta == deltas[0] for delta in deltas)
    await sockets.pop().disconnect()
    await ingest(details[12:18])
    assert [(await receive(c))["meeting"]["seq"] for c in sockets] == [deltas[0]["meeting"]["seq"] + 1] * 2
    assert await group_subscribers(group) == 1
    for communicator in sockets:
        await communicator.disconnect()
    for _ in range(50):  # the unsubscribe reaches Redis asynchronously
        if await group_subscribers(group) == 0:
            break
        await asyncio.sleep(0.05)
    assert await group_subscribers(group) == 0


async def test_a_socket_busy_subscribing_does_not_hold_up_the_others_of_its_group(monkeypatch):
    # A subscribe's snapshot read holds that socket's lock; frames for it wait in its own list,
    # so the group's reader keeps delivering to every other socket of the group meanwhile.
    from consumers.roster_socket import RosterSocket

    details = _stream_changing_at(6, 12, 18)
    meeting_id = details[0]["meetingId"]
    await ingest(details[:6])
    steady, _ = await feed(await token())
    await receive(steady)
    await steady.send_json_to({"type": "subscribe", "meetings": [meeting_id]})
    assert (await receive(steady))["type"] == "snapshot"

    release = asyncio.Event()
    original = RosterSocket._catch_up

    async def slow_catch_up(self, *args, **kwargs):
        await release.wait()
        await original(self, *args, **kwargs)

    monkeypatch.setattr(RosterSocket, "_catch_up", slow_catch_up)
    busy, _ = await feed(await token())
    await receive(busy)
    await busy.send_json_to({"type": "subscribe", "meetings": [meeting_id]})
    await asyncio.sleep(0.2)  # busy has joined the group and waits in its snapshot read
    await ingest(details[6:12])
    delta = await receive(steady, timeout=3)  # not held up by busy
    assert delta["type"] == "delta"
    release.set()
    frames = await receive_until(busy, lambda m: m["type"] == "snapshot")
    assert frames[-1]["meeting"]["seq"] == delta["meeting"]["seq"]  # the snapshot already has it
    await ingest(details[12:18])
    after = [await receive(c) for c in (steady, busy)]
    assert after[0] == after[1] and after[0]["meeting"]["seq"] == delta["meeting"]["seq"] + 1
    for communicator in (steady, busy):
        await communicator.disconnect()


async def test_a_frame_that_waited_during_a_gap_repair_follows_the_repair(monkeypatch):
    # A gap repair's database read holds the socket's turn; a frame of another group that arrives
    # meanwhile waits in the socket's list and is sent right after the repair, without waiting
    # for the client's next request.
    from consumers.roster_socket import RosterSocket

    first = meeting_stream(seed=77, attendees=2, end=False)
    second = _stream_changing_at(6, 12)
    tag = uuid.uuid4().hex  # the token sees these two meetings only, whatever else Redis carries
    for stream, name in ((first, f"{tag}-a"), (second, f"{tag}-b")):
        for detail in stream:
            detail["externalMeetingId"] = name
    first_id, second_id = first[0]["meetingId"], second[0]["meetingId"]
    await ingest(first[:6])
    await ingest(second[:6])
    communicator, _ = await feed(await token(f"{tag}-*"))
    await receive(communicator)
    await communicator.send_json_to({"type": "subscribe", "meetings": [first_id]})
    held = (await receive(communicator))["meeting"]["seq"]
    await communicator.send_json_to({"type": "subscribe", "meetings": "*", "attendees": False})
    listing = [await receive(communicator) for _ in range(2)]
    assert {m["meeting"]["meeting_id"] for m in listing} == {first_id, second_id}

    release = asyncio.Event()
    repairing: list[RosterSocket] = []
    original = RosterSocket._catch_up

    async def slow_catch_up(self, *args, **kwargs):
        repairing.append(self)
        await release.wait()
        await original(self, *args, **kwargs)

    monkeypatch.setattr(RosterSocket, "_catch_up", slow_catch_up)
    meeting = {**(await db_roster(first_id))["meeting"], "seq": held + 10}  # frames were lost
    group, message = change_messages(ChangeShown.of(meeting=meeting, attendees=[]))[0]
    await get_channel_layer().group_send(group, message)
    await ingest(second[6:12])
    for _ in range(100):  # the repair waits in its read, the other frame in the socket's list
        if repairing and repairing[0].pending:
            break
        await asyncio.sleep(0.05)
    assert repairing and len(repairing[0].pending) == 1
    release.set()
    repaired = await receive(communicator)
    assert repaired["type"] == "changes" and repaired["meeting"]["meeting_id"] == first_id
    waited = await receive(communicator, timeout=3)
    assert waited["type"] == "delta" and waited["meeting"]["meeting_id"] == second_id
    assert waited["attendees"] == []  # the meeting list's compact delta
    await communicator.disconnect()


async def test_origins_feed_accepts_none_refuses_foreign_dashboard_is_strict():
    raw = await token()
    _, connected = await feed(raw)
    assert connected  # apps' clients send no Origin
    _, connected = await feed(raw, origin=b"https://evil.example")
    assert not connected
    _, connected = await feed(origin=b"http://127.0.0.1", path="/ws/dashboard/")
    assert not connected  # no session: refused

    user = await database_sync_to_async(User.objects.create_user)("host", password="x", is_staff=True)
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def dashboard(origin: bytes | None):
        headers = [(b"cookie", cookie)] + ([(b"origin", origin)] if origin else [])
        communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)
        return communicator, (await communicator.connect(timeout=5))[0]

    _, connected = await dashboard(None)
    assert not connected  # the dashboard requires an Origin from ALLOWED_HOSTS
    _, connected = await dashboard(b"https://evil.example")
    assert not connected
    communicator, connected = await dashboard(b"http://127.0.0.1")
    assert connected and (await receive(communicator))["type"] == "hello"
    await communicator.disconnect()


def apply(state: dict, message: dict) -> None:
    """What a client does: a snapshot replaces everything; changes and deltas replace by id."""
    meeting_id = message["meeting"]["meeting_id"]
    if message["type"] == "snapshot":
        state[meeting_id] = {"meeting": message["meeting"], "attendees": {}}
    held = state[meeting_id]
    held["meeting"] = message["meeting"]
    for attendee in message["attendees"]:
        held["attendees"][attendee["attendee_id"]] = attendee


def as_state(roster: dict) -> dict:
    return {"meeting": roster["meeting"], "attendees": {a["attendee_id"]: a for a in roster["attendees"]}}


@pytest.mark.parametrize("seed", range(4))
async def test_contract_snapshot_plus_deltas_equals_later_snapshot(seed):
    """Zulip's verify_action idea: a client that took snapshot(n) and applied every delta holds
    snapshot(m); one that disconnected and resumed with `since` holds it too."""
    rng = random.Random(seed)
    details = meeting_stream(seed=80 + seed, attendees=5, end=seed % 2 == 0)
    meeting_id = details[0]["meetingId"]
    raw = bodies(details, seed=seed)
    order = list(range(len(raw)))
    rng.shuffle(order)
    shuffled = [details[i] for i in order]
    start = rng.randint(1, len(shuffled) // 3)
    await ingest(shuffled[:start])

    raw_token = await token()
    steady, _ = await feed(raw_token)
    resumer, _ = await feed(raw_token)
    states: dict[str, dict] = {"steady": {}, "resumer": {}}
    for name, communicator in (("steady", steady), ("resumer", resumer)):
        await receive(communicator)
        await communicator.send_json_to({"type": "subscribe", "meetings": [meeting_id]})
        apply(states[name], await receive(communicator))

    position, cut = start, rng.randint(start, len(shuffled))
    while position < len(shuffled):
        size = rng.choice([1, 2, 5, 9])
        if position <= cut < position + size and resumer is not None:
            await resumer.disconnect()  # away while some batches commit
            resumer = None
        await ingest(shuffled[position : position + size])
        position += size
    final = await db_roster(meeting_id)
    target = final["meeting"]["seq"]

    messages = await receive_until(steady, lambda m: m["meeting"]["seq"] == target)
    for message in messages:
        assert message["type"] == "delta"
        apply(states["steady"], message)
    assert states["steady"][meeting_id] == as_state(final)

    held = states["resumer"][meeting_id]["meeting"]["seq"]
    resumer, _ = await feed(raw_token)
    await receive(resumer)
    await resumer.send_json_to({"type": "subscribe", "meetings": [meeting_id], "since": {meeting_id: held}})
    message = await receive(resumer)
    assert message["type"] == "changes"
    apply(states["resumer"], message)
    assert states["resumer"][meeting_id] == as_state(final)
    await steady.disconnect()
    await resumer.disconnect()


async def test_a_short_lived_command_publishes_before_it_exits(subprocess_env, tmp_path):
    """ingest_file in its own process: its changes reach live clients before the process exits."""
    details = meeting_stream(seed=76, attendees=2, end=False)
    meeting_id = details[0]["meetingId"]
    await ingest(details[:4])
    communicator, _ = await feed(await token())
    await receive(communicator)
    await communicator.send_json_to({"type": "subscribe", "meetings": [meeting_id]})
    held = (await receive(communicator))["meeting"]["seq"]
    path = tmp_path / "more.jsonl"
    path.write_text("\n".join(as_bare(d) for d in details[4:10]) + "\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "manage.py"),
        "ingest_file",
        str(path),
        env=subprocess_env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err
    delta = await receive(communicator)
    assert delta["type"] == "delta" and delta["meeting"]["seq"] == held + 1
    await communicator.disconnect()


async def test_a_host_link_socket_sees_its_meetings_until_the_link_ends(settings):
    settings.ACCESS_RECHECK_SECONDS = 0.2
    sales, board = named(77, "sales-emea"), named(78, "board")
    await ingest(sales[:6])
    await ingest(board[:6])
    sales_id, board_id = sales[0]["meetingId"], board[0]["meetingId"]

    async def link_session(link_url: str) -> bytes:
        browser = Client()
        await database_sync_to_async(browser.post)("/link/", {"link": link_url.partition("#")[2]})
        return f"sessionid={browser.cookies['sessionid'].value}".encode()

    async def link_socket(cookie: bytes):
        headers = [(b"cookie", cookie), (b"origin", b"http://127.0.0.1")]
        communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)
        connected, code = await communicator.connect(timeout=5)
        return communicator, connected, code

    link, url = await database_sync_to_async(host_link_create)(meetings="sales-emea")
    cookie = await link_session(url)
    communicator, connected, _ = await link_socket(cookie)
    assert connected and (await receive(communicator))["type"] == "hello"
    await communicator.send_json_to({"type": "subscribe", "meetings": [board_id]})
    assert (await receive(communicator))["code"] == "not_found"  # like an absent meeting
    await communicator.send_json_to({"type": "subscribe", "meetings": "*"})
    snapshot = await receive(communicator)
    assert snapshot["type"] == "snapshot" and snapshot["meeting"]["meeting_id"] == sales_id
    await ingest(board[6:10])
    await ingest(sales[6:10])
    delta = await receive(communicator)
    assert delta["type"] == "delta" and delta["meeting"]["meeting_id"] == sales_id

    await database_sync_to_async(host_link_revoke)(link=link)
    ended = await receive_until(communicator, lambda m: m["type"] == "error")
    assert ended[-1]["code"] == "revoked"
    assert await communicator.receive_output(timeout=5) == {
        "type": "websocket.close",
        "code": 4403,
        "reason": "the host link expired or was revoked",
    }
    await communicator.disconnect()
    _, connected, code = await link_socket(cookie)
    assert not connected and code == 4401  # the session it opened no longer opens a socket

    expiring, url = await database_sync_to_async(host_link_create)(meetings="sales-emea")
    communicator, connected, _ = await link_socket(await link_session(url))
    assert connected and (await receive(communicator))["type"] == "hello"
    past = timezone.now() - timedelta(seconds=1)
    await database_sync_to_async(HostLink.objects.filter(pk=expiring.pk).update)(expires_at=past)
    assert (await receive_until(communicator, lambda m: m["type"] == "error"))[-1]["code"] == "revoked"
    assert (await communicator.receive_output(timeout=5))["code"] == 4403
    await communicator.disconnect()
