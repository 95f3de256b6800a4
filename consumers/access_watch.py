"""Every open socket's credential, asked again every ACCESS_RECHECK_SECONDS, for the whole process.

A token revoked, a user deactivated, an access rule removed or a host link revoked must reach open
sockets within 5 s however it was changed: admin, a command, a script or a direct database update.
Only the database sees all of those, so it is asked, not told (no signal reaches another process
from an UPDATE). One task per event loop asks for all of that loop's sockets at once
(roster.read.access.access_recheck: at most five primary-key queries whatever the number of
sockets, each distinct credential once) and tells only the sockets whose access changed.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings

from roster.read.access import Access, access_recheck

logger = logging.getLogger(__name__)


class Watched(Protocol):
    def access_changed(self, access: Access | None) -> None:
        """The credential now grants ``access``; None: it ended. Must not block the watch."""


class AccessWatch:
    """The credentials of one event loop's open sockets, and the task that asks for them again."""

    def __init__(self) -> None:
        self.watched: dict[Watched, Access] = {}
        self.task: asyncio.Task | None = None

    def add(self, socket: Watched, access: Access) -> None:
        """Watch ``socket``, which was granted ``access``; the task runs while anything is watched."""
        self.watched[socket] = access
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())

    def discard(self, socket: Watched) -> None:
        self.watched.pop(socket, None)

    async def _run(self) -> None:
        while self.watched:
            await asyncio.sleep(settings.ACCESS_RECHECK_SECONDS)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the watch
                logger.exception("rechecking the open sockets' access failed; trying again")

    async def check(self) -> None:
        """One round: ask for every distinct access once, then tell the sockets whose changed."""
        asked = dict(self.watched)
        if not asked:
            return
        now = await database_sync_to_async(access_recheck)(accesses=set(asked.values()))
        for socket, access in asked.items():
            if access not in now or self.watched.get(socket) != access:
                continue  # no credential to ask about, or gone or changed during the round
            renewed = now[access]
            if renewed == access:
                continue
            if renewed is None:
                del self.watched[socket]
            else:
                self.watched[socket] = renewed
            socket.access_changed(renewed)


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AccessWatch] = weakref.WeakKeyDictionary()


def access_watch() -> AccessWatch:
    """The running event loop's watch (one per loop, like consumers.fanout.group_fanout)."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = AccessWatch()
    return watch
