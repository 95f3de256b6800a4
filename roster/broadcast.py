"""Broadcaster: hands committed roster changes to live clients through the channel layer.

roster.ingest calls :func:`roster_changes_publish` from ``transaction.on_commit``, so nothing is
announced that was not durably written. Per meeting per committed batch it publishes one
``delta`` frame (the meeting with its new ``seq`` and the whole state of every attendee that
changed), serialised to text once here and forwarded unchanged by every consumer, plus a compact
meeting-only frame for meeting lists.

Groups:
- ``roster.m.<digest>``: full deltas of one meeting (feed clients that listed it);
- ``roster.all``: full deltas of every meeting (``"*"`` subscribers, filtered by their scope);
- ``roster.list``: compact deltas (meeting lists).

Publishing runs on one background event loop per process, fed in commit order, so the
ingest path never waits on Redis. The channel layer does not guarantee delivery: clients detect
a gap by ``seq`` and catch up (the feed consumer does it for them).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

GROUP_ALL = "roster.all"
GROUP_LIST = "roster.list"
DELTA_TYPE = "roster.delta"  # handled by RosterSocket.roster_delta
SUMMARY_TYPE = "roster.summary"  # handled by RosterSocket.roster_summary


def meeting_group(meeting_id: str) -> str:
    """A channel-layer group name (ASCII, bounded) for one meeting."""
    return "roster.m." + hashlib.sha1(meeting_id.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class RosterChange:
    """One meeting's committed change: the meeting (new seq) and every attendee that changed."""

    meeting: dict[str, Any]
    attendees: list[dict[str, Any]]


def frame(kind: str, meeting: dict[str, Any], attendees: list[dict[str, Any]]) -> str:
    return json.dumps({"type": kind, "meeting": meeting, "attendees": attendees}, separators=(",", ":"))


def change_messages(change: RosterChange) -> list[tuple[str, dict[str, Any]]]:
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
    """One event loop thread per process that sends group messages in the order they were queued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self.sent = 0

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # fresh after a fork
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    self._queue = asyncio.Queue()
                    loop.create_task(self._drain())
                    ready.set()
                    loop.run_forever()

                threading.Thread(target=run, name="roster-broadcast", daemon=True).start()
                ready.wait()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def submit(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        loop = self._ensure_started()
        loop.call_soon_threadsafe(self._queue.put_nowait, messages)

    async def _drain(self) -> None:
        layer = get_channel_layer()
        while True:
            messages = await self._queue.get()
            for group, message in messages:
                try:
                    await layer.group_send(group, message)
                    self.sent += 1
                except Exception:  # noqa: BLE001 - clients recover through seq; ingest must go on
                    logger.exception("broadcast to %s failed", group)
            self._queue.task_done()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far was sent (tests and benchmarks)."""
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._queue.join(), self._loop).result(timeout)


publisher = _Publisher()


def roster_changes_publish(changes: list[RosterChange]) -> None:
    """Queue the group messages of committed changes; returns at once."""
    messages = [message for change in changes for message in change_messages(change)]
    if messages:
        publisher.submit(messages)
