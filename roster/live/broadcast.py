"""Broadcaster: hands committed roster changes to live clients through the channel layer.

Ingest calls :func:`changes_committed` after commit (its after-commit hook point, registered by
roster.apps), so nothing is announced that was not durably written. Per meeting per committed
batch it publishes one ``delta`` frame (the meeting with its new ``seq`` and the whole state of
every attendee that changed), serialised to text once here and forwarded unchanged by every
consumer, plus a compact meeting-only frame for meeting lists.

Groups:
- ``roster.m.<digest>``: full deltas of one meeting (feed clients that listed it);
- ``roster.all``: full deltas of every meeting (``"*"`` subscribers, filtered by their scope);
- ``roster.list``: compact deltas (meeting lists).

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
from dataclasses import dataclass
from typing import Any

from channels.layers import get_channel_layer

from roster.ingest.hooks import Committed
from roster.live.layer import GroupMessage, RedisGroups, redis_groups
from roster.live.protocol import (  # what broadcaster and consumers share, defined with the protocol
    DELTA_TYPE,
    GROUP_ALL,
    GROUP_LIST,
    SUMMARY_TYPE,
    frame,
    meeting_group,
)
from roster.read.serializers import attendee_as_dict, meeting_as_dict

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RosterChange:
    """One meeting's committed change: the meeting (new seq) and every attendee that changed."""

    meeting: dict[str, Any]
    attendees: list[dict[str, Any]]


def change_messages(change: RosterChange) -> list[GroupMessage]:
    """The group messages for one change, each payload serialised exactly once."""
    meeting = change.meeting
    head = {
        "meeting_id": meeting["meeting_id"],
        "external_meeting_id": meeting["external_meeting_id"],
        "seq": meeting["seq"],
    }
    full = {**head, "type": DELTA_TYPE, "text": frame("delta", meeting, change.attendees)}
    compact = {**head, "type": SUMMARY_TYPE, "text": frame("delta", meeting, [])}
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


def changes_committed(committed: Committed) -> None:
    """The after-commit hook of ingest (registered by roster.apps): queue the group messages of the
    batch's changes; returns at once."""
    messages = [
        message
        for change in committed.changes
        for message in change_messages(
            RosterChange(
                meeting=meeting_as_dict(change.meeting),
                attendees=[attendee_as_dict(row) for row in change.changed_rows],
            )
        )
    ]
    if messages:
        publisher.submit(messages)
