"""The roster socket of the app feed and the host dashboard: protocol v1 (docs/feed.md).

It authenticates, subscribes and forwards; the decisions are roster.live.protocol's. Groups are
joined through the process's fan-out (consumers.fanout) before the snapshot is read, so no
committed change falls between them; broadcast frames are forwarded as the broadcaster
serialised them, and a frame past the held ``seq`` + 1 (the channel layer may lose some) is
replaced by a catch-up from the database: a client that applies what it gets holds the roster.
Its credential is asked again every few seconds with all of the process's (consumers.access_watch):
when it ends the socket closes with 4403; when its scope narrows, meetings are unsubscribed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import connections

from consumers.access_watch import access_watch
from consumers.fanout import group_fanout
from roster.live import ahead, protocol
from roster.live.limits import SocketGuard, SocketLimits
from roster.live.sockets import socket_closed, socket_opened
from roster.models import Meeting
from roster.read.access import Access, access_for_session, access_for_token, bearer_token
from roster.read.selectors import (
    ScopeIds,
    family_get,
    meeting_read,
    meeting_scope_ids,
    meeting_visible,
    meetings_scope_ids,
    meetings_visible,
    roster_read,
)


@database_sync_to_async
def _visible(access: Access, meeting_ids: list[str] | None) -> list[Meeting | None]:
    if meeting_ids is None:
        return list(meetings_visible(access=access))
    return [meeting_visible(access=access, meeting_id=m) for m in meeting_ids]


def _expected(access: Access, meeting_id: str, admit: Callable[[], bool]) -> Meeting | None:
    """A meeting the Chime API confirmed within the access before its first event (its row at
    seq 0), else None: the caller answers not_found as for any meeting it may not see. Run off
    the process's one thread of database reads (other sockets' reads), as it may wait on the
    budget or on retries."""
    try:
        if not ahead.meeting_expect(meeting_id=meeting_id, access=access, admit=admit):
            return None
        return meeting_visible(access=access, meeting_id=meeting_id)
    finally:
        connections.close_all()  # opened in this call's own context: nothing else would close it


_expected_async = database_sync_to_async(_expected, thread_sensitive=False)


_KNOWN_MAX = 100_000
_known: dict[str, ScopeIds] = {}  # meeting_id -> its scope ids, as this process's database holds them


async def _in_database(first: protocol.First, access: Access) -> bool:
    """Whether this deployment's database holds the meeting and the access allows it as stored
    there (its own ids, its primary's). A meeting's first message on a socket is checked once per
    process, not per socket: the answer is remembered (a meeting row is never deleted while its
    deltas flow)."""
    scope = _known.get(first.meeting_id)
    if scope != first.scope:  # not seen yet, or not as the message says: ask
        scope = await database_sync_to_async(meeting_scope_ids)(meeting_id=first.meeting_id)
        if scope is None:
            return False
        if len(_known) >= _KNOWN_MAX:
            _known.clear()
        _known[first.meeting_id] = scope
    return access.allows(meeting_id=first.meeting_id, **scope)


class RosterSocket(AsyncWebsocketConsumer):
    """Protocol v1. Subclasses say how a client authenticates and name their metrics endpoint."""

    allow_token = True  # Authorization header, or a first {"type": "auth"} message
    allow_session = False  # a logged-in Django session (AuthMiddlewareStack)
    heartbeat_seconds = 20.0
    auth_timeout_seconds = 10.0
    metrics_endpoint = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session = protocol.FeedSession()
        self.serial = asyncio.Lock()  # one turn at a time: a client request, or a gap repair
        self.pending: deque[dict[str, Any]] = deque()  # broadcast messages that arrived during a turn
        self.timers: list[asyncio.Task] = []
        self.counted = False  # accepted and not yet disconnected: an open socket for /metrics
        self.revoked = False  # the credential ended: nothing more is forwarded or answered
        self.guard = SocketGuard(SocketLimits.from_settings(settings))  # what the client may send

    async def connect(self) -> None:
        header = self._authorization_header()
        user = self.scope.get("user") or AnonymousUser()
        access = None
        if header and self.allow_token:
            access = await database_sync_to_async(access_for_token)(raw=bearer_token(header))
            if access is None:
                await self.close(code=protocol.CLOSE_UNAUTHENTICATED)  # refuse the handshake
                return
        else:
            if self.allow_session:
                session = self.scope.get("session")
                access = await database_sync_to_async(access_for_session)(user=user, session=session)
            if access is None and not self.allow_token:
                await self.close(code=protocol.CLOSE_UNAUTHENTICATED)
                return
        await self.accept()
        self.counted = True
        socket_opened(endpoint=self.metrics_endpoint)
        if access is not None:
            await self._hello(access)
        else:
            self.timers.append(asyncio.ensure_future(self._auth_deadline()))

    async def disconnect(self, code: int) -> None:
        try:
            access_watch().discard(self)
            for timer in self.timers:
                timer.cancel()
            for group in self.session.groups:
                await group_fanout().discard(group, self)
        finally:
            if self.counted:
                self.counted = False
                socket_closed(endpoint=self.metrics_endpoint)

    # --- client -> server ------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.revoked:
            return
        refused = self.guard.admit(text_data, bytes_data)  # before any parsing or reading
        if refused is not None:
            await self.send(text_data=refused)
            return
        async with self.serial:
            try:
                await self._request(text_data)
            except protocol.BadRequest as bad:
                await self.send(text_data=bad.text())
            finally:
                await self._pending_apply()

    async def _request(self, text: str | None) -> None:
        message = protocol.request_parse(text, authenticated=self.session.access is not None)
        kind = message["type"]
        if kind == "auth":
            await self._auth(message)
        elif kind == "subscribe":
            await self._subscribe(protocol.subscription_parse(message))
        elif kind == "unsubscribe":
            for group in self.session.unfollow(protocol.unsubscription_parse(message)):
                await self._leave(group)
        else:
            await self.send(text_data=protocol.message_text({"type": "pong", "time": _now_ms()}))

    async def _auth(self, message: dict[str, Any]) -> None:
        if self.session.access is not None:
            raise protocol.BadRequest("already_authenticated", "this socket is already authenticated")
        if not self.allow_token:
            raise protocol.BadRequest("bad_message", "this socket authenticates with the session")
        token = message.get("token")
        access = await database_sync_to_async(access_for_token)(raw=token) if isinstance(token, str) else None
        if access is None:
            await self.send(text_data=protocol.error_text("bad_token", "unknown or revoked token"))
            await self.close(code=protocol.CLOSE_UNAUTHENTICATED)
            return
        for timer in self.timers:
            timer.cancel()
        self.timers = []
        await self._hello(access)

    async def _subscribe(self, subscription: protocol.Subscription) -> None:
        """Join before reading, so no committed change falls between the snapshot and the deltas;
        then the families asked for figures only."""
        self.guard.meetings_check(self.session.families, subscription.families)
        await self._subscribe_meetings(subscription)
        for primary in subscription.families:
            await self._join(self.session.family_start(primary, follow=False))
            await self._family_catch_up(primary, subscription.since)

    async def _subscribe_meetings(self, subscription: protocol.Subscription) -> None:
        since, with_attendees = subscription.since, subscription.with_attendees
        if subscription.meetings is None:
            await self._join(self.session.follow(subscription))
            if subscription.snapshots:
                for meeting in await _visible(self.session.access, None):
                    await self._catch_up(
                        meeting, since.get(meeting.meeting_id), with_attendees=with_attendees
                    )
                return
            # A list of thousands: only the rows the client shows, and only those that moved.
            for meeting_id, meeting in zip(
                since, await _visible(self.session.access, list(since)), strict=True
            ):
                if meeting is not None and meeting.seq <= since[meeting_id]:
                    self.session.hold(meeting_id, since[meeting_id])
                elif meeting is not None:
                    await self._catch_up(meeting, since[meeting_id], with_attendees=False)
            return
        self.guard.meetings_check(self.session.listed, subscription.meetings)
        found = await _visible(self.session.access, subscription.meetings)
        for meeting_id, meeting in zip(subscription.meetings, found, strict=True):
            if meeting is None:  # not known yet? Chime may know it
                meeting = await _expected_async(self.session.access, meeting_id, self.guard.lookup_admit)
            if meeting is None:  # absent and out of scope look the same
                error = protocol.error_text("not_found", f"no meeting {meeting_id!r}", meeting_id=meeting_id)
                await self.send(text_data=error)
                continue
            self.session.listed.add(meeting_id)
            await self._join(protocol.meeting_group(meeting_id))
            if subscription.family:
                await self._join(self.session.family_start(meeting_id, follow=True))
            await self._catch_up(meeting, since.get(meeting_id), with_attendees=True)
            if subscription.family:
                await self._family_catch_up(meeting_id, since)

    async def _family_catch_up(self, primary: str, since: dict[str, int]) -> None:
        """The family's figures now (its group joined before), after a snapshot of every replica
        the socket follows from now on."""
        read = database_sync_to_async(family_get)
        figures = await read(primary_meeting_id=primary, access=self.session.access)
        if figures is None:  # absent and out of scope look the same
            for group in self.session.unfollow([primary]):
                await self._leave(group)
            error = protocol.error_text("not_found", f"no meeting {primary!r}", meeting_id=primary)
            await self.send(text_data=error)
            return
        text = protocol.family_text(figures.frame_fields())
        family = self.session.family_read(primary, text, version=figures.version)
        await self._family_send(family, since)

    async def _family_send(self, family: protocol.Family | None, since: dict[str, int]) -> None:
        if family is None:
            return
        for replica in family.join:  # a replica of a visible primary is visible
            await self._join(protocol.meeting_group(replica))
            (meeting,) = await _visible(self.session.access, [replica])
            if meeting is not None:
                await self._catch_up(meeting, since.get(replica), with_attendees=True)
        await self.send(text_data=family.text)

    async def _catch_up(self, meeting: Meeting, since: int | None, *, with_attendees: bool) -> None:
        """A snapshot, or the changes after ``since`` when the client holds a usable seq."""
        read_since = self.session.catch_up(seq=meeting.seq, since=since, with_attendees=with_attendees)
        read = roster_read if with_attendees else meeting_read
        roster = await database_sync_to_async(read)(meeting=meeting, since=read_since)
        text = self.session.caught_up(roster, seq=meeting.seq, since=since, with_attendees=with_attendees)
        await self.send(text_data=text)

    # --- broadcaster -> server -> client (the hot path) ------------------------------------

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
            await self._pending_apply()  # what arrived during a gap repair

    async def _broadcast_apply(self, message: dict[str, Any]) -> None:
        if self.revoked:
            return
        judged = self.session.judge(message)
        if isinstance(judged, str):
            await self.send(text_data=judged)
        elif isinstance(judged, protocol.Family):
            await self._family_send(judged, {})
        elif isinstance(judged, protocol.First):
            if await _in_database(judged, self.session.access):
                await self.send(text_data=judged.text)
            else:  # held nothing after all: a real next message is a gap, repaired from the database
                self.session.forget(judged.meeting_id)
        elif judged is not None:  # a gap: the changes since what the client holds, if still in scope
            (meeting,) = await _visible(self.session.access, [judged.meeting_id])
            if meeting is not None:
                await self._catch_up(meeting, judged.held, with_attendees=judged.with_attendees)

    async def _pending_apply(self) -> None:
        """The messages that arrived during the turn, in arrival order, before anything newer."""
        while self.pending:
            await self._broadcast_apply(self.pending.popleft())

    # --- the rest ----------------------------------------------------------------------------

    async def _hello(self, access: Access) -> None:
        await self.send(text_data=self.session.hello(access, heartbeat_seconds=self.heartbeat_seconds))
        self.timers.append(asyncio.ensure_future(self._heartbeats()))
        access_watch().add(self, access)

    # --- the credential, asked again (consumers.access_watch) ------------------------------

    def access_changed(self, access: Access | None) -> None:
        """Pages ask at every request; an open socket is told by its process's access watch.
        Acted on in a task of its own, so one socket waiting for its turn holds up no other."""
        self.timers = [timer for timer in self.timers if not timer.done()]
        if access is None:
            self.revoked = True  # from now on: before the error frame is even sent
            self.timers.append(asyncio.ensure_future(self._revoke()))
        else:
            self.timers.append(asyncio.ensure_future(self._rescope(access)))

    async def _revoke(self) -> None:
        """The token, user or host link ended: an error ``revoked``, then close 4403 with the same
        reason (Daphne sends no close reason: the error frame is the one a client can count on)."""
        access = self.session.access
        message, credential = (access.ended_message, access.credential) if access else ("access ended", "")
        await self.send(text_data=protocol.error_text("revoked", message, credential=credential))
        await self.close(code=protocol.CLOSE_REVOKED, reason=message)

    async def _rescope(self, access: Access) -> None:
        """The credential's meetings changed: those the socket followed and may no longer see are
        forgotten, each with an ``unsubscribed``. In the socket's turn, so no frame of theirs
        is judged by the old scope after this."""
        async with self.serial:
            if self.revoked:
                return
            try:
                known = self.session.known()
                read = database_sync_to_async(meetings_scope_ids)
                scopes = await read(meeting_ids=known) if known else {}
                gone, groups = self.session.rescope(access, scopes)
                for group in groups:
                    await self._leave(group)
                for meeting_id in gone:
                    await self.send(text_data=protocol.unsubscribed_text(meeting_id))
            finally:
                await self._pending_apply()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            await self.send(text_data=protocol.message_text({"type": "heartbeat", "time": _now_ms()}))

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(self.auth_timeout_seconds)
        if self.session.access is None:
            await self.send(text_data=protocol.error_text("unauthenticated", "no credentials in time"))
            await self.close(code=protocol.CLOSE_UNAUTHENTICATED)

    async def _join(self, group: str) -> None:
        if group not in self.session.groups:
            await group_fanout().add(group, self)
            self.session.groups.add(group)

    async def _leave(self, group: str) -> None:
        if group in self.session.groups:
            await group_fanout().discard(group, self)
            self.session.groups.discard(group)

    def _authorization_header(self) -> str:
        for name, value in self.scope.get("headers", []):
            if name.lower() == b"authorization":
                return value.decode("latin-1")
        return ""


def _now_ms() -> int:
    return int(time.time() * 1000)
