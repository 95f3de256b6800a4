"""The roster socket: the I/O around the protocol v1 state machine (roster.live.protocol), shared
by the app feed and the host dashboard.

The protocol decides; this socket authenticates through roster.read, reads the database for
snapshots and catch-ups (database_sync_to_async), joins groups through its process's fan-out
(consumers.fanout: the process, not each socket, is the group member), sends what the protocol
returns, runs its timers and counts itself for /metrics (roster.live.sockets). Broadcast frames
are forwarded as the broadcaster serialised them, once for every client.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from consumers.fanout import group_fanout
from roster.live import protocol as live
from roster.live.sockets import socket_closed, socket_opened
from roster.models import Meeting
from roster.read.access import Access, access_for_token, access_for_user, bearer_token
from roster.read.selectors import meeting_visible, meetings_visible, roster_read


@database_sync_to_async
def _token_access(raw: str) -> Access | None:
    return access_for_token(raw=raw)


@database_sync_to_async
def _user_access(user: Any) -> Access:
    return access_for_user(user=user)


@database_sync_to_async
def _meetings_read(access: Access, meeting_ids: list[str] | None) -> list[Meeting | None]:
    if meeting_ids is None:
        return list(meetings_visible(access=access))
    return [meeting_visible(access=access, meeting_id=m) for m in meeting_ids]


@database_sync_to_async
def _roster_read(meeting: Meeting, since: int | None) -> dict[str, Any]:
    return roster_read(meeting=meeting, since=since)


class RosterSocket(AsyncWebsocketConsumer):
    """Protocol v1. Subclasses say how a client authenticates and name their metrics endpoint."""

    allow_token = True  # Authorization header, or a first {"type": "auth"} message
    allow_session = False  # a logged-in Django session (AuthMiddlewareStack)
    heartbeat_seconds = 20.0
    auth_timeout_seconds = 10.0
    metrics_endpoint = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.protocol = live.FeedProtocol(
            allow_token=self.allow_token,
            allow_session=self.allow_session,
            heartbeat_seconds=self.heartbeat_seconds,
            auth_timeout_seconds=self.auth_timeout_seconds,
        )
        self.serial = asyncio.Lock()  # one turn at a time: a client request, or a gap repair
        self.pending: deque[dict[str, Any]] = deque()  # broadcast messages that arrived during a turn
        self.timers: list[asyncio.Task] = []
        self.counted = False  # accepted and not yet disconnected

    # --- the client ------------------------------------------------------------------------

    async def connect(self) -> None:
        header = self._authorization_header()
        user = self.scope.get("user")
        await self._steps_run(
            self.protocol.connect(
                bearer=bearer_token(header) if header else None,
                user=user if user is not None and user.is_authenticated else None,
            )
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        async with self.serial:
            try:
                await self._steps_run(self.protocol.client_message(text_data))
            finally:
                await self._pending_apply()

    async def disconnect(self, code: int) -> None:
        try:
            for timer in self.timers:
                timer.cancel()
            for group in self.protocol.groups:
                await group_fanout().discard(group, self)
        finally:
            if self.counted:
                self.counted = False
                socket_closed(endpoint=self.metrics_endpoint)

    # --- broadcast messages (the hot path) -------------------------------------------------

    async def broadcast_receive(self, message: dict[str, Any]) -> None:
        """A broadcaster message, from this process's group fan-out (consumers.fanout).

        One turn at a time with the client's requests: a subscribe in progress finishes (its
        snapshot read included) before the next message is judged by seq. During a turn the
        message waits in this socket's own list and is judged when the turn ends, so the group's
        reader (every other socket of the group) is not held up by this socket's database read.
        """
        if self.serial.locked():
            self.pending.append(message)
            return
        async with self.serial:
            await self._broadcast_apply(message)
            if self.pending:  # arrived during a gap repair
                await self._pending_apply()

    async def _broadcast_apply(self, message: dict[str, Any]) -> None:
        judged = self.protocol.broadcast_judge(message)
        if judged is None:
            return
        if isinstance(judged, str):
            await self.send(text_data=judged)
        else:
            await self._steps_run(self.protocol.gap_repair(judged))

    async def _pending_apply(self) -> None:
        """The messages that arrived during the turn, in arrival order, before anything newer."""
        while self.pending:
            await self._broadcast_apply(self.pending.popleft())

    # --- effects ---------------------------------------------------------------------------

    async def _steps_run(self, steps: live.Steps) -> None:
        """Perform the protocol's effects in order, sending each one's answer back."""
        answer = None
        while True:
            try:
                effect = steps.send(answer)
            except StopIteration:
                return
            answer = await self._effect_perform(effect)

    async def _effect_perform(self, effect: live.Effect) -> Any:
        match effect:
            case live.Send(text):
                await self.send(text_data=text)
            case live.Join(group):
                await group_fanout().add(group, self)
            case live.Leave(group):
                await group_fanout().discard(group, self)
            case live.CatchUp():
                await self._catch_up(effect)
            case live.MeetingsRead(access, meeting_ids):
                return await _meetings_read(access, meeting_ids)
            case live.TokenCheck(token):
                return await _token_access(token)
            case live.SessionAccess(user):
                return await _user_access(user)
            case live.Accept():
                await self.accept()
                self.counted = True
                socket_opened(endpoint=self.metrics_endpoint)
            case live.Close(code):
                await self.close(code=code)
            case live.Heartbeats(seconds):
                self.timers.append(asyncio.ensure_future(self._heartbeats(seconds)))
            case live.AuthDeadline(seconds):
                self.timers.append(asyncio.ensure_future(self._auth_deadline(seconds)))
            case _:
                raise TypeError(f"unknown effect {effect!r}")
        return None

    async def _catch_up(self, catch_up: live.CatchUp) -> None:
        """A snapshot, or the changes since a seq: read the roster, send the protocol's frame."""
        roster = await _roster_read(catch_up.meeting, catch_up.read_since)
        await self.send(text_data=self.protocol.caught_up(catch_up, roster))

    async def _heartbeats(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self.send(text_data=self.protocol.heartbeat())

    async def _auth_deadline(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._steps_run(self.protocol.auth_expired())

    def _authorization_header(self) -> str:
        for name, value in self.scope.get("headers", []):
            if name.lower() == b"authorization":
                return value.decode("latin-1")
        return ""
