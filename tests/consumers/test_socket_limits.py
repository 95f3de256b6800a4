"""Resource limits per socket (docs/feed.md, "Limits"), each with a real misbehaving client next to
a well-behaved one on the same real Daphne, whose delta latency must stay in its normal range.

The Daphne is started by our start command (roster.dev.processes.daphne_command) with a short
websocket ping and small limits. The test plays the broadcaster: it publishes delta frames of a
real meeting through the broadcaster's own publisher (Redis pub/sub, the group fan-out, the
sockets), so it chooses their size and rate, and each carries the moment it was published: the
well-behaved client's latency is publish -> received, measured first alone (its normal range),
then while the other client misbehaves.

Misbehaving clients: one that stops reading but keeps sending (a raw socket with a small receive
buffer: the ping cannot see it, the backlog bound must); one that goes silent (the ping must);
a subscribe flood; too many meetings and oversize frames.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from statistics import median

import pytest
from django.db import connection
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from roster.dev.chime import as_bare, meeting_stream
from roster.dev.processes import Child, daphne_command, free_port
from roster.ingest import IncomingMessage, messages_ingest
from roster.live.broadcast import change_messages, publisher
from roster.models import Meeting
from roster.read.access import feed_token_create
from roster.read.serializers import ChangeShown

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

RATE, BURST, MAX_MEETINGS, MAX_FRAME, MAX_PENDING = 5, 10, 3, 4096, 256 * 1024
LIMITS = {
    "SOCKET_REQUESTS_PER_SECOND": str(RATE),
    "SOCKET_REQUESTS_BURST": str(BURST),
    "SOCKET_MAX_MEETINGS": str(MAX_MEETINGS),
    "SOCKET_MAX_FRAME_BYTES": str(MAX_FRAME),
    "SOCKET_MAX_PENDING_BYTES": str(MAX_PENDING),
    "METRICS_TOKEN": "limits-metrics",
}
PING_INTERVAL, PING_TIMEOUT = 1, 2  # seconds: a silent peer is dropped within about 5 s
BASELINE_SECONDS = 2.0
TCP_ESTABLISHED = 1


@dataclass
class Daphne:
    port: int
    child: Child

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/feed/"

    def feed_sockets(self) -> int:
        """Open feed sockets, as this Daphne's /metrics counts them."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/metrics",
            headers={"Authorization": f"Bearer {LIMITS['METRICS_TOKEN']}"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=5) as response:
            text = response.read().decode()
        found = re.search(r'^chime_roster_websockets_connected\{endpoint="feed"\} (\S+)$', text, re.M)
        return int(float(found.group(1))) if found else 0

    def log(self) -> str:
        return self.child.log_path.read_text(errors="replace")


@pytest.fixture
def daphne_limited(subprocess_env, processes) -> Daphne:
    port = free_port()
    argv = daphne_command(port, ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT)
    child = processes.spawn("daphne", argv, env={**subprocess_env, **LIMITS}, stop_timeout=30)
    processes.wait_port(port, what="waiting for daphne", timeout=30)
    return Daphne(port=port, child=child)


@dataclass(frozen=True)
class Room:
    meeting_id: str
    external_meeting_id: str
    seq: int


def rooms(count: int, seed: int) -> list[Room]:
    """Real meetings in the database (ingested), each at some seq."""
    made = []
    for i in range(count):
        details = meeting_stream(seed=seed + i, attendees=2, end=False)[:8]
        messages_ingest(messages=[IncomingMessage(body=as_bare(d)) for d in details])
        meeting = Meeting.objects.get(pk=details[0]["meetingId"])
        made.append(Room(meeting.meeting_id, meeting.external_meeting_id, meeting.seq))
    publisher.flush()
    return made


class Deltas:
    """Publishes a delta of ``room`` every ``interval`` seconds, ``pad`` bytes of attendees each,
    through the broadcaster's publisher; each carries its publish time (perf_counter). As ingest
    does, the meeting's seq is committed first, so a socket that subscribes meanwhile reads a
    snapshot its next delta follows."""

    def __init__(self, room: Room, *, interval: float = 0.025, pad: int = 200) -> None:
        self.room, self.interval, self.pad = room, interval, pad
        self.seq = room.seq
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._publish()
        finally:
            connection.close()

    def _publish(self) -> None:
        attendee = {"attendee_id": "pad", "external_user_id": "x" * max(0, self.pad - 50)}
        deadline = time.perf_counter()
        while not self.stop.is_set():
            self.seq += 1
            Meeting.objects.filter(pk=self.room.meeting_id).update(seq=self.seq)
            meeting = {
                "meeting_id": self.room.meeting_id,
                "external_meeting_id": self.room.external_meeting_id,
                "seq": self.seq,
                "published": time.perf_counter(),
            }
            publisher.submit(change_messages(ChangeShown.of(meeting=meeting, attendees=[attendee])))
            deadline += self.interval
            self.stop.wait(max(0.0, deadline - time.perf_counter()))

    @contextmanager
    def running(self) -> Iterator[Deltas]:
        self.thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            self.thread.join(5)


@dataclass
class WellBehaved:
    """A feed client that reads everything at once: (received at, latency, seq) per delta."""

    daphne: Daphne
    token: str
    room: Room
    samples: list[tuple[float, float, int]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)

    def _run(self) -> None:
        try:
            with connect(self.daphne.url(), additional_headers=auth(self.token), open_timeout=10) as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "hello"
                ws.send(json.dumps({"type": "subscribe", "meetings": [self.room.meeting_id]}))
                assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
                self.ready.set()
                while not self.stop.is_set():
                    try:
                        text = ws.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    now = time.perf_counter()
                    message = json.loads(text)
                    if message["type"] == "delta":
                        meeting = message["meeting"]
                        self.samples.append((now, now - meeting["published"], meeting["seq"]))
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)
            self.ready.set()

    @contextmanager
    def running(self) -> Iterator[WellBehaved]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        assert self.ready.wait(15) and not self.errors, self.errors
        try:
            yield self
        finally:
            self.stop.set()
            thread.join(10)
        assert not self.errors, self.errors

    def latencies(self, start: float, end: float = float("inf")) -> list[float]:
        return sorted(latency for at, latency, _ in self.samples if start <= at < end)


def p95(values: list[float]) -> float:
    return values[min(len(values) - 1, int(0.95 * len(values)))]


def assert_normal_latency(good: WellBehaved, *, baseline: tuple[float, float], during: float, what: str):
    """The well-behaved client missed no delta, and its p95 latency while the other misbehaved is
    within its normal range: at most 3 times its p95 alone, plus 50 ms for a shared machine."""
    seqs = [seq for _, _, seq in good.samples]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a delta was lost or reordered"
    alone, beside = good.latencies(*baseline), good.latencies(during)
    assert len(alone) >= 30 and len(beside) >= 30, (len(alone), len(beside))
    figures = {
        "alone_ms": [round(1000 * f(alone), 1) for f in (median, p95, max)],
        "beside_ms": [round(1000 * f(beside), 1) for f in (median, p95, max)],
    }
    print(f"\n{what}: well-behaved client latency p50/p95/max {figures}")
    assert p95(beside) <= 3 * p95(alone) + 0.05, figures


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(check: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Poll ``check`` until true; the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not {what} within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


# --- a raw client, to misbehave below the websocket library ---------------------------------------


def raw_client(daphne: Daphne, token: str, *, receive_buffer: int = 4096) -> socket.socket:
    """A TCP socket past the websocket handshake (the server's frames left unread)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect: the window
    sock.settimeout(10)
    sock.connect(("127.0.0.1", daphne.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/feed/ HTTP/1.1\r\nHost: 127.0.0.1:{daphne.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def text_frame(text: str) -> bytes:
    """A masked client text frame."""
    payload, mask = text.encode(), os.urandom(4)
    size = len(payload)
    head = bytes([0x81]) + (
        bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
    )
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def tcp_state(sock: socket.socket) -> int:
    """The kernel's state of this end of the connection (1: established; the server's reset: 7)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def still_connected(sock: socket.socket, *, send: str | None = None) -> bool:
    if tcp_state(sock) != TCP_ESTABLISHED:
        return False
    if send is not None:
        try:
            sock.sendall(text_frame(send))
        except OSError:
            return False
    return True


# --- the tests ------------------------------------------------------------------------------------


def test_a_client_that_stops_reading_is_closed_4408_and_the_others_keep_their_latency(daphne_limited):
    (room,) = rooms(1, seed=1401)
    _, token = feed_token_create(name="limits")
    good = WellBehaved(daphne_limited, token, room)
    # 16 KB deltas, 40 a second: the stalled client's kernel buffers fill within a few seconds.
    with good.running(), Deltas(room, pad=16_000).running():
        time.sleep(BASELINE_SECONDS)
        misbehaving = time.perf_counter()
        stalled = raw_client(daphne_limited, token)
        stalled.sendall(text_frame(json.dumps({"type": "subscribe", "meetings": [room.meeting_id]})))
        wait_for(lambda: daphne_limited.feed_sockets() == 2, timeout=10, what="two feed sockets")

        # It keeps sending (a ping twice a second, within the rate limit), so Daphne's websocket
        # ping, which only probes a silent peer, never asks it: only the backlog bound can find it.
        def closed() -> bool:
            time.sleep(0.5)
            return not still_connected(stalled, send='{"type": "ping"}')

        took = wait_for(closed, timeout=15, what="closed")
        wait_for(lambda: daphne_limited.feed_sockets() == 1, timeout=5, what="one feed socket left")
        time.sleep(max(0.0, 2.0 - took))
        stalled.close()
        print(f"\nthe stalled client was closed {took:.1f} s after it connected")
    assert re.search(
        r"closing the websocket of \S+ with 4408: \d+ bytes sent to it are still unread", daphne_limited.log()
    )
    assert_normal_latency(good, baseline=(0, misbehaving), during=misbehaving, what="stalled reader")


def test_a_silent_dead_client_is_found_by_the_websocket_ping(daphne_limited):
    (room,) = rooms(1, seed=1402)
    _, token = feed_token_create(name="limits")
    good = WellBehaved(daphne_limited, token, room)
    with good.running(), Deltas(room).running():
        time.sleep(BASELINE_SECONDS)
        misbehaving = time.perf_counter()
        dead = raw_client(daphne_limited, token)
        dead.sendall(text_frame(json.dumps({"type": "subscribe", "meetings": [room.meeting_id]})))
        wait_for(lambda: daphne_limited.feed_sockets() == 2, timeout=10, what="two feed sockets")
        # Neither reads nor sends from now on; the deltas it gets are far below the backlog bound.
        took = wait_for(
            lambda: not still_connected(dead), timeout=PING_INTERVAL + PING_TIMEOUT + 5, what="closed"
        )
        wait_for(lambda: daphne_limited.feed_sockets() == 1, timeout=5, what="one feed socket left")
        time.sleep(max(0.0, 2.0 - took))
        dead.close()
        print(f"\nthe silent client was dropped {took:.1f} s after it connected")
    assert " with 4408: " not in daphne_limited.log()  # the ping found it, not the backlog bound
    assert_normal_latency(good, baseline=(0, misbehaving), during=misbehaving, what="silent peer")


def test_a_subscribe_flood_is_rate_limited_and_the_others_keep_their_latency(daphne_limited):
    (room,) = rooms(1, seed=1403)
    _, token = feed_token_create(name="limits")
    good = WellBehaved(daphne_limited, token, room)
    with good.running(), Deltas(room).running():
        time.sleep(BASELINE_SECONDS)
        misbehaving = time.perf_counter()
        with connect(daphne_limited.url(), additional_headers=auth(token), open_timeout=10) as flood:
            assert json.loads(flood.recv(timeout=10))["type"] == "hello"
            answers: dict[str, int] = {}
            reader = threading.Thread(target=count_answers, args=(flood, answers), daemon=True)
            reader.start()
            subscribe = json.dumps({"type": "subscribe", "meetings": [room.meeting_id]})
            started, sent = time.monotonic(), 0
            while time.monotonic() - started < 3.0:  # 400 subscribes a second, for 3 s
                flood.send(subscribe)
                sent += 1
                time.sleep(max(0.0, started + sent / 400 - time.monotonic()))
            elapsed = time.monotonic() - started

            def answered() -> bool:
                return answers.get("rate_limited", 0) + answers.get("snapshot", 0) == sent

            wait_for(answered, timeout=10, what="every subscribe answered")
            # At most the burst and the rate over the time it took to answer them all passed.
            admitted = BURST + RATE * (time.monotonic() - started) + 1
            time.sleep(1 / RATE)  # a token again: the socket is still usable
            flood.send(json.dumps({"type": "ping"}))
            wait_for(lambda: answers.get("pong", 0) == 1, timeout=10, what="answered after the flood")
        reader.join(5)
        print(f"\nflood: {sent} subscribes in {elapsed:.1f} s, answers {answers}")
        assert answers.get("snapshot", 0) <= admitted
        assert answers["rate_limited"] >= sent - admitted
        time.sleep(max(0.0, misbehaving + 4.0 - time.perf_counter()))  # latency samples beside it
    assert_normal_latency(good, baseline=(0, misbehaving), during=misbehaving, what="subscribe flood")


def count_answers(ws: ClientConnection, answers: dict[str, int]) -> None:
    """Count what the server answers, by type (errors by code), until the socket closes."""
    try:
        while True:
            message = json.loads(ws.recv(timeout=30))
            kind = message["code"] if message["type"] == "error" else message["type"]
            answers[kind] = answers.get(kind, 0) + 1
    except (ConnectionClosed, TimeoutError):
        return


def test_too_many_meetings_and_oversize_frames_get_errors_and_the_socket_stays_usable(daphne_limited):
    room, *others = rooms(1 + MAX_MEETINGS, seed=1404)
    _, token = feed_token_create(name="limits")
    good = WellBehaved(daphne_limited, token, room)
    with good.running(), Deltas(room).running():
        time.sleep(BASELINE_SECONDS)
        misbehaving = time.perf_counter()
        with connect(daphne_limited.url(), additional_headers=auth(token), open_timeout=10) as greedy:
            assert json.loads(greedy.recv(timeout=10))["type"] == "hello"

            def ask(message: dict | str) -> dict:
                greedy.send(message if isinstance(message, str) else json.dumps(message))
                while True:
                    answer = json.loads(greedy.recv(timeout=10))
                    if answer["type"] != "delta":
                        return answer

            everyone = [other.meeting_id for other in others] + [room.meeting_id]
            refused = ask({"type": "subscribe", "meetings": everyone})
            assert refused["type"] == "error" and refused["code"] == "too_many_meetings", refused
            assert refused["max_meetings"] == MAX_MEETINGS
            for other in others:  # up to the limit, one request each: accepted
                assert ask({"type": "subscribe", "meetings": [other.meeting_id]})["type"] == "snapshot"
            refused = ask({"type": "subscribe", "meetings": [room.meeting_id]})
            assert refused["code"] == "too_many_meetings", refused
            for _ in range(6):  # oversize frames, at the allowed rate
                padding = "x" * MAX_FRAME
                answer = ask(json.dumps({"type": "subscribe", "meetings": [room.meeting_id], "pad": padding}))
                assert answer["code"] == "too_large" and answer["max_bytes"] == MAX_FRAME, answer
                time.sleep(1 / RATE)
            greedy.send(json.dumps({"type": "unsubscribe", "meetings": [others[0].meeting_id]}))
            assert ask({"type": "subscribe", "meetings": [others[0].meeting_id]})["type"] == "snapshot"
            assert ask({"type": "ping"})["type"] == "pong"
        time.sleep(max(0.0, misbehaving + 2.0 - time.perf_counter()))
    assert_normal_latency(good, baseline=(0, misbehaving), during=misbehaving, what="meetings and sizes")
