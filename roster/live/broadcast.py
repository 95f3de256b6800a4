"""Broadcaster: hands committed roster changes to live clients through the channel layer.

Ingest calls :func:`changes_committed` after commit (its after-commit hook point, registered by
roster.apps), so nothing is announced that was not durably written. Per meeting per committed
batch it publishes one ``delta`` frame (the meeting with its new ``seq`` and the whole state of
every attendee that changed), serialised to text once here and forwarded unchanged by every
consumer, plus a compact meeting-only frame for meeting lists.

Groups:
- ``roster.m.<digest>``: full deltas of one meeting (feed clients that listed it);
- ``roster.all``: full deltas of every meeting (``"*"`` subscribers, filtered by their scope);
- ``roster.list``: compact deltas (meeting lists);
- ``roster.f.<digest>``: the ``family`` frames of one primary (shared/ROSTER.md "Meeting
  families"): computed on read after the batches that touched a family, by one thread per
  process that coalesces (:class:`_Families`): one reading and one frame per family per turn,
  however many batches and sockets.

Publishing runs on one background thread per process, fed in commit order, so the ingest
path never waits on Redis; what queued up meanwhile goes in one pipelined round trip
(roster.live.layer; ``group_send`` for a layer it cannot address). The
channel layer does not guarantee delivery: clients detect a gap by ``seq`` and catch up (the
feed consumer does it for them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer
from django.db import connection

from roster.ingest.hooks import Committed
from roster.live.layer import GroupMessage, RedisGroups, redis_groups
from roster.live.protocol import (  # what broadcaster and consumers share, defined with the protocol
    DELTA_TYPE,
    FAMILY_TYPE,
    GROUP_ALL,
    GROUP_LIST,
    SUMMARY_TYPE,
    family_group,
    family_text,
    frame_of_json,
    meeting_group,
)
from roster.read.selectors import families_get, meetings_scope_ids
from roster.read.serializers import ChangeShown, change_shown

logger = logging.getLogger(__name__)


def change_messages(change: ChangeShown, *, primary_external_meeting_id: str = "") -> list[GroupMessage]:
    """The group messages for one change, each payload serialised exactly once (around the change's
    own JSON, which the hook outbox shares). A replica's carry its primary's ids too: a scope that
    allows the primary allows it (sockets judge by them)."""
    meeting = change.meeting
    head = {
        "meeting_id": meeting["meeting_id"],
        "external_meeting_id": meeting["external_meeting_id"],
        "seq": meeting["seq"],
    }
    if meeting.get("primary_meeting_id"):
        head["primary_meeting_id"] = meeting["primary_meeting_id"]
        head["primary_external_meeting_id"] = primary_external_meeting_id
    full = {
        **head,
        "type": DELTA_TYPE,
        "text": frame_of_json("delta", change.meeting_json, change.attendees_json),
    }
    compact = {**head, "type": SUMMARY_TYPE, "text": frame_of_json("delta", change.meeting_json, "[]")}
    return [(meeting_group(meeting["meeting_id"]), full), (GROUP_ALL, full), (GROUP_LIST, compact)]


class _Publisher:
    """One thread per process that publishes group messages in the order they were queued.

    Whatever was queued while the last round trip ran goes out in the next one, so a busy
    ingest costs one Redis round trip per publish turn, not per group message.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.SimpleQueue[list[GroupMessage]] = queue.SimpleQueue()
        self._done = threading.Condition()
        self._queued = 0
        self._finished = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # the publishing thread's, for group_send
        self.sent = 0

    def _ensure_started(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # fresh after a fork
                self._queue = queue.SimpleQueue()
                self._queued = self._finished = 0
                threading.Thread(target=self._run, name="roster-broadcast", daemon=True).start()
                self._pid = os.getpid()

    def submit(self, messages: list[GroupMessage]) -> None:
        self._ensure_started()
        with self._done:
            self._queued += 1
        self._queue.put(messages)

    def _run(self) -> None:
        layer = get_channel_layer()
        groups = redis_groups(layer=layer)
        self._loop = None if groups is not None else asyncio.new_event_loop()  # for group_send
        while True:
            turns = [self._queue.get()]
            while len(turns) < 100:
                try:
                    turns.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            messages = [message for turn in turns for message in turn]
            try:
                self._send(layer, groups, messages)
            finally:
                with self._done:
                    self._finished += len(turns)
                    self._done.notify_all()

    def _send(self, layer: Any, groups: RedisGroups | None, messages: list[GroupMessage]) -> None:
        if groups is not None:
            try:
                groups.publish(messages)
                self.sent += len(messages)
            except Exception:  # noqa: BLE001 - clients recover through seq; ingest must go on
                logger.exception("broadcast of %d group message(s) failed", len(messages))
            return
        for group, message in messages:
            try:
                self._loop.run_until_complete(layer.group_send(group, message))
                self.sent += 1
            except Exception:  # noqa: BLE001 - as above
                logger.exception("broadcast to %s failed", group)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far was sent (tests and benchmarks)."""
        with self._done:
            target = self._queued
            if not self._done.wait_for(lambda: self._finished >= target, timeout):
                raise TimeoutError(f"the broadcaster did not send everything within {timeout}s")


publisher = _Publisher()


def family_messages(figures: Iterable[Any], externals: dict[str, str]) -> list[GroupMessage]:
    """The group message of each family's figures (roster.domain.family.FamilyFigures), serialised
    once; ``version`` lets a socket drop an older reading that arrives late."""
    return [
        (
            family_group(f.primary_meeting_id),
            {
                "type": FAMILY_TYPE,
                "primary_meeting_id": f.primary_meeting_id,
                "external_meeting_id": externals.get(f.primary_meeting_id, ""),
                "version": f.version,
                "text": family_text(f.frame_fields()),
            },
        )
        for f in figures
    ]


class _Families:
    """One thread per process that reads the families of committed batches and publishes their
    ``family`` frames: every COALESCE_SECONDS at most, each family touched meanwhile once (a
    10,000-join burst over 41 meetings is a few readings a second, not one per event or socket),
    and only a frame whose figures changed."""

    COALESCE_SECONDS = 0.1
    IDLE_SECONDS = 0.5  # no batch this long: the thread's database connection is closed

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._touched: set[str] = set()
        self._wake = threading.Event()
        self._sent: dict[str, str] = {}  # the last frame text published per primary
        self.idle = threading.Event()
        self.idle.set()

    def touch(self, meeting_ids: Iterable[str]) -> None:
        """These meetings (replicas' primaries, and meetings that may be primaries) changed."""
        with self._lock:
            if self._pid != os.getpid():
                self._touched, self._sent, self._wake = set(), {}, threading.Event()
                threading.Thread(target=self._run, name="roster-families", daemon=True).start()
                self._pid = os.getpid()
            self._touched.update(meeting_ids)
            self.idle.clear()
            self._wake.set()

    def _run(self) -> None:
        wake = self._wake
        while True:
            if not wake.wait(self.IDLE_SECONDS):
                connection.close()  # the thread's own connection: not held while ingest is quiet,
                wake.wait()  # but kept through a busy spell (a new one per turn costs a backend)
            time.sleep(self.COALESCE_SECONDS)
            with self._lock:
                touched, self._touched = self._touched, set()
                wake.clear()
            try:
                self._publish(touched)
            except Exception:  # noqa: BLE001 - a family frame is recomputed at the next change
                logger.exception("family figures of %d meeting(s) failed", len(touched))
                connection.close()  # it may be the connection that failed
            finally:
                with self._lock:
                    if not self._touched:
                        self.idle.set()

    def _publish(self, touched: set[str]) -> None:
        figures = families_get(meeting_ids=touched)
        fresh = [f for f in figures.values() if self._sent.get(f.primary_meeting_id) != str(f.frame_fields())]
        if not fresh:
            return
        for f in fresh:
            self._sent[f.primary_meeting_id] = str(f.frame_fields())
        scopes = meetings_scope_ids(meeting_ids=[f.primary_meeting_id for f in fresh])
        externals = {m: scope["external_meeting_id"] for m, scope in scopes.items()}
        publisher.submit(family_messages(fresh, externals))


families = _Families()
_primary_externals: dict[str, str] = {}  # a primary's externalMeetingId, once known (never changes)


def _primary_external(primary_ids: set[str]) -> dict[str, str]:
    unknown = [m for m in primary_ids if m not in _primary_externals]
    if unknown:
        scopes = meetings_scope_ids(meeting_ids=unknown)
        _primary_externals.update(
            {m: s["external_meeting_id"] for m, s in scopes.items() if s["external_meeting_id"]}
        )
    return {m: _primary_externals.get(m, "") for m in primary_ids}


def changes_committed(committed: Committed) -> None:
    """The after-commit hook of ingest (registered by roster.apps): queue the group messages of the
    batch's changes, and the batch's families for their figures; returns at once (a replica's
    primary's externalMeetingId is read once per process)."""
    shown = [change_shown(change) for change in committed.changes]
    meetings = [change.meeting for change in shown]
    primaries = {m["primary_meeting_id"] for m in meetings if m["primary_meeting_id"]}
    externals = _primary_external(primaries) if primaries else {}
    messages = [
        message
        for change in shown
        for message in change_messages(
            change, primary_external_meeting_id=externals.get(change.meeting["primary_meeting_id"] or "", "")
        )
    ]
    if messages:
        publisher.submit(messages)
        families.touch(primaries | {m["meeting_id"] for m in meetings if not m["primary_meeting_id"]})


def changes_sent(timeout: float = 10.0) -> None:
    """Wait until the group messages this process queued, its families' frames included, were
    published: a command before it sleeps or exits, an ingest worker process before it exits
    (roster.ingest.hooks.before_exit)."""
    if not families.idle.wait(timeout):
        logger.warning("family figures still pending after %ss", timeout)
    publisher.flush(timeout)
