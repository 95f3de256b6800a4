"""One socket's limits alone (roster.live.limits): the token bucket, frame sizes, meeting counts,
with a clock the test moves. The same limits through a real Daphne, next to a well-behaved
client, are in tests/consumers/test_socket_limits.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from roster.live.limits import SocketGuard, SocketLimits, TokenBucket
from roster.live.protocol import BadRequest

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_a_burst_through_then_the_sustained_rate():
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # the next token in half a second
    assert bucket.take(0.25) == pytest.approx(0.25)  # a refused take costs nothing
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) > 0
    assert bucket.take(10.0) == 0.0  # a quiet spell saves up the burst, no more
    assert [bucket.take(10.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def test_a_steady_client_at_the_rate_is_never_refused():
    bucket = TokenBucket(rate=10.0, burst=1, now=0.0)
    assert all(bucket.take(i / 10) == 0.0 for i in range(1000))


@pytest.mark.parametrize(("rate", "burst"), [(0, 5), (-1.0, 5), (1.0, 0)])
def test_a_bucket_needs_a_positive_rate_and_burst(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst, now=0.0)


def guard(clock: Clock, **limits) -> SocketGuard:
    return SocketGuard(SocketLimits(**limits), clock=clock)


def test_a_flood_gets_rate_limited_with_the_time_to_wait():
    clock = Clock()
    socket = guard(clock, requests_per_second=4, requests_burst=2)
    assert socket.admit("{}") is None and socket.admit("{}") is None
    refused = json.loads(socket.admit("{}"))
    assert refused["type"] == "error" and refused["code"] == "rate_limited"
    assert refused["retry_after_ms"] == 250
    clock.now += 0.25
    assert socket.admit("{}") is None


def test_every_frame_costs_a_token_refused_and_oversize_ones_too():
    clock = Clock()
    socket = guard(clock, requests_per_second=1, requests_burst=2, max_frame_bytes=10)
    assert json.loads(socket.admit("x" * 11))["code"] == "too_large"
    assert socket.admit("{}") is None
    assert json.loads(socket.admit("{}"))["code"] == "rate_limited"


def test_frame_sizes_are_utf8_bytes_text_or_binary():
    clock = Clock()
    socket = guard(clock, requests_burst=100, max_frame_bytes=12)
    assert socket.admit("a" * 12) is None
    assert socket.admit("é" * 6) is None  # 12 bytes
    too_large = json.loads(socket.admit("é" * 7))  # 7 characters, 14 bytes
    assert too_large == {
        "type": "error",
        "code": "too_large",
        "message": "a message is at most 12 bytes",
        "max_bytes": 12,
    }
    assert json.loads(socket.admit("€" * 5))["code"] == "too_large"  # 15 bytes
    assert socket.admit(None, b"\x00" * 12) is None
    assert json.loads(socket.admit(None, b"\x00" * 13))["code"] == "too_large"
    assert socket.admit("\ud800") is None  # a lone surrogate is measured, not an exception


def test_meetings_by_id_are_counted_per_socket_and_a_subscribe_over_the_limit_is_refused_whole():
    socket = guard(Clock(), max_meetings=3)
    listed = {"m1", "m2"}
    socket.meetings_check(listed, ["m1", "m2", "m3"])  # one more: 3
    socket.meetings_check(listed, ["m3", "m3"])  # the same id twice counts once
    with pytest.raises(BadRequest) as refused:
        socket.meetings_check(listed, ["m3", "m4"])
    assert refused.value.code == "too_many_meetings"
    assert json.loads(refused.value.text())["max_meetings"] == 3
    with pytest.raises(BadRequest):
        socket.meetings_check(set(), ["a", "b", "c", "d"])


def test_chime_api_lookups_are_a_few_a_minute_and_none_when_off():
    clock = Clock()
    socket = guard(clock, lookups_per_minute=3)
    assert [socket.lookup_admit() for _ in range(4)] == [True, True, True, False]
    clock.now += 20  # a minute's third: one more
    assert [socket.lookup_admit() for _ in range(2)] == [True, False]
    assert not guard(clock, lookups_per_minute=0).lookup_admit()


def test_limits_come_from_the_settings():
    settings = SimpleNamespace(
        SOCKET_REQUESTS_PER_SECOND="2.5",
        SOCKET_REQUESTS_BURST=7,
        SOCKET_MAX_MEETINGS=9,
        SOCKET_MAX_FRAME_BYTES=1024,
        SOCKET_LOOKUPS_PER_MINUTE=3,
    )
    assert SocketLimits.from_settings(settings) == SocketLimits(
        requests_per_second=2.5, requests_burst=7, max_meetings=9, max_frame_bytes=1024, lookups_per_minute=3
    )
