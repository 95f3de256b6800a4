"""What one socket's client may send (docs/feed.md, "Limits"): pure, the clock passed in.

A client over its limits gets an ``error`` frame (``rate_limited``, ``too_large``,
``too_many_meetings``) and the request is not carried out; the socket stays usable. Each check
runs before any parsing or database read, so refusing a flood costs a Daphne process little and
the other sockets keep their latency. A client that stops reading is a different matter (close
4408): Daphne bounds what waits to be sent to it (consumers.backlog) and the websocket ping
finds a dead one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from roster.live.protocol import BadRequest, error_text

CLOSE_NOT_READING = 4408  # the client did not read what was sent to it


@dataclass(frozen=True, slots=True)
class SocketLimits:
    """One socket's limits; the defaults are those of config/settings.py."""

    requests_per_second: float = 10.0  # client frames per second, sustained
    requests_burst: int = 50  # ... and at once, after a quiet spell
    max_meetings: int = 1000  # meetings subscribed by id ("*" is not counted)
    max_frame_bytes: int = 131072  # a client frame's UTF-8 bytes
    lookups_per_minute: int = 10  # ids not known yet, looked up in the Chime API (roster.live.ahead)

    @classmethod
    def from_settings(cls, settings: Any) -> SocketLimits:
        """From Django's settings (or any object with the SOCKET_* attributes)."""
        return cls(
            requests_per_second=float(settings.SOCKET_REQUESTS_PER_SECOND),
            requests_burst=int(settings.SOCKET_REQUESTS_BURST),
            max_meetings=int(settings.SOCKET_MAX_MEETINGS),
            max_frame_bytes=int(settings.SOCKET_MAX_FRAME_BYTES),
            lookups_per_minute=int(settings.SOCKET_LOOKUPS_PER_MINUTE),
        )


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up: a steady client is never refused,
    a burst of ``burst`` passes, a flood gets the sustained rate and no more."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), now

    def take(self, now: float) -> float:
        """Take a token: 0.0 when there was one, else the seconds until there will be."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0 - 1e-9:  # a client exactly at the rate, despite float rounding
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / self.rate


class SocketGuard:
    """One socket's limits applied to what its client sends."""

    def __init__(self, limits: SocketLimits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self.clock = limits, clock
        self.bucket = TokenBucket(rate=limits.requests_per_second, burst=limits.requests_burst, now=clock())
        self.lookups = (
            TokenBucket(rate=limits.lookups_per_minute / 60, burst=limits.lookups_per_minute, now=clock())
            if limits.lookups_per_minute > 0
            else None
        )

    def admit(self, text: str | None, data: bytes | None = None) -> str | None:
        """None when the frame may be handled, else the error frame to answer it with. Every frame
        costs a token, refused ones too: a client that keeps sending gets nothing more done."""
        wait = self.bucket.take(self.clock())
        if wait:
            return error_text(
                "rate_limited",
                f"more than {self.limits.requests_per_second:g} messages a second",
                retry_after_ms=max(1, round(wait * 1000)),
            )
        limit = self.limits.max_frame_bytes
        size = len(data) if data is not None else _utf8_length(text or "", limit)
        if size > limit:
            return error_text("too_large", f"a message is at most {limit} bytes", max_bytes=limit)
        return None

    def lookup_admit(self) -> bool:
        """Whether an id the roster does not know may be looked up in the Chime API now: a client
        spends the API budget every socket and reconcile share, so each gets a few a minute."""
        return self.lookups is not None and not self.lookups.take(self.clock())

    def meetings_check(self, listed: Collection[str], requested: Iterable[str]) -> None:
        """BadRequest ``too_many_meetings`` when subscribing ``requested`` by id would make this
        socket follow more than the limit; the whole subscribe is then refused."""
        limit = self.limits.max_meetings
        added = {meeting_id for meeting_id in requested if meeting_id not in listed}
        if len(listed) + len(added) > limit:
            raise BadRequest(
                "too_many_meetings",
                f"a socket follows at most {limit} meetings by id",
                max_meetings=limit,
            )


def _utf8_length(text: str, limit: int) -> int:
    """The UTF-8 length of ``text``, without encoding it when its length alone decides."""
    if len(text) > limit or len(text) * 4 <= limit:  # a character is 1 to 4 bytes
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))
