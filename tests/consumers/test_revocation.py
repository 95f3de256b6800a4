"""Revoked access stops open sockets (issue #14 point 4), through a real Daphne and real websocket
clients: a feed token revoked (the command, a direct database update, its row deleted), a host
deactivated or deleted, a host link revoked: an ``error`` ``revoked``, then close 4403, within
5 s of the change. An access rule removed: ``unsubscribed`` (reason ``scope``) for each meeting
it let the socket follow, and none of that meeting's later deltas; the socket stays open.

Every change is made in this process's database as an operator or a script would make it; the
Daphne process learns of it only from the database (no signal reaches it)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from roster.dev.chime import as_bare, meeting_stream
from roster.dev.processes import ROOT
from roster.ingest import IncomingMessage, messages_ingest
from roster.live.broadcast import publisher
from roster.models import AccessRule, FeedToken, HostLink, Meeting
from roster.read.access import feed_token_create
from roster.read.host_links import host_link_create

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BOUND = 5.0  # DESIGN.md: within 5 s of the change, however it was made
ORIGIN = "http://127.0.0.1"


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


def stream(seed: int, external: str, tag: str) -> list[dict]:
    return meeting_stream(
        seed=seed, attendees=3, end=False, meeting_id=f"{tag}-m{seed}", external_meeting_id=external
    )


def ingest(details: list[dict]) -> None:
    messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])
    publisher.flush()


def seq(meeting_id: str) -> int:
    return Meeting.objects.get(pk=meeting_id).seq


@contextmanager
def open_socket(daphne: str, *, token: str = "", cookie: str = "") -> Iterator[ClientConnection]:
    """A feed socket (``token``) or a dashboard socket (``cookie``, as a browser sends it), past
    its hello."""
    path, headers, origin = "/ws/feed/", {}, None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        path, headers["Cookie"], origin = "/ws/dashboard/", cookie, ORIGIN
    with connect(f"ws://{daphne}{path}", additional_headers=headers, origin=origin, open_timeout=10) as ws:
        assert receive(ws)["type"] == "hello"
        yield ws


def receive(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    """The next message that is not a heartbeat."""
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        if message["type"] != "heartbeat":
            return message


def subscribe(ws: ClientConnection, meetings: list[str] | str) -> list[dict[str, Any]]:
    """What a subscribe answers, up to the pong of a ping sent after it."""
    ws.send(json.dumps({"type": "subscribe", "meetings": meetings}))
    ws.send(json.dumps({"type": "ping"}))
    answered = []
    while (message := receive(ws))["type"] != "pong":
        answered.append(message)
    return answered


def quiet(ws: ClientConnection, seconds: float = 1.0) -> bool:
    """Nothing but heartbeats arrives for ``seconds``."""
    try:
        receive(ws, timeout=seconds)
    except TimeoutError:
        return True
    return False


def usable(ws: ClientConnection) -> bool:
    ws.send(json.dumps({"type": "ping"}))
    return receive(ws)["type"] == "pong"


def closed_after(ws: ClientConnection, changed: float) -> tuple[list[dict[str, Any]], int | None, float]:
    """Every message until the server closes the socket, the close code, and the seconds from
    ``changed`` to the close. Waits past the bound, so a late close shows as such."""
    messages: list[dict[str, Any]] = []
    deadline = changed + BOUND + 5
    try:
        while True:
            messages.append(json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01))))
    except TimeoutError:
        pytest.fail(f"still open {BOUND + 5:g} s after the change; got {messages}")
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
        return [m for m in messages if m["type"] != "heartbeat"], code, time.monotonic() - changed


def assert_revoked(ws: ClientConnection, changed: float, credential: str) -> None:
    messages, code, elapsed = closed_after(ws, changed)
    assert [m["type"] for m in messages] == ["error"], messages
    assert messages[0]["code"] == "revoked" and messages[0]["message"], messages
    assert messages[0]["credential"] == credential
    assert code == 4403
    assert elapsed < BOUND, f"closed {elapsed:.2f} s after the change"


def host_cookie(username: str, *rules: str) -> tuple[User, str]:
    """A host (not staff) with these access rules, signed in: the cookie their browser sends."""
    host = User.objects.create_user(username, password="x")
    for glob in rules:
        AccessRule.objects.create(user=host, meetings=glob)
    browser = Client()
    browser.force_login(host)
    return host, f"sessionid={browser.cookies['sessionid'].value}"


def _revoke_by_command(name: str) -> None:
    out = StringIO()
    call_command("revoke_feed_token", name, stdout=out)
    assert out.getvalue().splitlines()[-1] == f"revoked=1 name={name}"


REVOCATIONS: dict[str, Callable[[str], Any]] = {
    "command": _revoke_by_command,
    "update": lambda name: FeedToken.objects.filter(name=name).update(revoked_at=timezone.now()),
    "delete": lambda name: FeedToken.objects.filter(name=name).delete(),
}


@pytest.mark.parametrize("how", list(REVOCATIONS))
def test_a_revoked_token_closes_its_sockets_within_5_s(daphne, tag, how):
    details = stream(201, f"{tag}-sales", tag)
    ingest(details[:6])
    meeting_id = details[0]["meetingId"]
    _, revoked = feed_token_create(name=f"wallboard-{tag}", meetings=f"{tag}-*")
    _, kept = feed_token_create(name=f"crm-{tag}", meetings=f"{tag}-*")
    with (
        open_socket(daphne, token=revoked) as by_id,
        open_socket(daphne, token=revoked) as by_star,
        open_socket(daphne, token=kept) as other,
    ):
        for ws, meetings in ((by_id, [meeting_id]), (by_star, "*"), (other, [meeting_id])):
            assert [m["type"] for m in subscribe(ws, meetings)] == ["snapshot"]
        REVOCATIONS[how](f"wallboard-{tag}")
        changed = time.monotonic()
        assert_revoked(by_id, changed, "token")
        assert_revoked(by_star, changed, "token")

        ingest(details[6:12])  # the other token's socket goes on
        delta = receive(other)
        assert delta["type"] == "delta" and delta["meeting"]["meeting_id"] == meeting_id
        assert usable(other)


@pytest.mark.parametrize("how", ["deactivated", "deleted"])
def test_a_deactivated_or_deleted_host_is_closed_within_5_s(daphne, tag, how):
    details = stream(202, f"{tag}-sales", tag)
    ingest(details[:6])
    host, cookie = host_cookie(f"host-{tag}", f"{tag}-*")
    _, colleague = host_cookie(f"colleague-{tag}", f"{tag}-*")
    with open_socket(daphne, cookie=cookie) as ws, open_socket(daphne, cookie=colleague) as other:
        for socket in (ws, other):
            assert [m["type"] for m in subscribe(socket, "*")] == ["snapshot"]
        if how == "deactivated":
            User.objects.filter(pk=host.pk).update(is_active=False)
        else:
            User.objects.filter(pk=host.pk).delete()
        changed = time.monotonic()
        assert_revoked(ws, changed, "user")
        ingest(details[6:12])
        assert receive(other)["type"] == "delta"  # another host of the same meetings goes on


def test_a_removed_rule_unsubscribes_its_meetings_and_stops_their_deltas(daphne, tag):
    sales, board = stream(203, f"{tag}-sales", tag), stream(204, f"{tag}-board", tag)
    ingest(sales[:6])
    ingest(board[:6])
    sales_id, board_id = sales[0]["meetingId"], board[0]["meetingId"]
    host, cookie = host_cookie(f"host-{tag}", f"{tag}-sales", f"{tag}-board")
    with open_socket(daphne, cookie=cookie) as by_id, open_socket(daphne, cookie=cookie) as by_star:
        for ws, meetings in ((by_id, [sales_id, board_id]), (by_star, "*")):
            snapshots = subscribe(ws, meetings)
            assert {m["meeting"]["meeting_id"] for m in snapshots} == {sales_id, board_id}

        AccessRule.objects.filter(user=host, meetings=f"{tag}-board").delete()
        changed = time.monotonic()
        for ws in (by_id, by_star):
            assert receive(ws, timeout=BOUND + 5) == {
                "type": "unsubscribed",
                "meeting_id": board_id,
                "reason": "scope",
            }
            assert time.monotonic() - changed < BOUND

        held = seq(board_id)
        ingest(board[6:12])
        assert seq(board_id) > held  # the board meeting did change: its delta was published
        ingest(sales[6:12])
        for ws in (by_id, by_star):
            delta = receive(ws)
            assert delta["type"] == "delta" and delta["meeting"]["meeting_id"] == sales_id
            assert quiet(ws)  # the board's delta never comes
            assert usable(ws)
        by_id.send(json.dumps({"type": "subscribe", "meetings": [board_id]}))
        assert receive(by_id)["code"] == "not_found"  # out of scope now, like an absent meeting


def test_a_revoked_host_link_closes_its_dashboard_within_5_s(daphne, tag):
    details = stream(205, f"{tag}-sales", tag)
    ingest(details[:6])
    link, url = host_link_create(meetings=f"{tag}-sales")
    browser = Client()
    browser.post("/link/", {"link": url.partition("#")[2]})
    with open_socket(daphne, cookie=f"sessionid={browser.cookies['sessionid'].value}") as ws:
        assert [m["type"] for m in subscribe(ws, "*")] == ["snapshot"]
        HostLink.objects.filter(pk=link.pk).update(revoked_at=timezone.now())
        assert_revoked(ws, time.monotonic(), "host_link")


def test_the_example_client_stops_when_its_token_is_revoked(daphne, tag):
    """docs/feed.md: a client that gets 4403 stops reconnecting with that token; the example does."""
    details = stream(206, f"{tag}-sales", tag)
    ingest(details[:6])
    _, raw = feed_token_create(name=f"example-{tag}", meetings=f"{tag}-*")
    argv = [sys.executable, "-m", "examples.feed_client", "--url", f"ws://{daphne}/ws/feed/", "--token", raw]
    client = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().startswith(f"snapshot {tag}-sales seq=")  # following
        _revoke_by_command(f"example-{tag}")
        changed = time.monotonic()
        status = client.wait(timeout=BOUND + 5)
        assert time.monotonic() - changed < BOUND
    finally:
        client.kill()
    err = client.stderr.read()
    assert status == 3, err
    assert "error revoked: the token was revoked" in err and "stopped" in err and "reconnecting" not in err
