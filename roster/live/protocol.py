"""The roster socket protocol v1 (docs/feed.md) as a state machine without I/O.

One :class:`FeedProtocol` per socket knows what the protocol knows about its client: whether it
is authenticated and what it may see, the meetings it listed, its ``"*"`` follow modes, the
groups it should be in and the highest ``seq`` it holds per meeting; and it decides every frame.
The socket (consumers.roster_socket) does the rest: database reads, group joins, sends, timers.

A connection or a client message becomes a generator of effects: the caller performs each in
order and sends a read's answer back into the generator, so a subscribe reads as one piece of
code and its frames keep their order. A broadcast message needs no such conversation on the
hot path: :meth:`FeedProtocol.broadcast_judge` returns the broadcaster's text to forward, or
nothing (not followed, out of scope, a duplicate), or a :class:`Gap` to repair from the database.

The caller takes one turn at a time per socket (a client request, a gap repair) and keeps the
broadcast messages that arrive during a turn for after it, in order: a subscribe in progress
finishes, snapshot included, before the next broadcast message is judged.

This module also defines what the broadcaster (roster.live.broadcast) and the protocol share:
the group names, the broadcast message types and the frame format.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

PROTOCOL = 1
MAX_LISTED = 1000
CLOSE_UNAUTHENTICATED = 4401

GROUP_ALL = "roster.all"  # full deltas of every meeting ("*" subscribers, filtered by access)
GROUP_LIST = "roster.list"  # meeting-only deltas (meeting lists)
DELTA_TYPE = "roster.delta"  # a broadcast message carrying a full delta frame
SUMMARY_TYPE = "roster.summary"  # a broadcast message carrying a meeting-only delta frame


def meeting_group(meeting_id: str) -> str:
    """A channel-layer group name (ASCII, bounded) for one meeting's full deltas."""
    return "roster.m." + hashlib.sha1(meeting_id.encode("utf-8")).hexdigest()[:24]


def frame(kind: str, meeting: dict[str, Any], attendees: list[dict[str, Any]]) -> str:
    """A snapshot, changes or delta frame as sent to clients."""
    return json.dumps({"type": kind, "meeting": meeting, "attendees": attendees}, separators=(",", ":"))


class Access(Protocol):
    """What a socket may see (roster.read.access.Access)."""

    def allows(self, *, meeting_id: str, external_meeting_id: str = "") -> bool: ...


class MeetingRow(Protocol):
    """A visible meeting as read from the database (roster.models.Meeting)."""

    meeting_id: str
    seq: int


# --- effects: what the caller does ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accept:
    """Accept the handshake."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket (before Accept: refuse the handshake)."""

    code: int


@dataclass(frozen=True, slots=True)
class Send:
    text: str


@dataclass(frozen=True, slots=True)
class Join:
    """Deliver this group's broadcast messages to the socket from now on."""

    group: str


@dataclass(frozen=True, slots=True)
class Leave:
    group: str


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """Answer: the Access the token grants, or None for an unknown or revoked token."""

    token: str


@dataclass(frozen=True, slots=True)
class SessionAccess:
    """Answer: the Access of the session's (authenticated) user."""

    user: object


@dataclass(frozen=True, slots=True)
class MeetingsRead:
    """Answer: for a list of ids, the MeetingRow of each or None (absent or out of scope alike);
    for None, every MeetingRow in scope."""

    access: Access
    meeting_ids: list[str] | None


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Read the meeting's roster (every attendee, or those changed after ``read_since``), then send
    the text :meth:`FeedProtocol.caught_up` makes of it."""

    meeting: MeetingRow
    since: int | None  # what the client holds, if anything
    read_since: int | None
    with_attendees: bool


@dataclass(frozen=True, slots=True)
class Heartbeats:
    """Send :meth:`FeedProtocol.heartbeat` every ``seconds`` from now on."""

    seconds: float


@dataclass(frozen=True, slots=True)
class AuthDeadline:
    """Run :meth:`FeedProtocol.auth_expired` once, ``seconds`` from now."""

    seconds: float


DatabaseWork = TokenCheck | SessionAccess | MeetingsRead | CatchUp
Effect = Accept | Close | Send | Join | Leave | Heartbeats | AuthDeadline | DatabaseWork
Steps = Generator[Effect, Any, None]


@dataclass(frozen=True, slots=True)
class Gap:
    """A broadcast message past ``held + 1``: frames were lost on the way; repair with
    :meth:`FeedProtocol.gap_repair`."""

    meeting_id: str
    held: int | None
    with_attendees: bool


class BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _text(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def _error(code: str, message: str, **extra: Any) -> Send:
    return Send(_text({"type": "error", "code": code, "message": message, **extra}))


class FeedProtocol:
    """Protocol v1 for one socket. ``allow_token``: an Authorization header or a first auth
    message; ``allow_session``: a logged-in Django session."""

    def __init__(
        self,
        *,
        allow_token: bool,
        allow_session: bool,
        heartbeat_seconds: float = 20.0,
        auth_timeout_seconds: float = 10.0,
        clock_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        self.allow_token = allow_token
        self.allow_session = allow_session
        self.heartbeat_seconds = heartbeat_seconds
        self.auth_timeout_seconds = auth_timeout_seconds
        self.clock_ms = clock_ms
        self.access: Access | None = None  # set once authenticated
        self.seqs: dict[str, int] = {}  # the highest seq the client holds, per meeting
        self.listed: set[str] = set()  # meetings subscribed by id
        self.follow_all = False  # "*" with attendees
        self.follow_list = False  # "*" without attendees (meeting lists)
        self.groups: set[str] = set()  # groups joined

    # --- connection and client messages ----------------------------------------------------

    def connect(self, *, bearer: str | None, user: object | None) -> Steps:
        """A handshake. ``bearer``: the token of its Authorization header ("" when the header names
        none), None without the header; ``user``: the session's authenticated user, or None."""
        access = None
        if bearer is not None and self.allow_token:
            access = yield TokenCheck(bearer)
            if access is None:
                yield Close(CLOSE_UNAUTHENTICATED)
                return
        elif self.allow_session and user is not None:
            access = yield SessionAccess(user)
        elif not self.allow_token:
            yield Close(CLOSE_UNAUTHENTICATED)
            return
        yield Accept()
        if access is not None:
            yield from self._authenticated(access)
        else:
            yield AuthDeadline(self.auth_timeout_seconds)

    def auth_expired(self) -> Steps:
        if self.access is None:
            yield _error("unauthenticated", "no credentials in time")
            yield Close(CLOSE_UNAUTHENTICATED)

    def client_message(self, text: str | None) -> Steps:
        """A text (or, with None, binary) frame from the client; a bad request gets an error and
        changes nothing."""
        try:
            message = _parse(text)
            kind = message["type"]
            if kind == "auth":
                yield from self._auth(message)
            elif self.access is None:
                raise BadRequest("unauthenticated", 'send {"type": "auth", "token": "..."} first')
            elif kind == "subscribe":
                yield from self._subscribe(message)
            elif kind == "unsubscribe":
                yield from self._unsubscribe(message)
            elif kind == "ping":
                yield Send(_text({"type": "pong", "time": self.clock_ms()}))
            else:
                raise BadRequest("unknown_type", f"unknown message type {kind!r}")
        except BadRequest as bad:
            yield _error(bad.code, str(bad))

    def heartbeat(self) -> str:
        return _text({"type": "heartbeat", "time": self.clock_ms()})

    def _authenticated(self, access: Access) -> Steps:
        self.access = access
        hello = {"type": "hello", "protocol": PROTOCOL, "heartbeat_seconds": self.heartbeat_seconds}
        yield Send(_text(hello))
        yield Heartbeats(self.heartbeat_seconds)

    def _auth(self, message: dict[str, Any]) -> Steps:
        if self.access is not None:
            raise BadRequest("already_authenticated", "this socket is already authenticated")
        if not self.allow_token:
            raise BadRequest("bad_message", "this socket authenticates with the session")
        token = message.get("token")
        access = (yield TokenCheck(token)) if isinstance(token, str) else None
        if access is None:
            yield _error("bad_token", "unknown or revoked token")
            yield Close(CLOSE_UNAUTHENTICATED)
            return
        yield from self._authenticated(access)

    def _subscribe(self, message: dict[str, Any]) -> Steps:
        meetings = message.get("meetings")
        since = message.get("since") or {}
        with_attendees = message.get("attendees", True)
        if not isinstance(since, dict) or not all(
            isinstance(k, str) and type(v) is int and v >= 0 for k, v in since.items()
        ):
            raise BadRequest("bad_since", '"since" maps meeting ids to non-negative integer seqs')
        if not isinstance(with_attendees, bool):
            raise BadRequest("bad_message", '"attendees" is true or false')
        if meetings == "*":
            yield from self._join(GROUP_ALL if with_attendees else GROUP_LIST)
            if with_attendees:
                self.follow_all = True
            else:
                self.follow_list = True
            found = yield MeetingsRead(self.access, None)
            for meeting in found:
                yield self._catch_up(meeting, since.get(meeting.meeting_id), with_attendees=with_attendees)
            return
        if (
            not isinstance(meetings, list)
            or not meetings
            or len(meetings) > MAX_LISTED
            or not all(isinstance(m, str) and m for m in meetings)
        ):
            raise BadRequest("bad_meetings", f'"meetings" is "*" or a list of 1 to {MAX_LISTED} meeting ids')
        found = yield MeetingsRead(self.access, meetings)
        for meeting_id, meeting in zip(meetings, found, strict=True):
            if meeting is None:  # absent and out of scope look the same
                yield _error("not_found", f"no meeting {meeting_id!r}", meeting_id=meeting_id)
                continue
            self.listed.add(meeting_id)
            yield from self._join(meeting_group(meeting_id))
            yield self._catch_up(meeting, since.get(meeting_id), with_attendees=True)

    def _unsubscribe(self, message: dict[str, Any]) -> Steps:
        meetings = message.get("meetings")
        if meetings == "*":
            self.follow_all = self.follow_list = False
            for group in (GROUP_ALL, GROUP_LIST):
                yield from self._leave(group)
            return
        if not isinstance(meetings, list) or not all(isinstance(m, str) for m in meetings):
            raise BadRequest("bad_meetings", '"meetings" is "*" or a list of meeting ids')
        for meeting_id in meetings:
            self.listed.discard(meeting_id)
            yield from self._leave(meeting_group(meeting_id))

    def _join(self, group: str) -> Steps:
        if group not in self.groups:
            yield Join(group)
            self.groups.add(group)

    def _leave(self, group: str) -> Steps:
        if group in self.groups:
            yield Leave(group)
            self.groups.discard(group)

    # --- catch-ups -------------------------------------------------------------------------

    @staticmethod
    def _catch_up(meeting: MeetingRow, since: int | None, *, with_attendees: bool) -> CatchUp:
        """A snapshot, or the changes after ``since`` when the client holds a usable seq."""
        usable = since is not None and since <= meeting.seq
        read_since = since if usable and with_attendees else None
        return CatchUp(meeting=meeting, since=since, read_since=read_since, with_attendees=with_attendees)

    def caught_up(self, catch_up: CatchUp, roster: dict[str, Any]) -> str:
        """The frame for a CatchUp's read (``{"meeting": ..., "attendees": [...]}``); the client
        holds the read's seq from now on."""
        meeting = roster["meeting"]
        since = catch_up.since
        usable = since is not None and since <= catch_up.meeting.seq and since <= meeting["seq"]
        self.seqs[catch_up.meeting.meeting_id] = meeting["seq"]
        attendees = roster["attendees"] if catch_up.with_attendees else []
        return frame("changes" if usable else "snapshot", meeting, attendees)

    def gap_repair(self, gap: Gap) -> Steps:
        """The changes since what the client holds (a snapshot if it holds nothing), if the meeting
        is still in scope."""
        (meeting,) = yield MeetingsRead(self.access, [gap.meeting_id])
        if meeting is not None:
            yield self._catch_up(meeting, gap.held, with_attendees=gap.with_attendees)

    # --- broadcast messages (the hot path: no allocation unless a gap) ----------------------

    def broadcast_judge(self, message: dict[str, Any]) -> str | Gap | None:
        """A broadcaster message (roster.live.broadcast): its text to forward, None to drop it, or
        a Gap. Forwarding records its seq, so the caller must send what it gets."""
        kind = message["type"]
        if kind == DELTA_TYPE:
            meeting_id = message["meeting_id"]
            if meeting_id not in self.listed and not (self.follow_all and self._allows(message)):
                return None
            with_attendees = True
        elif kind == SUMMARY_TYPE:
            meeting_id = message["meeting_id"]
            if meeting_id in self.listed or self.follow_all or not self.follow_list:
                return None  # a full delta of the same seq comes through another group
            if not self._allows(message):
                return None
            with_attendees = False
        else:
            return None
        seq = message["seq"]
        held = self.seqs.get(meeting_id)
        if held is not None and seq <= held:
            return None  # a duplicate
        if seq > (1 if held is None else held + 1):
            return Gap(meeting_id=meeting_id, held=held, with_attendees=with_attendees)
        self.seqs[meeting_id] = seq
        return message["text"]

    def _allows(self, message: dict[str, Any]) -> bool:
        return self.access is not None and self.access.allows(
            meeting_id=message["meeting_id"], external_meeting_id=message["external_meeting_id"]
        )


def _parse(text: str | None) -> dict[str, Any]:
    if text is None:
        raise BadRequest("bad_message", "messages are JSON text frames")
    try:
        message = json.loads(text)
    except ValueError:
        raise BadRequest("bad_json", "message is not valid JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise BadRequest("bad_message", 'a message is a JSON object with a string "type"')
    return message
