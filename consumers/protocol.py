"""The roster socket protocol v1 (docs/feed.md), shared by the app feed and the host dashboard.

A consumer authenticates, joins channel-layer groups through its process's fan-out
(consumers.fanout: the process, not each socket, is the group member) and forwards the frames the
broadcaster serialised once; it reads the database only for snapshots and catch-ups.

Every meeting a client follows has a ``seq`` here: a delta at or below it is a duplicate and is
dropped, a delta past ``seq + 1`` means frames were lost on the way (the channel layer does not
guarantee delivery), and the consumer sends the client a ``changes`` catch-up from the database
instead. So a client that applies what it receives holds exactly the committed roster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from consumers.fanout import group_fanout
from roster.live.broadcast import DELTA_TYPE, GROUP_ALL, GROUP_LIST, SUMMARY_TYPE, frame, meeting_group
from roster.models import Meeting
from roster.read.access import Access, access_for_token, access_for_user, bearer_token
from roster.read.selectors import meeting_visible, meetings_visible, roster_read

logger = logging.getLogger(__name__)

PROTOCOL = 1
MAX_LISTED = 1000
CLOSE_UNAUTHENTICATED = 4401


@database_sync_to_async
def _token_access(raw: str) -> Access | None:
    return access_for_token(raw=raw)


@database_sync_to_async
def _visible(access: Access, meeting_ids: list[str] | None) -> list[Meeting | None]:
    if meeting_ids is None:
        return list(meetings_visible(access=access))
    return [meeting_visible(access=access, meeting_id=m) for m in meeting_ids]


@database_sync_to_async
def _read(meeting: Meeting, since: int | None) -> dict[str, Any]:
    return roster_read(meeting=meeting, since=since)


class BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RosterSocket(AsyncWebsocketConsumer):
    """Protocol v1. Subclasses say how a client authenticates."""

    allow_token = True  # Authorization header, or a first {"type": "auth"} message
    allow_session = False  # a logged-in Django session (AuthMiddlewareStack)
    heartbeat_seconds = 20.0
    auth_timeout_seconds = 10.0

    async def broadcast_receive(self, message: dict[str, Any]) -> None:
        """A broadcaster message, from this process's group fan-out (consumers.fanout).

        One at a time with the client's own requests: a subscribe in progress finishes (its
        snapshot read included) before the next frame is judged by seq. While one is in progress
        the frame waits in this socket's own list, so the group's reader (every other socket of
        the group) is not held up by this socket's database read.
        """
        if self.serial.locked():
            self.pending.append(message)
            return
        async with self.serial:
            await self._broadcast_apply(message)

    async def _broadcast_apply(self, message: dict[str, Any]) -> None:
        if message["type"] == DELTA_TYPE:
            await self.roster_delta(message)
        elif message["type"] == SUMMARY_TYPE:
            await self.roster_summary(message)

    async def connect(self) -> None:
        self.access: Access | None = None
        self.seqs: dict[str, int] = {}
        self.listed: set[str] = set()
        self.follow_all = False  # "*" with attendees
        self.follow_list = False  # "*" without attendees (meeting lists)
        self.joined: set[str] = set()
        self.tasks: list[asyncio.Task] = []
        self.serial = asyncio.Lock()  # client requests and broadcast frames, one at a time
        self.pending: deque[dict[str, Any]] = deque()  # frames that arrived during a request
        header = self._authorization_header()
        if header and self.allow_token:
            self.access = await _token_access(bearer_token(header))
            if self.access is None:
                await self.close(code=CLOSE_UNAUTHENTICATED)  # refuse the handshake
                return
        elif (
            self.allow_session and self.scope.get("user") is not None and self.scope["user"].is_authenticated
        ):
            self.access = await database_sync_to_async(access_for_user)(user=self.scope["user"])
        elif not self.allow_token:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.accept()
        if self.access is not None:
            await self._hello()
        else:
            self.tasks.append(asyncio.ensure_future(self._auth_deadline()))

    async def disconnect(self, code: int) -> None:
        for task in getattr(self, "tasks", []):
            task.cancel()
        for group in getattr(self, "joined", set()):
            await group_fanout().discard(group, self)

    # --- client -> server ------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        async with self.serial:
            try:
                await self._request(text_data)
            finally:
                while self.pending:  # in arrival order, before anything newer can be applied
                    await self._broadcast_apply(self.pending.popleft())

    async def _request(self, text_data: str | None) -> None:
        try:
            message = self._parse(text_data)
            kind = message["type"]
            if kind == "auth":
                await self._auth(message)
            elif self.access is None:
                raise BadRequest("unauthenticated", 'send {"type": "auth", "token": "..."} first')
            elif kind == "subscribe":
                await self._subscribe(message)
            elif kind == "unsubscribe":
                await self._unsubscribe(message)
            elif kind == "ping":
                await self._send({"type": "pong", "time": _now_ms()})
            else:
                raise BadRequest("unknown_type", f"unknown message type {kind!r}")
        except BadRequest as bad:
            await self._send({"type": "error", "code": bad.code, "message": str(bad)})

    @staticmethod
    def _parse(text_data: str | None) -> dict[str, Any]:
        if text_data is None:
            raise BadRequest("bad_message", "messages are JSON text frames")
        try:
            message = json.loads(text_data)
        except ValueError:
            raise BadRequest("bad_json", "message is not valid JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise BadRequest("bad_message", 'a message is a JSON object with a string "type"')
        return message

    async def _auth(self, message: dict[str, Any]) -> None:
        if self.access is not None:
            raise BadRequest("already_authenticated", "this socket is already authenticated")
        if not self.allow_token:
            raise BadRequest("bad_message", "this socket authenticates with the session")
        token = message.get("token")
        access = await _token_access(token) if isinstance(token, str) else None
        if access is None:
            await self._send({"type": "error", "code": "bad_token", "message": "unknown or revoked token"})
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.access = access
        for task in self.tasks:
            task.cancel()
        self.tasks = []
        await self._hello()

    async def _subscribe(self, message: dict[str, Any]) -> None:
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
            group = GROUP_ALL if with_attendees else GROUP_LIST
            await self._join(group)
            if with_attendees:
                self.follow_all = True
            else:
                self.follow_list = True
            found = await _visible(self.access, None)
            for meeting in found:
                await self._catch_up(meeting, since.get(meeting.meeting_id), with_attendees=with_attendees)
            return
        if (
            not isinstance(meetings, list)
            or not meetings
            or len(meetings) > MAX_LISTED
            or not all(isinstance(m, str) and m for m in meetings)
        ):
            raise BadRequest("bad_meetings", f'"meetings" is "*" or a list of 1 to {MAX_LISTED} meeting ids')
        found = await _visible(self.access, meetings)
        for meeting_id, meeting in zip(meetings, found, strict=True):
            if meeting is None:  # absent and invisible look the same
                await self._send(
                    {
                        "type": "error",
                        "code": "not_found",
                        "message": f"no meeting {meeting_id!r}",
                        "meeting_id": meeting_id,
                    }
                )
                continue
            self.listed.add(meeting_id)
            await self._join(meeting_group(meeting_id))
            await self._catch_up(meeting, since.get(meeting_id), with_attendees=True)

    async def _unsubscribe(self, message: dict[str, Any]) -> None:
        meetings = message.get("meetings")
        if meetings == "*":
            self.follow_all = self.follow_list = False
            for group in (GROUP_ALL, GROUP_LIST):
                await self._leave(group)
            return
        if not isinstance(meetings, list) or not all(isinstance(m, str) for m in meetings):
            raise BadRequest("bad_meetings", '"meetings" is "*" or a list of meeting ids')
        for meeting_id in meetings:
            self.listed.discard(meeting_id)
            await self._leave(meeting_group(meeting_id))

    # --- server -> client ------------------------------------------------------------------

    async def roster_delta(self, event: dict[str, Any]) -> None:
        """A full delta from the broadcaster: forward the pre-serialised frame, in seq order."""
        meeting_id = event["meeting_id"]
        if meeting_id not in self.listed and not (self.follow_all and self._allowed(event)):
            return
        await self._forward(event, with_attendees=True)

    async def roster_summary(self, event: dict[str, Any]) -> None:
        """A compact (meeting-only) delta for meeting lists."""
        if event["meeting_id"] in self.listed or self.follow_all or not self.follow_list:
            return  # a full delta of the same seq comes through another group
        if self._allowed(event):
            await self._forward(event, with_attendees=False)

    async def _forward(self, event: dict[str, Any], *, with_attendees: bool) -> None:
        meeting_id, seq = event["meeting_id"], event["seq"]
        held = self.seqs.get(meeting_id)
        if held is not None and seq <= held:
            return
        if (held is None and seq > 1) or (held is not None and seq > held + 1):
            found = await _visible(self.access, [meeting_id])
            if found[0] is not None:
                await self._catch_up(found[0], held, with_attendees=with_attendees)
            return
        self.seqs[meeting_id] = seq
        await self.send(text_data=event["text"])

    async def _catch_up(self, meeting: Meeting, since: int | None, *, with_attendees: bool) -> None:
        """A snapshot, or the changes after ``since`` when the client holds a usable seq."""
        usable = since is not None and since <= meeting.seq
        state = await _read(meeting, since if usable and with_attendees else None)
        if since is not None and since > state["meeting"]["seq"]:
            usable = False
        kind = "changes" if usable else "snapshot"
        attendees = state["attendees"] if with_attendees else []
        self.seqs[meeting.meeting_id] = state["meeting"]["seq"]
        await self.send(text_data=frame(kind, state["meeting"], attendees))

    def _allowed(self, event: dict[str, Any]) -> bool:
        return self.access is not None and self.access.allows(
            meeting_id=event["meeting_id"], external_meeting_id=event["external_meeting_id"]
        )

    async def _hello(self) -> None:
        await self._send({"type": "hello", "protocol": PROTOCOL, "heartbeat_seconds": self.heartbeat_seconds})
        self.tasks.append(asyncio.ensure_future(self._heartbeats()))

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            await self._send({"type": "heartbeat", "time": _now_ms()})

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(self.auth_timeout_seconds)
        if self.access is None:
            await self._send(
                {"type": "error", "code": "unauthenticated", "message": "no credentials in time"}
            )
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def _join(self, group: str) -> None:
        if group not in self.joined:
            await group_fanout().add(group, self)
            self.joined.add(group)

    async def _leave(self, group: str) -> None:
        if group in self.joined:
            await group_fanout().discard(group, self)
            self.joined.discard(group)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(message, separators=(",", ":")))

    def _authorization_header(self) -> str:
        for name, value in self.scope.get("headers", []):
            if name.lower() == b"authorization":
                return value.decode("latin-1")
        return ""


def _now_ms() -> int:
    return int(time.time() * 1000)
